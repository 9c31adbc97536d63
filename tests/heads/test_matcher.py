"""HungarianMatcher: the cost it minimises, checked against brute force over all
assignments, and empty targets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torchvision.ops as tvo

from visionfm.heads.detr.matcher import HungarianMatcher
from visionfm.registry import MODELS

WEIGHTS = dict(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, focal_alpha=0.25, focal_gamma=2.0)


def reference_cost(logits, boxes, labels, tgt_boxes, w=WEIGHTS):
    """(Q, N) matching cost written out element by element, independently of the matcher."""
    q, n = len(logits), len(labels)
    giou = tvo.generalized_box_iou(
        tvo.box_convert(boxes, "cxcywh", "xyxy"), tvo.box_convert(tgt_boxes, "cxcywh", "xyxy")
    )
    a, g = w["focal_alpha"], w["focal_gamma"]
    cost = torch.zeros(q, n, dtype=torch.float64)
    for i in range(q):
        for j in range(n):
            p = torch.sigmoid(logits[i, labels[j]].double()).item()
            pos = a * (1 - p) ** g * -math.log(p)
            neg = (1 - a) * p**g * -math.log(1 - p)
            l1 = (boxes[i] - tgt_boxes[j]).abs().sum().item()
            cost[i, j] = (
                w["cost_class"] * (pos - neg) + w["cost_bbox"] * l1 - w["cost_giou"] * giou[i, j]
            )
    return cost


def brute_force_min(cost):
    """Smallest total cost over all one-to-one assignments of min(Q, N) pairs."""
    q, n = cost.shape
    if q >= n:
        return min(
            sum(cost[p[j], j] for j in range(n)) for p in itertools.permutations(range(q), n)
        )
    return min(sum(cost[i, p[i]] for i in range(q)) for p in itertools.permutations(range(n), q))


def random_image(q, n, c, g):
    logits = torch.randn(q, c, generator=g) * 2
    boxes = torch.cat(
        [torch.rand(q, 2, generator=g), torch.rand(q, 2, generator=g) * 0.5 + 0.05], 1
    )
    labels = torch.randint(0, c, (n,), generator=g)
    tgt = torch.cat([torch.rand(n, 2, generator=g), torch.rand(n, 2, generator=g) * 0.5 + 0.05], 1)
    return logits, boxes, labels, tgt


def test_cost_matrix_matches_reference():
    g = torch.Generator().manual_seed(0)
    logits, boxes, labels, tgt = random_image(6, 4, 5, g)
    cost = HungarianMatcher(**WEIGHTS).cost_matrix(logits, boxes, labels, tgt)
    assert cost.shape == (6, 4)
    torch.testing.assert_close(cost.double(), reference_cost(logits, boxes, labels, tgt))


@pytest.mark.parametrize("seed", range(12))
def test_matching_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    q = int(torch.randint(1, 6, (1,), generator=g))
    n = int(torch.randint(1, 4, (1,), generator=g))
    logits, boxes, labels, tgt = random_image(q, n, 3, g)
    matcher = HungarianMatcher(**WEIGHTS)
    [(pred_idx, tgt_idx)] = matcher(logits[None], boxes[None], [dict(labels=labels, boxes=tgt)])
    k = min(q, n)
    assert pred_idx.dtype == tgt_idx.dtype == torch.int64
    assert len(pred_idx) == len(tgt_idx) == k
    assert len(set(pred_idx.tolist())) == k and len(set(tgt_idx.tolist())) == k
    assert pred_idx.tolist() == sorted(pred_idx.tolist())
    cost = reference_cost(logits, boxes, labels, tgt)
    total = cost[pred_idx, tgt_idx].sum().item()
    assert total == pytest.approx(brute_force_min(cost).item(), abs=1e-5)


def test_obvious_assignment():
    # three queries sitting exactly on three targets in shuffled order
    tgt = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.7, 0.1, 0.3]])
    boxes = torch.cat([tgt[[2, 0, 1]], torch.tensor([[0.5, 0.1, 0.05, 0.05]])])
    labels = torch.tensor([0, 1, 0])
    logits = torch.full((4, 2), -3.0)
    [(pred_idx, tgt_idx)] = HungarianMatcher()(
        logits[None], boxes[None], [dict(labels=labels, boxes=tgt)]
    )
    assert dict(zip(pred_idx.tolist(), tgt_idx.tolist())) == {0: 2, 1: 0, 2: 1}


def test_empty_targets_and_half_empty_batch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 4, generator=g)
    boxes = torch.rand(3, 5, 4, generator=g) * 0.5 + 0.1
    _, _, labels, tgt = random_image(5, 2, 4, g)
    empty = dict(labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4))
    indices = HungarianMatcher()(logits, boxes, [empty, dict(labels=labels, boxes=tgt), empty])
    assert len(indices) == 3
    for i in (0, 2):
        assert indices[i][0].shape == (0,) and indices[i][1].shape == (0,)
        assert indices[i][0].dtype == torch.int64
    alone = HungarianMatcher()(logits[1:2], boxes[1:2], [dict(labels=labels, boxes=tgt)])
    assert torch.equal(indices[1][0], alone[0][0]) and torch.equal(indices[1][1], alone[0][1])
    assert sorted(indices[1][1].tolist()) == [0, 1]


def test_no_grad_built_from_registry_and_errors():
    matcher = MODELS.build(dict(type="HungarianMatcher", cost_class=1.0))
    assert isinstance(matcher, HungarianMatcher) and matcher.cost_class == 1.0
    logits = torch.randn(1, 3, 2, requires_grad=True)
    boxes = torch.rand(1, 3, 4, requires_grad=True)
    target = dict(labels=torch.tensor([1]), boxes=torch.tensor([[0.5, 0.5, 0.2, 0.2]]))
    matcher(logits, boxes, [target])  # no grad needed, no error from numpy conversion
    with pytest.raises(ValueError, match="not finite"):
        matcher(logits, boxes * float("nan"), [target])
    with pytest.raises(ValueError, match="do not agree"):
        matcher(logits, boxes, [target, target])
    with pytest.raises(ValueError, match="all cost weights are 0"):
        HungarianMatcher(0, 0, 0)
