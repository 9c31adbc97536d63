"""visionfm.heads.detr.losses: focal loss against torchvision, set losses on hand-computed cases and
empty ground truth."""

from __future__ import annotations

import pytest
import torch
import torchvision.ops as tvo

from visionfm.heads.detr.losses import (
    box_l1_loss,
    giou_loss,
    set_prediction_losses,
    sigmoid_focal_loss,
)
from visionfm.heads.losses import average_num_boxes


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 0.0), (-1.0, 1.5)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_focal_loss_matches_torchvision(alpha, gamma, reduction):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 5, generator=g) * 4
    targets = (torch.rand(2, 7, 5, generator=g) > 0.8).float()
    ours = sigmoid_focal_loss(logits, targets, alpha, gamma, reduction=reduction)
    ref = tvo.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction=reduction)
    torch.testing.assert_close(ours, ref)


def test_focal_loss_gradients_and_normalizer():
    logits = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.zeros(3, 4, dtype=torch.float64)
    targets[0, 1] = targets[2, 3] = 1
    ours = sigmoid_focal_loss(logits, targets, reduction="mean", normalizer=2.0)
    ref = tvo.sigmoid_focal_loss(logits, targets, reduction="sum") / 2.0
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref)
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(logits, targets, reduction="avg")


def _empty_target():
    return dict(labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4))


def test_empty_ground_truth_zero_box_losses_nonzero_cls():
    logits = torch.randn(2, 6, 3, requires_grad=True)
    boxes = torch.rand(2, 6, 4, requires_grad=True)
    indices = [(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))] * 2
    num_boxes = average_num_boxes(0, "cpu")
    assert num_boxes == 1.0
    losses = set_prediction_losses(logits, boxes, [_empty_target()] * 2, indices, num_boxes)
    assert set(losses) == {"loss_cls", "loss_bbox", "loss_giou"}
    assert losses["loss_bbox"].item() == 0 and losses["loss_giou"].item() == 0
    assert losses["loss_cls"].item() > 0
    # every query is a negative: the cls loss is the focal loss against all-zero targets
    ref = tvo.sigmoid_focal_loss(logits, torch.zeros_like(logits), reduction="sum")
    torch.testing.assert_close(losses["loss_cls"], ref)
    sum(losses.values()).backward()  # box losses stay in the graph
    assert boxes.grad is not None and (boxes.grad == 0).all()
    assert logits.grad.abs().sum() > 0


def test_hand_computed_box_losses():
    # query 1 of image 0 <-> target 0; image 1 has no ground truth
    pred = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.4, 0.4]], [[0.3] * 4, [0.6] * 4]])
    tgt = torch.tensor([[0.6, 0.5, 0.2, 0.4]])
    logits = torch.zeros(2, 2, 3)
    targets = [dict(labels=torch.tensor([2]), boxes=tgt), _empty_target()]
    indices = [(torch.tensor([1]), torch.tensor([0])), (torch.zeros(0).long(),) * 2]
    losses = set_prediction_losses(logits, pred, targets, indices, num_boxes=2.0)
    # L1: |0.5-0.6| + 0 + |0.4-0.2| + 0 = 0.3, over 2 boxes
    assert losses["loss_bbox"].item() == pytest.approx(0.15)
    # xyxy: pred (0.3, 0.3, 0.7, 0.7), target (0.5, 0.3, 0.7, 0.7): target inside pred,
    # IoU = 0.08 / 0.16 = 0.5, enclosing = union -> GIoU 0.5; loss (1 - 0.5) / 2
    assert losses["loss_giou"].item() == pytest.approx(0.25)
    # logits 0: p = 0.5 everywhere; 12 entries, one positive (image 0, query 1, class 2)
    # pos: 0.25 * 0.5**2 * log 2; neg: 0.75 * 0.5**2 * log 2
    log2 = torch.log(torch.tensor(2.0)).item()
    expected = (0.25 * 0.25 * log2 + 11 * 0.75 * 0.25 * log2) / 2.0
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-6)


def test_class_target_follows_matching():
    logits = torch.zeros(1, 3, 4)
    logits[0, 2, 1] = 6.0  # query 2 confident in class 1
    targets = [dict(labels=torch.tensor([1]), boxes=torch.tensor([[0.5, 0.5, 0.2, 0.2]]))]
    boxes = torch.full((1, 3, 4), 0.5)
    right = set_prediction_losses(
        logits, boxes, targets, [(torch.tensor([2]), torch.tensor([0]))], 1.0
    )
    wrong = set_prediction_losses(
        logits, boxes, targets, [(torch.tensor([0]), torch.tensor([0]))], 1.0
    )
    assert right["loss_cls"] < wrong["loss_cls"]


def test_helpers():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    assert box_l1_loss(a, b, 2.0).item() == pytest.approx(2.0)
    assert giou_loss(a, b, 1.0).item() == pytest.approx(1 - (1 / 7 - 2 / 9))
