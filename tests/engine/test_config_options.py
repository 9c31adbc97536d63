"""Typos in a config or its ``--cfg-options`` are refused by ``load_config`` before anything is
built, wherever they are, with the key, the config file and the closest accepted names."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visionfm.data.data_sample import DataSample
from visionfm.engine import load_config
from visionfm.registry import MODELS, ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs/dino/dino_vit-t_synthetic.py")


@pytest.mark.parametrize(
    "option, suggestion",
    [
        ("train_cfg.max_epoch", "max_epochs"),  # a loop
        ("data_rot", "data_root"),  # a new top-level name
        ("num_clases", "num_classes"),  # a top-level variable
        ("model.head.test_cfg.max_per_im", "max_per_img"),  # a head's test_cfg
        ("model.head.num_querie", "num_queries"),  # a model argument
        ("default_hooks.checkpoint.intervl", "interval"),  # a hook
        ("custom_hooks.0.priorty", "priority"),
        ("val_evaluator.ann_fil", "ann_file"),  # a metric
        ("param_scheduler.0.start_factr", "start_factor"),  # a scheduler
        ("param_scheduler.1.eta_min_ration", "eta_min_ratio"),
        ("train_dataloader.dataset.ann_fle", "ann_file"),  # a dataset argument
        ("train_dataloader.dataset.pipeline.2.scal", "scale"),  # a transform
        ("train_dataloader.batch_sise", "batch_size"),  # a dataloader key
        ("optim_wrapper.optimizer.weight_decai", "weight_decay"),  # the optimizer
        ("optim_wrapper.accumulative_count", "accumulative_counts"),  # its wrapper
        ("visualizer.nme", "name"),  # the visualizer
        ("log_processor.window_sise", "window_size"),
        ("randomness.deterministc", "deterministic"),  # plain dicts the runner reads
        ("env_cfg.dist_cfg.backnd", "backend"),  # a plain dict: the keys it has
    ],
)
def test_a_misspelt_option_is_refused_with_the_closest_names(option, suggestion):
    with pytest.raises(ConfigError) as error:
        load_config(DEMO, {option: 1})
    message = str(error.value)
    assert option.split(".")[-1] in message and "dino_vit-t_synthetic.py" in message
    assert f"Did you mean {suggestion!r}" in message or f"'{suggestion}'" in message, message


def test_a_head_test_cfg_typo_in_a_config_file_is_refused(tmp_path):
    config = tmp_path / "my_config.py"
    config.write_text(
        f"_base_ = [{DEMO!r}]\nmodel = dict(head=dict(test_cfg=dict(max_per_im=5)))\n"
    )
    with pytest.raises(ConfigError, match="model.head.test_cfg.max_per_im.*'max_per_img'"):
        load_config(str(config))
    cfg = load_config(DEMO)
    cfg.model.head.test_cfg = dict(max_per_im=5)  # built without the check: refused too
    with pytest.raises(ConfigError, match="max_per_im.*'max_per_img'"):
        MODELS.build(cfg.model)


def test_legitimate_overrides_still_apply(tmp_path):
    cfg = load_config(
        DEMO,
        {
            "data_root": f"{tmp_path}/",
            "train_cfg.max_epochs": 1,
            "num_classes": 3,
            "model.head.test_cfg.score_thr": 0.1,  # not in the file, but a head setting
            "randomness.deterministic": True,  # not in the file, read by the runner
            "train_dataloader.pin_memory": True,  # a DataLoader argument
            "nan_policy": "skip",  # a top-level key the runner reads
            "custom_hooks.0.gamma": 20,  # EMAHook passes its other arguments on
        },
    )
    assert cfg.train_dataloader.dataset.data_root == f"{tmp_path}/"
    assert cfg.train_cfg.max_epochs == 1 and cfg.model.head.num_classes == 3
    assert cfg.model.head.test_cfg == dict(max_per_img=30, score_thr=0.1)
    assert cfg.randomness.deterministic and cfg.nan_policy == "skip"


def test_a_test_cfg_override_changes_the_predictions():
    torch.manual_seed(0)
    cfg = load_config(DEMO, {"model.head.test_cfg.max_per_img": 5})
    model = MODELS.build(cfg.model).eval()
    sample = DataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
    with torch.no_grad():
        batch = model.data_preprocessor(
            dict(
                inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)],
                data_samples=[sample],
            )
        )
        (pred,) = model(**batch, mode="predict")
    assert len(pred.pred_instances) == 5


def test_train_refuses_a_typo_before_building_anything(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "tools/train.py",
            DEMO,
            "--work-dir",
            str(tmp_path / "work"),
            "--cfg-options",
            "train_cfg.max_epoch=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "train_cfg.max_epoch" in proc.stderr and "Did you mean 'max_epochs'" in proc.stderr
    assert "unexpected keyword argument" not in proc.stderr
    assert not (tmp_path / "work").exists()  # no runner, no logs, no checkpoint
