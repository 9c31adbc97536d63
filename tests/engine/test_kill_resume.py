"""A run killed inside an epoch and resumed ends with exactly the weights of an
uninterrupted run: same remaining batches, same shuffled order, same random streams."""

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import EpochBasedTrainLoop
from safety_toys import Interrupted, toy_config, trained_iters

import visionfm.engine.runner
from visionfm.engine import build_runner, load_checkpoint_file

ROOT = Path(__file__).resolve().parents[2]


def _train(work_dir, **overrides):
    runner = build_runner(Config(toy_config(work_dir, **overrides)))
    runner.train()
    return runner


def _assert_same_weights(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


def _tools_train():
    """tools/train.py as a module (its ``prepare_config`` turns --resume into the config)."""
    spec = importlib.util.spec_from_file_location("tools_train", ROOT / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a tools/train.py subprocess: 10-30 s, mostly importing
def test_sigkill_mid_epoch_then_resume_auto(tmp_path):
    """tools/train.py with a data worker, SIGKILLed two iterations after the checkpoint at
    iteration 8 (the 2nd batch of epoch 2), then resumed with ``--resume auto``."""
    loader = dict(num_workers=1, persistent_workers=False)
    work = tmp_path / "killed"
    marker = tmp_path / "hanging"
    hang = [dict(type="HangAfterIter", at=10, marker=str(marker)), dict(type="RecordIters")]
    Config(toy_config(work, train_dataloader=loader, custom_hooks=hang)).dump(tmp_path / "a.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{Path(__file__).parent}")
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), str(tmp_path / "a.py")]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:  # the uninterrupted reference trains meanwhile
        expected = _train(tmp_path / "full", train_dataloader=loader).model.state_dict()
        deadline = time.monotonic() + 100
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), f"training never reached iteration 10 (exit code {proc.poll()})"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert (work / "last_checkpoint").read_text().endswith("iter_8.pth")
    assert not (work / "iter_12.pth").exists()

    Config(toy_config(work, train_dataloader=loader)).dump(tmp_path / "b.py")
    train = _tools_train()
    args = argparse.Namespace(
        config=str(tmp_path / "b.py"),
        work_dir=None,
        resume="auto",
        amp=False,
        cfg_options=None,
        launcher="none",
    )
    resumed = build_runner(train.prepare_config(args))
    resumed.train()
    assert trained_iters(resumed) == list(range(9, 19))  # resumed from iter_8.pth
    _assert_same_weights(resumed.model.state_dict(), expected)
    final = load_checkpoint_file(str(work / "iter_18.pth"))
    _assert_same_weights(final["state_dict"], expected)


def _interrupted_at(work_dir, at: int, **overrides):
    """Crash after iteration ``at``, resume from the checkpoint before it (every 4 iters)."""
    hooks = [dict(type="InterruptAfterIter", at=at), dict(type="RecordIters")]
    with pytest.raises(Interrupted):
        _train(work_dir, custom_hooks=hooks, **overrides)
    resumed = _train(work_dir, resume=True, **overrides)
    assert trained_iters(resumed)[0] == at // 4 * 4 + 1
    return resumed


def test_resume_mid_epoch_without_workers_matches(tmp_path):
    """num_workers=0: the sampler is advanced past the trained batches, nothing is loaded."""
    expected = _train(tmp_path / "full").model.state_dict()
    resumed = _interrupted_at(tmp_path / "split", at=10)  # resumes from iter_8 (epoch 2)
    assert trained_iters(resumed) == list(range(9, 19))
    _assert_same_weights(resumed.model.state_dict(), expected)


def test_resume_at_epoch_end_checkpoint_matches(tmp_path):
    """Checkpoint at the last batch of an epoch (iteration 12): nothing left to skip."""
    expected = _train(tmp_path / "full").model.state_dict()
    resumed = _interrupted_at(tmp_path / "split", at=13)
    _assert_same_weights(resumed.model.state_dict(), expected)


def test_mmengine_loop_would_retrain_the_epoch(tmp_path, monkeypatch):
    """Guard that the tests above can fail: mmengine's own loop restarts the epoch."""
    monkeypatch.setattr(visionfm.engine.runner, "ResumableEpochBasedTrainLoop", EpochBasedTrainLoop)
    expected = _train(tmp_path / "full").model.state_dict()
    resumed = _interrupted_at(tmp_path / "split", at=10)
    diffs = [(resumed.model.state_dict()[k] - v).abs().max().item() for k, v in expected.items()]
    assert max(diffs) > 1e-6


def test_iter_based_resume_matches(tmp_path):
    """by_epoch=False: mmengine replays the trained batches; they must not consume the
    restored random streams."""
    iters = dict(
        train_cfg=dict(by_epoch=False, max_iters=18),
        train_dataloader=dict(sampler=dict(type="InfiniteSampler", shuffle=True)),
        param_scheduler=dict(type="MultiStepLR", milestones=[10], gamma=0.1, by_epoch=False),
    )
    expected = _train(tmp_path / "full", **iters).model.state_dict()
    resumed = _interrupted_at(tmp_path / "split", at=10, **iters)
    assert trained_iters(resumed) == list(range(9, 19))
    _assert_same_weights(resumed.model.state_dict(), expected)
