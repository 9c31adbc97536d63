"""Detection losses: sigmoid focal loss and the set-prediction losses of DETR-style heads.

Focal loss: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. Set losses after
a one-to-one matching: DETR (Carion et al., ECCV 2020) with the focal classification loss of
Deformable DETR (Zhu et al., ICLR 2021) / DINO (Zhang et al., ICLR 2023), or DETR's own
softmax cross-entropy with a down-weighted "no object" class
(:func:`softmax_classification_loss`), an L1 loss on normalised cxcywh boxes and a
generalized IoU loss (Rezatofighi et al., CVPR 2019).

A DETR head uses them per decoder layer::

    num_boxes = average_num_boxes(sum(len(t["labels"]) for t in targets), device)
    for logits, boxes in zip(all_layer_logits, all_layer_boxes):  # (B, Q, C), (B, Q, 4)
        indices = matcher(logits, boxes, targets)
        losses = set_prediction_losses(logits, boxes, targets, indices, num_boxes)
        # {"loss_cls", "loss_bbox", "loss_giou"}: unweighted; the head applies its weights

The box losses and the focal loss are sums over the batch divided by ``num_boxes``, the
number of ground-truth boxes averaged over processes
(``visionfm.heads.losses.average_num_boxes``), so every process's gradient has the same
scale; DETR's cross-entropy is its weighted mean over the queries, as in DETR.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from visionfm.ops.boxes import box_cxcywh_to_xyxy, box_iou, generalized_box_iou_paired

__all__ = [
    "box_l1_loss",
    "class_targets",
    "focal_classification_loss",
    "giou_loss",
    "iou_aware_classification_loss",
    "softmax_classification_loss",
    "set_prediction_losses",
    "sigmoid_focal_loss",
]


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Literal["none", "mean", "sum"] = "mean",
    normalizer: float | Tensor | None = None,
) -> Tensor:
    """Binary focal loss on sigmoid logits, per element.

    ``loss = a_t * (1 - p_t) ** gamma * BCE(logits, targets)`` with ``p_t = p`` for positives
    and ``1 - p`` for negatives, ``a_t = alpha`` / ``1 - alpha`` (no weighting if
    ``alpha < 0``).

    Args:
        logits: any shape, e.g. (B, Q, C).
        targets: same shape, in [0, 1] (one-hot labels or soft targets).
        reduction: ``'none'``: per-element loss; ``'sum'``: its sum; ``'mean'``: its sum
            divided by ``normalizer`` if given, else by the number of elements.
        normalizer: divisor of the sum for ``reduction='mean'`` (e.g. the number of boxes).

    Returns:
        the loss: same shape as ``logits`` for ``'none'``, else a scalar.
    """
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / normalizer if normalizer is not None else loss.mean()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def box_l1_loss(pred: Tensor, target: Tensor, normalizer: float | Tensor) -> Tensor:
    """Sum of absolute differences of (N, 4) boxes, divided by ``normalizer`` -> scalar."""
    return (pred - target).abs().sum() / normalizer


def giou_loss(pred: Tensor, target: Tensor, normalizer: float | Tensor) -> Tensor:
    """Sum of ``1 - GIoU`` over paired (N, 4) xyxy boxes, divided by ``normalizer`` -> scalar."""
    return (1 - generalized_box_iou_paired(pred, target)).sum() / normalizer


def _batch_indices(
    indices: list[tuple[Tensor, Tensor]], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Matched pairs of a batch -> (batch_idx, pred_idx) on ``device``, each (M,) over all
    images."""
    pred_idx = [p.to(device) for p, _ in indices]
    batch_idx = torch.cat([torch.full_like(p, i) for i, p in enumerate(pred_idx)])
    return batch_idx, torch.cat(pred_idx)


