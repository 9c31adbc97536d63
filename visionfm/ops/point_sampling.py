"""Point sampling and neighbourhoods on packed point clouds, in plain PyTorch (no pointops /
knn_cuda): farthest point sampling (PointNet++, Qi et al., NeurIPS 2017), k nearest
neighbours, ball query and three-nearest-neighbour interpolation, as Point-MAE / Point-BERT
and Pointcept use them.

Clouds are packed (``visionfm.ops.point_batch``): ``coords (N, 3)`` with ``offsets (B,)``
cumulative ends. Neighbours are only ever searched within the query's own cloud, and every
returned index points into the packed support tensor. Distances are Euclidean (not squared).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from visionfm.ops.point_batch import (
    check_coords,
    offsets_to_lengths,
    offsets_to_starts,
)

__all__ = ["ball_query", "farthest_point_sampling", "knn", "three_nn_interpolate"]


def farthest_point_sampling(
    coords: Tensor,
    offsets: Tensor,
    num_samples: int | Tensor,
    start: Literal["first", "random"] = "first",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Farthest point sampling of every cloud at once (clouds padded internally).

    Each cloud starts at its first point (``start='first'``, as PointNet++ / pointops) or a
    uniformly random one, then repeatedly takes the point farthest from those taken; ties go
    to the lowest index.

    Args:
        coords: (N, 3) float packed points.
        offsets: (B,) cumulative ends.
        num_samples: samples per cloud, an int or a (B,) integer tensor; at most the cloud's
            number of points.
        start: ``'first'`` or ``'random'`` (drawn with ``generator``).

    Returns:
        indices: (S,) int64 rows of ``coords``, cloud by cloud, in sampling order.
        new_offsets: (B,) int64 cumulative ends of the samples.
    """
    check_coords(coords, offsets)
    lengths = offsets_to_lengths(offsets).long()
    num = torch.as_tensor(num_samples, device=coords.device).long().expand(len(offsets))
    over = (num > lengths) | (num < 1)
    if bool(over.any()):
        b = int(over.nonzero()[0])
        raise ValueError(
            f"farthest_point_sampling: cloud {b} has {int(lengths[b])} points but "
            f"{int(num[b])} samples were asked; num_samples must be in [1, points per cloud]"
        )
    if start not in ("first", "random"):
        raise ValueError(f"start must be 'first' or 'random', got {start!r}")
    num_clouds, width = len(offsets), int(lengths.max())
    starts = offsets_to_starts(offsets).long()
    column = torch.arange(width, device=coords.device)
    valid = column < lengths[:, None]  # (B, L)
    rows = (starts[:, None] + column).clamp(max=coords.shape[0] - 1)
    padded = coords[rows]  # (B, L, 3)
    # padding never wins the argmax: -1 is below every real squared distance
    nearest = torch.where(valid, torch.inf, -1.0).to(coords.dtype)  # (B, L)
    if start == "first":
        current = torch.zeros(num_clouds, dtype=torch.long, device=coords.device)
    else:
        draw = torch.rand(num_clouds, generator=generator, device=coords.device)
        current = (draw * lengths).long().clamp(max=lengths - 1)
    chosen = []
    batch = torch.arange(num_clouds, device=coords.device)
    for _ in range(int(num.max())):
        chosen.append(current)
        centre = padded[batch, current]  # (B, 3)
        dist = ((padded - centre[:, None]) ** 2).sum(-1)
        nearest = torch.minimum(nearest, dist)  # padding stays at -1 (dist >= 0)
        current = nearest.argmax(1)
    chosen = torch.stack(chosen, 1)  # (B, S_max)
    keep = torch.arange(chosen.shape[1], device=coords.device) < num[:, None]
    indices = (chosen + starts[:, None])[keep]
    return indices, torch.cumsum(num, 0)


