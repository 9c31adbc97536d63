"""Group DETR's query groups (Chen et al., 2023, "Group DETR: Fast DETR Training with
Group-Wise One-to-Many Assignment") decoded as images of their own, so that no group attends
another: the queries folded into the batch, the memory repeated to match.
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from visionfm.layers import Memory

__all__ = ["fold_groups", "repeat_batch"]


def fold_groups(x: Tensor, groups: int) -> Tensor:
    """(B, G * Q, D) -> (B * G, Q, D): Group DETR's query groups as images of their own."""
    return x.unflatten(1, (groups, -1)).flatten(0, 1)


def repeat_batch(memory: Memory, groups: int) -> Memory:
    """``memory`` with every image repeated ``groups`` times (image b's copies at
    ``b * G .. b * G + G - 1``), for :func:`fold_groups`' queries."""
    return replace(
        memory,
        feats=memory.feats.repeat_interleave(groups, 0),
        pos=memory.pos.repeat_interleave(groups, 0),
        padding_mask=memory.padding_mask.repeat_interleave(groups, 0),
        valid_ratios=memory.valid_ratios.repeat_interleave(groups, 0),
    )
