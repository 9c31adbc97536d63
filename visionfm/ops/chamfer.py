"""Chamfer distance between batched point sets, in plain PyTorch (Point-MAE's ``chamfer_dist``
is a CUDA extension).

For sets ``a`` (N points) and ``b`` (M points), ``d_ab[i]`` is the squared distance from
``a[i]`` to its nearest point of ``b`` and ``d_ba[j]`` the reverse. Point-MAE's losses:

- ``'l2'`` (``ChamferDistanceL2``): ``mean(d_ab) + mean(d_ba)``;
- ``'l1'`` (``ChamferDistanceL1``): ``(mean(sqrt d_ab) + mean(sqrt d_ba)) / 2``,

the means taken over every point of every set in the batch. Nearest neighbours are found
without gradients, block by block (memory ``B x chunk_size x M`` distances), and the
distances to them recomputed differentiably, which gives the same gradients as the CUDA
kernel (each point pulled towards its nearest neighbour, and that neighbour towards it).
``'l1'`` has an infinite gradient where a point coincides with its neighbour, as Point-MAE's.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["chamfer_distance", "nearest_squared_distances"]


def _check(a: Tensor, b: Tensor) -> None:
    for name, x in (("a", a), ("b", b)):
        if x.dim() != 3 or x.shape[2] != 3 or x.shape[1] == 0:
            raise ValueError(f"chamfer: {name} must be (B, N > 0, 3), got {tuple(x.shape)}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"chamfer: a and b hold different numbers of sets, {a.shape[0]} vs {b.shape[0]}; "
            "pair every predicted set with its target"
        )


def nearest_squared_distances(
    a: Tensor, b: Tensor, chunk_size: int = 2048
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Nearest neighbours both ways between batched point sets.

    Args:
        a: (B, N, 3); b: (B, M, 3), the same batch size.
        chunk_size: rows of ``a`` per distance block.

    Returns:
        d_ab: (B, N) squared distance of each ``a`` point to its nearest ``b`` point
            (differentiable in ``a`` and ``b``); idx_ab: (B, N) int64 that point's index in b.
        d_ba: (B, M), idx_ba: (B, M) the same from ``b`` to ``a``.
    """
    _check(a, b)
    bsz, n, m = a.shape[0], a.shape[1], b.shape[1]
    with torch.no_grad():
        idx_ab = torch.empty(bsz, n, dtype=torch.int64, device=a.device)
        best_ba = torch.full((bsz, m), float("inf"), dtype=a.dtype, device=a.device)
        idx_ba = torch.zeros(bsz, m, dtype=torch.int64, device=a.device)
        for c0 in range(0, n, chunk_size):
            c1 = min(c0 + chunk_size, n)
            dist = torch.cdist(a[:, c0:c1], b)  # (B, c, M)
            idx_ab[:, c0:c1] = dist.argmin(2)
            low, arg = dist.min(1)  # (B, M): this block's nearest a-point of every b-point
            better = low < best_ba  # strict: ties keep the lower a index
            best_ba = torch.where(better, low, best_ba)
            idx_ba = torch.where(better, arg + c0, idx_ba)
    near_b = b.gather(1, idx_ab[..., None].expand(-1, -1, 3))  # (B, N, 3)
    near_a = a.gather(1, idx_ba[..., None].expand(-1, -1, 3))  # (B, M, 3)
    d_ab = ((a - near_b) ** 2).sum(-1)
    d_ba = ((b - near_a) ** 2).sum(-1)
    return d_ab, idx_ab, d_ba, idx_ba


def chamfer_distance(
    a: Tensor, b: Tensor, norm: Literal["l2", "l1"] = "l2", chunk_size: int = 2048
) -> Tensor:
    """Point-MAE's Chamfer distance (see the module doc) of (B, N, 3) and (B, M, 3) -> scalar."""
    if norm not in ("l2", "l1"):
        raise ValueError(f"chamfer_distance: norm must be 'l2' or 'l1', got {norm!r}")
    d_ab, _, d_ba, _ = nearest_squared_distances(a, b, chunk_size)
    if norm == "l2":
        return d_ab.mean() + d_ba.mean()
    return (d_ab.sqrt().mean() + d_ba.sqrt().mean()) / 2