def _nearest(
    query: Tensor,
    query_offsets: Tensor,
    support: Tensor,
    support_offsets: Tensor,
    k: int,
    chunk_size: int,
) -> tuple[Tensor, Tensor]:
    """The ``min(k, cloud size)`` nearest support points of each query, padded to k with
    index -1 and distance inf. Returns (M, k) int64 packed indices and (M, k) distances."""
    check_coords(query, query_offsets, "query")
    check_coords(support, support_offsets, "support")
    if len(query_offsets) != len(support_offsets):
        raise ValueError(
            f"query has {len(query_offsets)} clouds but support has {len(support_offsets)}: "
            "pass the offsets of the same batch"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    index = query.new_full((query.shape[0], k), -1, dtype=torch.long)
    dist = query.new_full((query.shape[0], k), torch.inf)
    q_start, s_start = (
        offsets_to_starts(query_offsets).tolist(),
        offsets_to_starts(support_offsets).tolist(),
    )
    for q0, q1, s0, s1 in zip(q_start, query_offsets.tolist(), s_start, support_offsets.tolist()):
        cloud = support[s0:s1]
        take = min(k, s1 - s0)
        for c0 in range(q0, q1, chunk_size):  # memory: chunk_size x cloud size distances
            c1 = min(c0 + chunk_size, q1)
            d = torch.cdist(query[c0:c1], cloud, compute_mode="donot_use_mm_for_euclid_dist")
            d, i = d.topk(take, dim=1, largest=False, sorted=True)
            dist[c0:c1, :take], index[c0:c1, :take] = d, i + s0
    return index, dist


def knn(
    query: Tensor,
    query_offsets: Tensor,
    support: Tensor,
    support_offsets: Tensor,
    k: int,
    chunk_size: int = 4096,
) -> tuple[Tensor, Tensor]:
    """The k nearest support points of each query point, within the query's cloud.

    Args:
        query: (M, 3) float packed query points, ``query_offsets (B,)`` cumulative ends.
        support: (N, 3) float packed support points, ``support_offsets (B,)``, same B.
        k: neighbours per query; every support cloud needs at least k points.
        chunk_size: queries per distance block (memory ``chunk_size x`` cloud size).

    Returns:
        indices: (M, k) int64 rows of ``support``, nearest first.
        distances: (M, k) Euclidean distances, ascending.
    """
    lengths = offsets_to_lengths(support_offsets)
    short = (lengths < k).nonzero()
    if short.numel():
        b = int(short[0])
        raise ValueError(
            f"knn: support cloud {b} has {int(lengths[b])} points, fewer than k = {k}; "
            "lower k or use ball_query, which pads"
        )
    return _nearest(query, query_offsets, support, support_offsets, k, chunk_size)


def ball_query(
    query: Tensor,
    query_offsets: Tensor,
    support: Tensor,
    support_offsets: Tensor,
    radius: float,
    k: int,
    chunk_size: int = 4096,
) -> tuple[Tensor, Tensor]:
    """Up to k nearest support points within ``radius`` of each query, within its cloud.

    The neighbours are the nearest ones in the ball (as pointops' ``ball_query``, not
    PointNet++'s first-k-in-index-order); missing slots repeat the nearest neighbour, as
    PointNet++'s ``query_ball_point`` repeats its first one. A query with no support point in
    the ball gets index -1 and distance inf in every slot: mask it before gathering.

    Args:
        query: (M, 3), ``query_offsets (B,)``; support: (N, 3), ``support_offsets (B,)``.
        radius: ball radius (inclusive), same units as the coordinates.
        k: neighbours per query.

    Returns:
        indices: (M, k) int64 rows of ``support``; distances: (M, k).
    """
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    index, dist = _nearest(query, query_offsets, support, support_offsets, k, chunk_size)
    inside = dist <= radius
    index = torch.where(inside, index, index[:, :1])
    dist = torch.where(inside, dist, dist[:, :1])
    empty = ~inside[:, 0]
    index[empty], dist[empty] = -1, torch.inf
    return index, dist


def three_nn_interpolate(
    feats: Tensor,
    source: Tensor,
    source_offsets: Tensor,
    target: Tensor,
    target_offsets: Tensor,
    eps: float = 1e-8,
) -> Tensor:
    """Features at ``target`` points from the 3 nearest ``source`` points of the same cloud,
    weighted by inverse distance ``1 / (d + eps)`` normalised to sum 1 (PointNet++'s feature
    propagation).

    Args:
        feats: (N, C) features of the source points.
        source: (N, 3), ``source_offsets (B,)``; every source cloud needs at least 3 points.
        target: (M, 3), ``target_offsets (B,)``.

    Returns:
        (M, C) interpolated features.
    """
    if feats.dim() != 2 or feats.shape[0] != source.shape[0]:
        raise ValueError(
            f"feats must be (N, C) with N = {source.shape[0]} source points, got {tuple(feats.shape)}"
        )
    index, dist = knn(target, target_offsets, source, source_offsets, 3)
    weight = 1.0 / (dist + eps)
    weight = weight / weight.sum(1, keepdim=True)  # (M, 3)
    return (feats[index] * weight[..., None].to(feats.dtype)).sum(1)
