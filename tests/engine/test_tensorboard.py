"""TensorBoard really written: the demo config (its visualizer comes from
``configs/_base_/default_runtime.py``) trains a few iterations on the synthetic set, and the
scalars read back from the event file with TensorBoard's own reader equal the json log's.
``tensorboard`` is in the dev extras: without it this test fails rather than skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from visionfm.engine import build_runner, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/dino/dino_vit-t_synthetic.py"


def test_training_writes_loss_and_lr_to_tensorboard_equal_to_the_json_log(synthetic_root, tmp_path):
    # a run built before in this process, most likely in the same second (a notebook, another
    # test): this one must still write into its own work dir
    overrides = {"data_root": f"{synthetic_root}/", "work_dir": str(tmp_path / "earlier")}
    build_runner(load_config(str(CONFIG), overrides))
    cfg = load_config(
        str(CONFIG),
        {
            "data_root": f"{synthetic_root}/",
            "work_dir": str(tmp_path),
            "train_dataloader.batch_size": 2,
            "train_dataloader.num_workers": 0,
            "train_dataloader.persistent_workers": False,
            "train_dataloader.dataset.indices": 8,  # 4 iterations
            "train_cfg.max_epochs": 1,
            "val_dataloader": None,  # no validation
            "val_cfg": None,
            "val_evaluator": None,
            "default_hooks.logger.interval": 1,
            "default_hooks.checkpoint": None,
            "custom_hooks": [],
            "log_level": "WARNING",
        },
    )
    assert [b["type"] for b in cfg.visualizer.vis_backends] == [
        "LocalVisBackend",
        "TensorboardVisBackend",
    ]
    build_runner(cfg).train()

    (json_log,) = tmp_path.glob("2*/vis_data/scalars.json")
    logged = [json.loads(line) for line in json_log.read_text().splitlines()]
    (event_file,) = tmp_path.glob("2*/vis_data/events.out.tfevents.*")
    events = EventAccumulator(str(event_file))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "lr", "loss_cls", "loss_bbox"} <= tags

    assert [entry["step"] for entry in logged] == [1, 2, 3, 4]
    for tag in sorted(set(logged[0]) - {"step"}):  # every scalar of the json log
        written = {e.step: e.value for e in events.Scalars(tag)}
        expected = {entry["step"]: entry[tag] for entry in logged}
        assert written.keys() == expected.keys(), tag
        # the event file stores float32, the json log float64
        for step, value in expected.items():
            assert written[step] == pytest.approx(value, rel=1e-6), (tag, step)
    lrs = [e.value for e in events.Scalars("lr")]
    assert lrs[0] < lrs[-1]  # the schedule's linear warm-up, as written to TensorBoard
