"""Checkpoints load with weights_only=True and resuming reproduces an uninterrupted run."""

import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.model import BaseModel
from torch.utils.data import Dataset

from visionfm.engine import build_runner, load_checkpoint_file
from visionfm.registry import DATASETS, HOOKS, MODELS


class _Interrupted(Exception):
    pass


@HOOKS.register_module(force=True)
class _InterruptAfterEpoch(Hook):
    """Kills training after a given epoch, once its checkpoint is written."""

    priority = "LOWEST"

    def __init__(self, epoch: int):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:  # runner.epoch counts from 0 here
            raise _Interrupted


@MODELS.register_module(force=True)
class _ToyRegressor(BaseModel):
    """Linear regressor with dropout, so resume must restore the RNG stream too."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Dropout(0.3), nn.Linear(16, 1))

    def forward(self, x, y, mode="loss"):
        return dict(loss=((self.net(x) - y) ** 2).mean())


@DATASETS.register_module(force=True)
class _ToyData(Dataset):
    def __init__(self, n: int = 24, dim: int = 8):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x.sum(1, keepdim=True) / dim**0.5

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(x=self.x[i], y=self.y[i])


def _cfg(work_dir, max_epochs=4, resume=False, interrupt_after=None):
    hooks = [dict(type="_InterruptAfterEpoch", epoch=interrupt_after)] if interrupt_after else []
    return Config(
        dict(
            model=dict(type="_ToyRegressor"),
            work_dir=str(work_dir),
            train_dataloader=dict(
                dataset=dict(type="_ToyData"),
                batch_size=4,
                sampler=dict(type="DefaultSampler", shuffle=True),
                collate_fn=dict(type="default_collate"),
            ),
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
            optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.02, momentum=0.9)),
            param_scheduler=dict(type="MultiStepLR", milestones=[3], gamma=0.1),
            default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1)),
            randomness=dict(seed=7),
            resume=resume,
            custom_hooks=hooks,
            log_level="WARNING",
            experiment_name=f"{work_dir.name}_{resume}_{interrupt_after}",
        )
    )


def _weights(runner):
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def _interrupted_then_resumed(work_dir, drop_rng_state=False):
    with pytest.raises(_Interrupted):
        build_runner(_cfg(work_dir, interrupt_after=2)).train()
    if drop_rng_state:
        ckpt = load_checkpoint_file(str(work_dir / "epoch_2.pth"))
        del ckpt["rng_state"]
        torch.save(ckpt, work_dir / "epoch_2.pth")
    resumed = build_runner(_cfg(work_dir, resume=True))
    resumed.train()
    return resumed


def test_resume_matches_uninterrupted_run(tmp_path):
    full = build_runner(_cfg(tmp_path / "full"))
    full.train()
    expected = _weights(full)

    resumed = _interrupted_then_resumed(tmp_path / "split")
    assert resumed.iter == full.iter == 24
    got = _weights(resumed)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


def test_resume_without_rng_restore_differs(tmp_path):
    """Guard that the test above can fail: dropping the RNG state changes the result."""
    full = build_runner(_cfg(tmp_path / "full"))
    full.train()
    resumed = _interrupted_then_resumed(tmp_path / "split", drop_rng_state=True)
    diffs = [
        (resumed.model.state_dict()[k] - v).abs().max().item()
        for k, v in full.model.state_dict().items()
    ]
    assert max(diffs) > 1e-6


def test_checkpoint_loads_weights_only(tmp_path):
    build_runner(_cfg(tmp_path, max_epochs=1)).train()
    ckpt = load_checkpoint_file(str(tmp_path / "epoch_1.pth"))
    assert {"meta", "state_dict", "message_hub", "optimizer", "rng_state"} <= set(ckpt)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_foreign_object_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _Evil()}, path)
    with pytest.raises(RuntimeError, match="evil.pth"):
        load_checkpoint_file(str(path))


def test_getattr_stand_in_allows_only_history_buffer(tmp_path):
    path = tmp_path / "getattr.pth"

    class _GetattrInit:  # any attribute but the statistics methods must be refused
        def __reduce__(self):
            return (getattr, (HistoryBuffer, "__init__"))

    torch.save({"x": _GetattrInit()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(RuntimeError, match="getattr.pth"):
        load_checkpoint_file(str(path))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_corrupt_or_missing_checkpoint(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(RuntimeError, match="bad.pth"):
        load_checkpoint_file(str(path))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint_file(str(tmp_path / "nope.pth"))
