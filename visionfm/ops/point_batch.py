"""Packed point-cloud batches: B clouds stored one after another in ``(N, ...)`` tensors,
with ``offsets (B,)`` the cumulative end of each cloud (Pointcept's convention: cloud b is
rows ``offsets[b - 1]:offsets[b]``, ``offsets[-1] == N``), never padded.

The conversions between offsets, per-point batch indices and per-cloud lengths live here,
with the checks every point op runs on its inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "batch_to_offsets",
    "check_coords",
    "check_offsets",
    "offsets_to_batch",
    "offsets_to_lengths",
    "offsets_to_starts",
]


def check_offsets(offsets: Tensor, num_points: int, name: str = "offsets") -> None:
    """Refuse offsets that are not a valid packing of ``num_points`` rows.

    Args:
        offsets: (B,) integer cumulative ends, strictly increasing (no empty cloud),
            the last equal to ``num_points``.
        num_points: N, the number of packed rows.
        name: the argument's name, for the message.
    """
    if offsets.dim() != 1 or offsets.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor (B,), got {tuple(offsets.shape)}")
    if offsets.dtype.is_floating_point or offsets.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {offsets.dtype}")
    lengths = offsets_to_lengths(offsets)
    empty = (lengths <= 0).nonzero()
    if empty.numel():
        b = int(empty[0])
        raise ValueError(
            f"{name}: cloud {b} is empty or offsets decrease there "
            f"({name}[{b}] = {int(offsets[b])} after {int(offsets[b] - lengths[b])}); "
            "offsets must be strictly increasing cumulative ends: drop empty clouds first"
        )
    if int(offsets[-1]) != num_points:
        raise ValueError(
            f"{name}[-1] = {int(offsets[-1])} but there are {num_points} points: offsets are "
            "cumulative ends, e.g. torch.cumsum(lengths, 0)"
        )


def check_coords(coords: Tensor, offsets: Tensor, name: str = "coords") -> None:
    """Refuse coordinates that are not ``(N, 3)`` finite floats packed by ``offsets``.

    Args:
        coords: (N, 3) float.
        offsets: (B,) cumulative ends.
        name: the argument's name, for the message.
    """
    if coords.dim() != 2 or coords.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3), got {tuple(coords.shape)}")
    if not coords.dtype.is_floating_point:
        raise TypeError(f"{name} must be a float tensor, got {coords.dtype}")
    check_offsets(offsets, coords.shape[0], f"{name} offsets")
    bad = (~torch.isfinite(coords).all(1)).nonzero()
    if bad.numel():
        row = int(bad[0])
        cloud = int(
            torch.searchsorted(offsets, torch.tensor(row, device=offsets.device), right=True)
        )
        raise ValueError(
            f"{name}: cloud {cloud} has a NaN / inf coordinate at packed row {row} "
            f"({coords[row].tolist()}); clean or drop those points before sampling"
        )


def offsets_to_lengths(offsets: Tensor) -> Tensor:
    """(B,) cumulative ends -> (B,) number of points of each cloud."""
    return torch.diff(offsets, prepend=offsets.new_zeros(1))


def offsets_to_starts(offsets: Tensor) -> Tensor:
    """(B,) cumulative ends -> (B,) first packed row of each cloud."""
    return offsets - offsets_to_lengths(offsets)


def offsets_to_batch(offsets: Tensor) -> Tensor:
    """(B,) cumulative ends -> (N,) int64 cloud index of each packed row."""
    lengths = offsets_to_lengths(offsets).long()
    return torch.repeat_interleave(torch.arange(len(offsets), device=offsets.device), lengths)


def batch_to_offsets(batch: Tensor, num_clouds: int | None = None) -> Tensor:
    """(N,) sorted cloud index of each row -> (B,) int64 cumulative ends.

    ``num_clouds`` defaults to ``batch.max() + 1``; clouds without rows give repeated ends.
    """
    if batch.numel() and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("batch must be sorted (rows of one cloud contiguous) to give offsets")
    if num_clouds is None:
        num_clouds = int(batch.max()) + 1 if batch.numel() else 0
    return torch.cumsum(torch.bincount(batch, minlength=num_clouds), 0)
