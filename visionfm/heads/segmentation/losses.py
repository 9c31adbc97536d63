"""Per-pixel losses of semantic segmentation heads: cross-entropy and softmax Dice.

Both take class logits ``(B, K, H, W)`` and targets ``(B, H, W)`` long at the same size,
where ``ignore_index`` (255) marks pixels without a label (unannotated, or padding added by
the data preprocessor); those pixels take no part in either loss. Losses are computed in
float32 also under autocast.

Dice: Milletari et al., "V-Net", 3DV 2016, here on the softmax probabilities of all ``K``
classes (one-vs-rest per class, averaged over classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_seg_labels", "semantic_ce_loss", "softmax_dice_loss"]


def check_seg_labels(target: Tensor, num_classes: int, ignore_index: int = 255) -> None:
    """Raise if ``target`` (any shape, long) holds a label outside ``0..num_classes-1`` that
    is not ``ignore_index``: cross-entropy would fail with a bare index error (CPU) or a
    device-side assert (CUDA)."""
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bad.any():
        values = sorted(set(target[bad].unique().tolist()))
        raise ValueError(
            f"semantic labels {values[:10]} are outside 0..{num_classes - 1} (num_classes="
            f"{num_classes}) and not the ignore index {ignore_index}; check the head's "
            f"num_classes and the dataset's classes / reduce_zero_label"
        )


def semantic_ce_loss(
    logits: Tensor,
    target: Tensor,
    class_weight: Tensor | None = None,
    ignore_index: int = 255,
) -> Tensor:
    """Softmax cross-entropy averaged over the labelled pixels.

    Args:
        logits: (B, K, H, W) class logits.
        target: (B, H, W) long labels in 0..K-1, or ``ignore_index``.
        class_weight: (K,) per-class weights; the mean is then weighted as in
            ``F.cross_entropy``: ``sum_i w[y_i] * ce_i / sum_i w[y_i]``.

    Returns:
        scalar. Without any labelled pixel: 0, still connected to ``logits``.
    """
    logits = logits.float()
    if not (target != ignore_index).any():
        return logits.sum() * 0.0
    weight = class_weight.to(logits) if class_weight is not None else None
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)


def softmax_dice_loss(
    logits: Tensor, target: Tensor, ignore_index: int = 255, smooth: float = 1.0
) -> Tensor:
    """Softmax Dice loss over the labelled pixels of the whole batch.

    With ``p = softmax(logits)`` and ``y`` the one-hot target, per class ``c`` (sums over the
    labelled pixels of all images)::

        dice_c = (2 * sum(p_c * y_c) + smooth) / (sum(p_c) + sum(y_c) + smooth)
        loss = mean_c (1 - dice_c)

    A class absent from the target and predicted nowhere has ``dice_c`` near 1 (no loss).

    Args:
        logits: (B, K, H, W) class logits.
        target: (B, H, W) long labels in 0..K-1, or ``ignore_index``.
        smooth: added to numerator and denominator (keeps empty classes finite).

    Returns:
        scalar in [0, 1).
    """
    logits = logits.float()
    num_classes = logits.shape[1]
    valid = target != ignore_index  # (B, H, W)
    prob = logits.softmax(dim=1) * valid[:, None]  # (B, K, H, W), zero on ignored pixels
    onehot = F.one_hot(torch.where(valid, target, 0), num_classes).permute(0, 3, 1, 2)
    onehot = onehot.to(prob) * valid[:, None]  # (B, K, H, W)
    inter = (prob * onehot).sum(dim=(0, 2, 3))  # (K,)
    denom = prob.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))  # (K,)
    dice = (2 * inter + smooth) / (denom + smooth)
    return (1 - dice).mean()
