"""A NaN/inf loss or gradient stops training (naming the batch) or is skipped, and never
reaches the weights or a checkpoint."""

import math

import pytest
import torch
from mmengine.config import Config
from safety_toys import toy_config

from visionfm.engine import NonFiniteLossError, build_runner, load_checkpoint_file
from visionfm.engine.checkpoint_saving import NonFiniteCheckpointError

# No shuffling, batch 4: samples 20-23 form batch 6 of each epoch (iterations 6, 12, 18).
_IN_ORDER = dict(sampler=dict(type="DefaultSampler", shuffle=False))


def _cfg(work_dir, dataset: dict, **overrides) -> Config:
    loader = dict(dataset=dict(type="SafetyToyData", **dataset), **_IN_ORDER)
    return Config(toy_config(work_dir, train_dataloader=loader, **overrides))


def _all_finite(model) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values())


def test_nan_loss_raises_naming_iteration_terms_and_images(tmp_path):
    runner = build_runner(_cfg(tmp_path, dict(nan_indices=[21])))
    with pytest.raises(NonFiniteLossError) as err:
        runner.train()
    message = str(err.value)
    assert "iteration 6 (epoch 1, batch 6 of the epoch)" in message
    assert "loss_mse=nan" in message and "loss_l1=nan" in message
    assert "images/020.png, images/021.png, images/022.png, images/023.png" in message
    assert _all_finite(runner.model)  # the bad step was not applied
    # the last good checkpoint is intact and nothing was written after the bad step
    assert (tmp_path / "last_checkpoint").read_text().endswith("iter_4.pth")
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["iter_4.pth"]
    ckpt = load_checkpoint_file(str(tmp_path / "iter_4.pth"))
    assert ckpt["meta"]["iter"] == 4
    assert all(bool(torch.isfinite(v).all()) for v in ckpt["state_dict"].values())


def test_nan_gradient_with_finite_loss_raises_naming_parameters(tmp_path):
    runner = build_runner(_cfg(tmp_path, dict(grad_nan_indices=[2])))
    with pytest.raises(NonFiniteLossError, match=r"iteration 1 .*gradients of net\.0\.weight"):
        runner.train()
    assert _all_finite(runner.model)


def test_skip_policy_drops_bad_steps_and_counts_them(tmp_path, monkeypatch):
    runner = build_runner(_cfg(tmp_path, dict(nan_indices=[21]), nan_policy="skip"))
    warnings = []
    monkeypatch.setattr(runner.logger, "warning", warnings.append)
    runner.train()  # the batch with sample 21 comes once per epoch: 3 steps skipped
    assert runner.iter == 18
    skipped = [w for w in warnings if w.startswith("skipped the training step")]
    assert [w.split(" (")[0][-2:].strip() for w in skipped] == ["6", "12", "18"]
    assert "images/021.png" in skipped[0]
    assert "3 training steps were skipped" in warnings[-1]
    assert runner.message_hub.get_info("nan_skipped") == 3
    assert _all_finite(runner.model)
    final = load_checkpoint_file(str(tmp_path / "iter_18.pth"))
    assert all(bool(torch.isfinite(v).all()) for v in final["state_dict"].values())


def test_skip_policy_gives_up_after_consecutive_skips(tmp_path):
    guard = [dict(type="NonFiniteLossHook", policy="skip", max_consecutive_skips=1)]
    runner = build_runner(_cfg(tmp_path, dict(nan_indices=range(16, 24)), custom_hooks=guard))
    with pytest.raises(NonFiniteLossError, match=r"2 training steps in a row.*iteration 6"):
        runner.train()


def test_checkpoint_with_nan_buffer_is_refused(tmp_path):
    """A skipped step still ran the forward: a BatchNorm-like buffer can turn NaN. The
    checkpoint after it is refused and the one before is kept."""
    model = dict(model=dict(type="SafetyToyRegressor", with_buffer=True), nan_policy="skip")
    runner = build_runner(_cfg(tmp_path, dict(nan_indices=[21]), **model))  # iteration 6
    with pytest.raises(NonFiniteCheckpointError, match=r"iter_8\.pth.*running_mean"):
        runner.train()
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["iter_4.pth"]
    assert (tmp_path / "last_checkpoint").read_text().endswith("iter_4.pth")
    assert not list(tmp_path.glob(".*.tmp"))
    assert math.isnan(runner.model.running_mean[0].item())


def test_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="nan_policy must be 'raise' or 'skip'"):
        build_runner(_cfg(tmp_path, {}, nan_policy="ignore"))
