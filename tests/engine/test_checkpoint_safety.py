"""Checkpoints are written atomically, auto-resume skips broken ones, and loading a
checkpoint into the wrong model lists the differences or refuses it."""

import io
import os

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from safety_toys import Interrupted, SafetyToyRegressor, toy_config, trained_iters

import visionfm.engine.checkpoint as checkpoint_module
from visionfm.engine import build_runner, load_checkpoint_file
from visionfm.engine.checkpoint import find_latest_checkpoint, load_model_weights
from visionfm.engine.checkpoint_saving import NonFiniteCheckpointError, save_checkpoint
from visionfm.weights import CheckpointError

_real_save = torch.save


def _failing_save(fail_on: int):
    """torch.save that writes half of the bytes and raises OSError on call ``fail_on``."""
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) != fail_on:
            return _real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        _real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    return save


def _files(folder) -> list[str]:
    return sorted(os.listdir(folder))


def _run(work_dir, **overrides):
    runner = build_runner(Config(toy_config(work_dir, **overrides)))
    runner.train()
    return runner


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """max_keep_ckpts=1: mmengine deletes iter_4.pth before writing iter_8.pth; here the
    failed write of iter_8.pth leaves iter_4.pth, the pointer and no partial file."""
    monkeypatch.setattr(torch, "save", _failing_save(fail_on=2))
    keep_one = dict(checkpoint=dict(max_keep_ckpts=1))
    with pytest.raises(OSError, match="No space left"):
        _run(tmp_path, default_hooks=keep_one)
    assert [f for f in _files(tmp_path) if f.endswith((".pth", ".tmp"))] == ["iter_4.pth"]
    assert (tmp_path / "last_checkpoint").read_text().endswith("iter_4.pth")
    assert load_checkpoint_file(str(tmp_path / "iter_4.pth"))["meta"]["iter"] == 4


def test_stale_temporary_file_is_removed_and_ignored(tmp_path):
    """A SIGKILL during a save leaves a hidden .tmp file; resuming ignores and removes it."""
    with pytest.raises(Interrupted):
        _run(tmp_path, custom_hooks=[dict(type="InterruptAfterIter", at=5)])
    stale = tmp_path / ".iter_8.pth.4242.0123abcd.tmp"
    stale.write_bytes(b"partial")
    assert find_latest_checkpoint(str(tmp_path)).endswith("iter_4.pth")
    _run(tmp_path, resume=True)
    assert not stale.exists()


def test_auto_resume_skips_truncated_newest_checkpoint(tmp_path, monkeypatch):
    expected = _run(tmp_path / "full").model.state_dict()

    work = tmp_path / "split"
    hooks = [dict(type="InterruptAfterIter", at=10), dict(type="RecordIters")]
    with pytest.raises(Interrupted):
        _run(work, custom_hooks=hooks)
    newest = work / "iter_8.pth"
    newest.write_bytes(newest.read_bytes()[:1000])  # torn write from a dying file system
    warnings = []
    monkeypatch.setattr(checkpoint_module, "print_log", lambda msg, *a, **k: warnings.append(msg))
    resumed = _run(work, resume=True)
    assert trained_iters(resumed)[0] == 5  # from iter_4.pth
    assert any("iter_8.pth" in w and "skipping" in w for w in warnings), warnings
    for key, value in expected.items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)


def test_find_latest_checkpoint_without_usable_files(tmp_path):
    assert find_latest_checkpoint(str(tmp_path)) is None
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "gone.pth"))
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"state_dict": {}}, tmp_path / "no_meta.pth")  # weights only: not resumable
    assert find_latest_checkpoint(str(tmp_path)) is None


def test_best_checkpoint_replaced_only_after_new_one_is_written(tmp_path, monkeypatch):
    val = dict(
        val_dataloader=dict(
            dataset=dict(type="SafetyToyData", n=4),
            batch_size=4,
            sampler=dict(type="DefaultSampler", shuffle=False),
        ),
        val_cfg=dict(),
        val_evaluator=dict(type="RisingScore"),
        train_cfg=dict(by_epoch=True, max_epochs=3, val_interval=1),
        default_hooks=dict(
            checkpoint=dict(interval=1, by_epoch=True, save_best="score", rule="greater")
        ),
    )
    # saves: epoch_1, best(epoch 1), epoch_1 again (mmengine re-saves), epoch_2, best(epoch 2)
    monkeypatch.setattr(torch, "save", _failing_save(fail_on=5))
    with pytest.raises(OSError):
        _run(tmp_path, **val)
    assert "epoch_2.pth" in _files(tmp_path)  # so the 5th save, the new best, failed
    best = [f for f in _files(tmp_path) if f.startswith("best_")]
    assert best == ["best_score_epoch_1.pth"], _files(tmp_path)
    assert load_checkpoint_file(str(tmp_path / best[0]))["meta"]["epoch"] == 1
    assert not [f for f in _files(tmp_path) if f.endswith(".tmp")]


def test_non_finite_weights_are_never_saved(tmp_path):
    model = SafetyToyRegressor()
    state = model.state_dict()
    state["net.0.bias"][3] = float("nan")
    path = tmp_path / "bad.pth"
    with pytest.raises(NonFiniteCheckpointError, match=r"bad\.pth.*net\.0\.bias"):
        save_checkpoint(dict(state_dict=state, meta={}), str(path))
    assert not path.exists() and not _files(tmp_path)


def _saved(tmp_path, model: nn.Module) -> str:
    path = str(tmp_path / "weights.pth")
    torch.save(dict(state_dict=model.state_dict(), meta=dict(iter=1)), path)
    return path


def test_load_model_weights_lists_mismatched_keys(tmp_path):
    source = SafetyToyRegressor(dim=8)
    source.net[2] = nn.Linear(16, 3)  # another head
    with pytest.raises(
        CheckpointError, match=r"net\.2\.weight: checkpoint \(3, 16\) vs model \(1, 16\)"
    ):
        load_model_weights(SafetyToyRegressor(dim=8), _saved(tmp_path, source))


def test_load_model_weights_refuses_another_architecture(tmp_path):
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 1, 1))
    with pytest.raises(CheckpointError, match="looks like a different model"):
        load_model_weights(SafetyToyRegressor(), _saved(tmp_path, other))


def test_load_from_loads_matching_part_and_refuses_another_model(tmp_path, monkeypatch):
    source = SafetyToyRegressor(dim=8)
    source.net[2] = nn.Linear(16, 3)
    warnings = []
    monkeypatch.setattr(checkpoint_module, "print_log", lambda msg, *a, **k: warnings.append(msg))
    one_epoch = dict(train_cfg=dict(by_epoch=True, max_epochs=1))
    runner = build_runner(
        Config(toy_config(tmp_path / "a", load_from=_saved(tmp_path, source), **one_epoch))
    )
    runner.load_or_resume()
    torch.testing.assert_close(runner.model.net[0].weight, source.net[0].weight)
    assert any("net.2.weight: checkpoint (3, 16) vs model (1, 16)" in w for w in warnings)

    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 1, 1))
    (tmp_path / "b").mkdir()
    torch.save(dict(state_dict=other.state_dict()), tmp_path / "b" / "other.pth")
    cfg = toy_config(tmp_path / "b", load_from=str(tmp_path / "b" / "other.pth"), **one_epoch)
    with pytest.raises(RuntimeError, match="looks like a different model"):
        build_runner(Config(cfg)).train()
