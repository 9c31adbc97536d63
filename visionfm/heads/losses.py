"""Loss parts shared by several head families: the normaliser of set-prediction losses (DETR
boxes, Mask2Former masks) averaged over processes, so that N processes of batch b take the
steps of one process of batch N * b."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["average_num_boxes"]


def average_num_boxes(num_local: int | Tensor, device: torch.device | str) -> float:
    """Number of ground-truth boxes per process, averaged over processes, at least 1.

    ``num_local`` is this process's count (summed over its batch). With
    ``torch.distributed`` initialised, the counts are all-reduced and divided by the world
    size; otherwise ``num_local`` is used. The clamp at 1 keeps batches without any box
    finite.
    """
    num = torch.as_tensor(num_local, dtype=torch.float32, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num)
        num = num / dist.get_world_size()
    return max(num.item(), 1.0)