def _float32_or_wider(x: Tensor) -> Tensor:
    """Half / bfloat16 -> float32 (losses are computed in float32 also under autocast)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def class_targets(target: dict[str, Tensor], num_classes: int) -> Tensor:
    """(N, C) float class target of each box of one image: its ``class_map`` row where the
    target has one (grounding: the phrase's tokens), else one-hot of ``labels``."""
    if "class_map" in target:
        return target["class_map"].float()
    return F.one_hot(target["labels"].long(), num_classes).float()


def focal_classification_loss(
    pred_logits: Tensor,
    targets: list[dict[str, Tensor]],
    indices: list[tuple[Tensor, Tensor]],
    num_boxes: float,
    alpha: float = 0.25,
    gamma: float = 2.0,
    class_mask: Tensor | None = None,
) -> Tensor:
    """Focal loss of every query against its matched target's class, or "no object".

    Args:
        pred_logits: (B, Q, C) logits.
        targets: B dicts with ``labels`` (N_i,) in 0..C-1, or a ``class_map`` (N_i, C) of
            0 / 1 targets (grounding: the tokens of each box's phrase; see
            :func:`class_targets`).
        indices: B ``(pred_idx, tgt_idx)`` pairs from the matcher.
        num_boxes: normaliser (``average_num_boxes``).
        class_mask: bool broadcastable to (B, Q, C), True where a class counts (grounding:
            the real tokens of each prompt); None: all.

    Returns:
        scalar: focal loss summed over (B, Q, C) / ``num_boxes``. Unmatched queries have an
        all-zero target, so an image without ground truth still has a loss.
    """
    pred_logits = _float32_or_wider(pred_logits)
    target = torch.zeros_like(pred_logits)  # (B, Q, C)
    batch_idx, pred_idx = _batch_indices(indices, pred_logits.device)
    rows = [
        class_targets(t, pred_logits.shape[-1]).to(pred_logits)[tgt.to(pred_logits.device)]
        for t, (_, tgt) in zip(targets, indices)
    ]
    target[batch_idx, pred_idx] = torch.cat(rows)
    loss = sigmoid_focal_loss(pred_logits, target, alpha, gamma, reduction="none")
    if class_mask is not None:
        loss = loss * class_mask.to(loss.dtype)
    return loss.sum() / num_boxes


def iou_aware_classification_loss(
    pred_logits: Tensor,
    pred_boxes: Tensor,
    targets: list[dict[str, Tensor]],
    indices: list[tuple[Tensor, Tensor]],
    num_boxes: float,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """LW-DETR's / RF-DETR's IoU-aware BCE: the matched class of a matched query is a soft
    positive of quality ``t = clamp(p ** alpha * IoU ** (1 - alpha), min=0.01)`` (``p`` its
    score, IoU of its box with the target's; both detached), so the loss is
    ``-t log p - (1 - t) log(1 - p)`` there; every other (query, class) is a negative
    weighted ``p ** gamma``: ``-p ** gamma log(1 - p)``.

    Args:
        pred_logits: (B, Q, C); pred_boxes: (B, Q, 4) normalised cxcywh.
        targets, indices, num_boxes: as :func:`focal_classification_loss`.

    Returns:
        scalar: the sum over (B, Q, C) / ``num_boxes``.
    """
    pred_logits = _float32_or_wider(pred_logits)
    prob = pred_logits.sigmoid()
    batch_idx, pred_idx = _batch_indices(indices, pred_logits.device)
    labels = torch.cat([t["labels"].long()[tgt] for t, (_, tgt) in zip(targets, indices)])
    labels = labels.to(pred_logits.device)
    tgt_boxes = torch.cat([t["boxes"][tgt] for t, (_, tgt) in zip(targets, indices)])
    matched = box_cxcywh_to_xyxy(pred_boxes[batch_idx, pred_idx].detach().to(prob))
    iou = box_iou(matched, box_cxcywh_to_xyxy(tgt_boxes.to(prob)))[0].diagonal()  # (M,)
    quality = (prob[batch_idx, pred_idx, labels].detach() ** alpha * iou ** (1 - alpha)).clamp(
        min=0.01
    )
    pos_weight = torch.zeros_like(prob)
    neg_weight = prob.detach() ** gamma
    pos_weight[batch_idx, pred_idx, labels] = quality
    neg_weight[batch_idx, pred_idx, labels] = 1 - quality
    # -log(p) = softplus(-x), -log(1 - p) = softplus(x)
    loss = pos_weight * F.softplus(-pred_logits) + neg_weight * F.softplus(pred_logits)
    return loss.sum() / num_boxes


def softmax_classification_loss(
    pred_logits: Tensor,
    targets: list[dict[str, Tensor]],
    indices: list[tuple[Tensor, Tensor]],
    no_object_weight: float = 0.1,
) -> Tensor:
    """DETR's classification loss: cross-entropy of every query against its matched target's
    class, or "no object" (the last class).

    Args:
        pred_logits: (B, Q, C + 1) logits, the last column "no object".
        targets: B dicts with ``labels`` (N_i,) in 0..C-1.
        indices: B ``(pred_idx, tgt_idx)`` pairs from the matcher.
        no_object_weight: the class weight of "no object" (DETR's ``eos_coef``); real classes
            weigh 1.

    Returns:
        scalar: the weighted mean over (B, Q), ``sum(w_q * CE_q) / sum(w_q)`` with ``w_q`` the
        weight of query q's target class (PyTorch's weighted ``cross_entropy``).
    """
    pred_logits = _float32_or_wider(pred_logits)
    num_classes = pred_logits.shape[-1] - 1
    target = torch.full(pred_logits.shape[:2], num_classes, device=pred_logits.device)
    batch_idx, pred_idx = _batch_indices(indices, pred_logits.device)
    labels = [t["labels"].long()[tgt] for t, (_, tgt) in zip(targets, indices)]
    target[batch_idx, pred_idx] = torch.cat(labels).to(target.device)
    weight = pred_logits.new_ones(num_classes + 1)
    weight[-1] = no_object_weight
    return F.cross_entropy(pred_logits.transpose(1, 2), target, weight)


def set_prediction_losses(
    pred_logits: Tensor,
    pred_boxes: Tensor,
    targets: list[dict[str, Tensor]],
    indices: list[tuple[Tensor, Tensor]],
    num_boxes: float,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    class_mask: Tensor | None = None,
    no_object_weight: float | None = None,
    iou_aware: bool = False,
) -> dict[str, Tensor]:
    """Losses of one decoder layer given its matching.

    Args:
        pred_logits: (B, Q, C) classification logits.
        pred_boxes: (B, Q, 4) predicted boxes, normalised cxcywh.
        targets: B dicts with ``labels`` (N_i,) long and ``boxes`` (N_i, 4) normalised cxcywh.
        indices: B ``(pred_idx, tgt_idx)`` pairs (``HungarianMatcher``'s output).
        num_boxes: normaliser from ``average_num_boxes``.
        class_mask: see :func:`focal_classification_loss`.
        no_object_weight: None: the focal loss on sigmoid logits (B, Q, C); a number: DETR's
            :func:`softmax_classification_loss` on (B, Q, C + 1) logits with that weight.
        iou_aware: LW-DETR's :func:`iou_aware_classification_loss` instead of the focal loss.

    Returns:
        ``loss_cls`` (focal or cross-entropy), ``loss_bbox`` (L1 on cxcywh), ``loss_giou``
        (1 - GIoU on xyxy), unweighted scalars. Without any matched box the box losses are
        exactly 0 and still connected to ``pred_boxes`` (so every parameter receives a gradient).
    """
    batch_idx, pred_idx = _batch_indices(indices, pred_boxes.device)
    matched = _float32_or_wider(pred_boxes[batch_idx, pred_idx])  # (M, 4)
    tgt_boxes = torch.cat(
        [t["boxes"].to(matched)[tgt.to(matched.device)] for t, (_, tgt) in zip(targets, indices)]
    )  # (M, 4)
    if iou_aware:
        loss_cls = iou_aware_classification_loss(
            pred_logits, pred_boxes, targets, indices, num_boxes, focal_alpha, focal_gamma
        )
    elif no_object_weight is None:
        loss_cls = focal_classification_loss(
            pred_logits, targets, indices, num_boxes, focal_alpha, focal_gamma, class_mask
        )
    else:
        loss_cls = softmax_classification_loss(pred_logits, targets, indices, no_object_weight)
    return dict(
        loss_cls=loss_cls,
        loss_bbox=box_l1_loss(matched, tgt_boxes, num_boxes),
        loss_giou=giou_loss(box_cxcywh_to_xyxy(matched), box_cxcywh_to_xyxy(tgt_boxes), num_boxes),
    )
