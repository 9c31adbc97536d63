"""Set losses of Mask2Former (Cheng et al., CVPR 2022) for one decoder layer, given its
matching:

- ``loss_cls``: softmax cross-entropy over K classes + "no object" for every query
  (unmatched queries: no object), the no-object class weighted ``no_object_weight`` (0.1),
  averaged with those weights (PyTorch's weighted mean);
- ``loss_mask``: binary cross-entropy of matched masks on ``num_points`` points per mask
  chosen by importance sampling (PointRend: 3x oversampling, 75 % of the points where the
  prediction is most uncertain, the rest uniform), averaged over the points, summed over the
  masks and divided by ``num_masks``;
- ``loss_dice``: the Dice loss on the same points, summed and divided by ``num_masks``.

``num_masks`` is the number of ground-truth masks averaged over processes
(``visionfm.heads.losses.average_num_boxes``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from visionfm.ops.point_sample import point_sample, uncertain_points

__all__ = ["mask2former_losses", "point_bce_loss", "sigmoid_dice_loss"]


def sigmoid_dice_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """(M, P) logits and targets in [0, 1] -> scalar: sum of per-mask Dice losses /
    ``num_masks`` (numerator and denominator smoothed by 1)."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def point_bce_loss(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """(M, P) logits and targets -> scalar: per-mask mean BCE, summed / ``num_masks``."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return bce.mean(-1).sum() / num_masks


def mask2former_losses(
    cls_logits: Tensor,
    mask_logits: Tensor,
    targets: list[dict[str, Tensor]],
    indices: list[tuple[Tensor, Tensor]],
    num_masks: float,
    class_weight: Tensor,
    num_points: int = 12544,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
) -> dict[str, Tensor]:
    """Unweighted losses of one layer (see the module doc).

    Args:
        cls_logits: (B, Q, K + 1); mask_logits: (B, Q, H, W).
        targets: B dicts with ``labels`` (N_i,) long and ``masks`` (N_i, H', W') bool, the
            masks covering the same (padded) extent as ``mask_logits``.
        indices: B ``(pred_idx, tgt_idx)`` pairs from the matcher.
        class_weight: (K + 1,) cross-entropy weights (the last: no object).

    Returns:
        ``loss_cls``, ``loss_mask``, ``loss_dice``; without any matched mask the mask losses
        are 0 and still connected to ``mask_logits``.
    """
    cls_logits = cls_logits.float()
    num_classes = cls_logits.shape[-1] - 1
    device = cls_logits.device
    target_classes = torch.full(cls_logits.shape[:2], num_classes, dtype=torch.long, device=device)
    batch_idx = torch.cat([torch.full_like(p, i) for i, (p, _) in enumerate(indices)]).to(device)
    pred_idx = torch.cat([p for p, _ in indices]).to(device)
    matched_labels = torch.cat(
        [t["labels"].to(device)[tgt.to(device)] for t, (_, tgt) in zip(targets, indices)]
    )
    target_classes[batch_idx, pred_idx] = matched_labels
    loss_cls = F.cross_entropy(
        cls_logits.transpose(1, 2), target_classes, weight=class_weight.to(cls_logits)
    )
    if len(pred_idx) == 0:
        zero = mask_logits.sum() * 0.0
        return dict(loss_cls=loss_cls, loss_mask=zero, loss_dice=zero)

    src = mask_logits[batch_idx, pred_idx][:, None].float()  # (M, 1, H, W)
    tgt = torch.cat(
        [t["masks"].to(device)[idx.to(device)] for t, (_, idx) in zip(targets, indices)]
    )[:, None].float()  # (M, 1, H', W')
    points = uncertain_points(src, num_points, oversample_ratio, importance_sample_ratio)
    with torch.no_grad():
        point_targets = point_sample(tgt, points)[:, 0]  # (M, P)
    point_logits = point_sample(src, points)[:, 0]  # (M, P)
    return dict(
        loss_cls=loss_cls,
        loss_mask=point_bce_loss(point_logits, point_targets, num_masks),
        loss_dice=sigmoid_dice_loss(point_logits, point_targets, num_masks),
    )
