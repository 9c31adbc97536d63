"""Depth losses: SILog and the MiDaS scale-and-shift-invariant loss, by hand and by their
invariances; invalid pixels never matter."""

from __future__ import annotations

import math

import pytest
import torch

from visionfm.heads.depth import (
    ScaleShiftInvariantLoss,
    SILogLoss,
    align_scale_shift,
    gradient_matching_loss,
    normalize_disparity,
)
from visionfm.registry import MODELS


def _maps(seed: int = 0, b: int = 2, h: int = 12, w: int = 10):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(b, h, w, generator=gen, dtype=torch.float64) * 4 + 0.5
    pred = torch.rand(b, h, w, generator=gen, dtype=torch.float64) * 4 + 0.5
    valid = torch.rand(b, h, w, generator=gen) > 0.3
    return pred, gt, valid


# -- SILog -----------------------------------------------------------------------------------
def test_silog_hand_case():
    pred = torch.tensor([[[2.0, 1.0, 7.0]]])
    gt = torch.tensor([[[1.0, 1.0, 0.0]]])
    valid = gt > 0  # the third pixel has no ground truth
    g = [math.log(2.0), 0.0]
    mean, mean_sq = sum(g) / 2, sum(x * x for x in g) / 2
    expected = 10 * math.sqrt(mean_sq - 0.85 * mean**2)
    assert SILogLoss()(pred, gt, valid).item() == pytest.approx(expected, rel=1e-6)
    built = MODELS.build(dict(type="SILogLoss", variance_focus=0.5, scale=1.0))
    assert built(pred, gt, valid).item() == pytest.approx(math.sqrt(mean_sq - 0.5 * mean**2))


def test_silog_is_scale_invariant_at_lambda_one_and_ignores_invalid_pixels():
    pred, gt, valid = _maps()
    loss = SILogLoss(variance_focus=1.0)
    assert loss(3.0 * pred, gt, valid).item() == pytest.approx(loss(pred, gt, valid).item())
    assert SILogLoss()(3.0 * pred, gt, valid) > SILogLoss()(pred, gt, valid)  # lambda < 1
    garbage = torch.where(valid, pred, torch.full_like(pred, 1e6))
    assert SILogLoss()(garbage, gt, valid).item() == pytest.approx(
        SILogLoss()(pred, gt, valid).item()
    )


def test_silog_without_valid_pixels_is_zero_with_a_gradient():
    pred = torch.rand(1, 4, 4, requires_grad=True)
    out = SILogLoss()(pred, torch.zeros(1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.bool))
    out.backward()
    assert out.item() == 0.0 and pred.grad is not None and (pred.grad == 0).all()


# -- scale and shift invariance ------------------------------------------------------------------
def test_align_scale_shift_recovers_a_known_affine_map():
    pred, gt, valid = _maps()
    target = 2.5 * pred - 0.7
    scale, shift = align_scale_shift(pred, target.where(valid, torch.full_like(pred, 99.0)), valid)
    torch.testing.assert_close(scale, torch.full((2,), 2.5, dtype=torch.float64))
    torch.testing.assert_close(shift, torch.full((2,), -0.7, dtype=torch.float64))
    constant = torch.ones_like(pred)  # no spread: scale 0, shift = mean target
    scale, shift = align_scale_shift(constant, target, valid)
    assert (scale == 0).all()
    torch.testing.assert_close(shift, torch.stack([target[i][valid[i]].mean() for i in range(2)]))


def test_normalized_disparity_has_median_zero_and_unit_deviation():
    _, gt, valid = _maps()
    out, usable = normalize_disparity(1 / gt, valid)
    assert usable.all()
    for i in range(2):
        v = out[i][valid[i]]
        assert v.median().abs() < 1e-12 and (v - v.median()).abs().mean() == pytest.approx(1.0)


def test_ssi_is_zero_for_a_perfect_affine_disparity():
    _, gt, valid = _maps()
    pred = 3.0 / gt + 0.2  # disparity up to scale and shift
    losses = ScaleShiftInvariantLoss()(pred, gt, valid)
    assert set(losses) == {"loss_ssi", "loss_grad"}
    assert all(v.item() < 1e-10 for v in losses.values()), losses


@pytest.mark.parametrize("a, b", [(4.0, 0.5), (0.25, -0.01)])
def test_ssi_invariances(a, b):
    """Unchanged under pred -> a * pred + b and under gt disparity -> a * disp + b."""
    pred, gt, valid = _maps(seed=1)
    loss = ScaleShiftInvariantLoss(grad_weight=0.5)
    base = loss(pred, gt, valid)
    moved_pred = loss(a * pred + b, gt, valid)
    disp = torch.where(valid, 1 / gt, torch.ones_like(gt))
    gt_moved = torch.where(valid, 1 / (a * disp + b), gt)
    assert (a * disp + b)[valid].min() > 0  # still a positive depth
    moved_gt = loss(pred, gt_moved, valid)
    for key in base:
        assert base[key].item() > 0.01
        assert moved_pred[key].item() == pytest.approx(base[key].item(), rel=1e-9)
        assert moved_gt[key].item() == pytest.approx(base[key].item(), rel=1e-9)


def test_ssi_ignores_invalid_pixels_and_unusable_images():
    pred, gt, valid = _maps(seed=2)
    loss = ScaleShiftInvariantLoss()
    base = loss(pred, gt, valid)
    noisy = loss(torch.where(valid, pred, -pred * 100), torch.where(valid, gt, gt * 7), valid)
    for key in base:
        assert noisy[key].item() == pytest.approx(base[key].item(), rel=1e-12)
    one_pixel = torch.zeros_like(valid)
    one_pixel[0, 3, 3] = True
    pred.requires_grad_(True)
    out = loss(pred, gt, one_pixel)  # no usable image: zeros that still backpropagate
    sum(out.values()).backward()
    assert all(v.item() == 0 for v in out.values()) and (pred.grad == 0).all()


def test_gradient_matching_hand_case():
    residual = torch.tensor([[[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]]])
    valid = torch.tensor([[[True, True, True], [True, True, False]]])
    # scale 1: dx |1|+|2| (row 0) + |0| (row 1, pair with the invalid pixel dropped)
    #          dy |0|+|1| (column 2 dropped); 5 valid pixels
    # scale 2: pixels (0,0), (0,2): dx |3|; 2 valid pixels
    expected = (3 + 0 + 0 + 1) / 5 + 3 / 2
    assert gradient_matching_loss(residual, valid, scales=2).item() == pytest.approx(expected)
