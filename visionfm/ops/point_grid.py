"""Voxel grids on packed point clouds, in plain PyTorch (no spconv / torch_scatter): grid
sampling (Pointcept's ``GridSample`` transform), space-filling-curve serialization (z-order
and Hilbert, as Point Transformer V3, Wu et al., CVPR 2024, orders points for its patch
attention) and pooling of features over clusters.

Clouds are packed (``visionfm.ops.point_batch``): ``coords (N, 3)`` with ``offsets (B,)``
cumulative ends.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from visionfm.ops.point_batch import check_coords, offsets_to_batch

__all__ = ["GridSample", "Serialization", "grid_sample", "scatter_pool", "serialize", "voxelize"]

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")


class GridSample(NamedTuple):
    """One point per occupied voxel.

    indices: (S,) int64 rows of the input coords, cloud by cloud.
    offsets: (B,) int64 cumulative ends of the sampled clouds.
    grid_coords: (S, 3) int64 voxel of each sample, counted from its cloud's lowest voxel.
    inverse: (N,) int64 sample whose voxel holds each input point (``x[indices][inverse]``
        spreads per-sample values back over every input point).
    """

    indices: Tensor
    offsets: Tensor
    grid_coords: Tensor
    inverse: Tensor


class Serialization(NamedTuple):
    """codes: (N,) int64, the cloud index in the bits above ``3 * depth``.
    order: (N,) int64 permutation sorting the codes (``codes[order]`` ascending).
    inverse: (N,) int64 with ``order[inverse] == arange(N)``."""

    codes: Tensor
    order: Tensor
    inverse: Tensor


def _voxels(
    coords: Tensor, offsets: Tensor, grid_size: float | Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Voxel of each point and a key unique per (cloud, voxel), ascending with the cloud.

    Returns batch (N,), grid (N, 3) int64 and key (N,) int64."""
    check_coords(coords, offsets)
    size = torch.as_tensor(grid_size, dtype=coords.dtype, device=coords.device)
    if not bool((size > 0).all()):
        raise ValueError(f"grid_size must be > 0, got {size.tolist()}")
    batch = offsets_to_batch(offsets)
    grid = torch.floor(coords / size).long()  # world-aligned voxels, as Pointcept's GridSample
    lowest = grid.new_full((len(offsets), 3), torch.iinfo(torch.long).max)
    lowest = lowest.scatter_reduce(0, batch[:, None].expand(-1, 3), grid, "amin")
    grid = grid - lowest[batch]  # (N, 3), >= 0 in each cloud
    extent = grid.amax(0) + 1
    if len(offsets) * float(extent.double().prod()) >= 2.0**63:
        raise ValueError(
            f"grid_size {size.tolist()} gives {extent.tolist()} voxels per axis: too many to key "
            "in int64; use a larger grid_size"
        )
    key = ((batch * extent[0] + grid[:, 0]) * extent[1] + grid[:, 1]) * extent[2] + grid[:, 2]
    return batch, grid, key


def voxelize(coords: Tensor, offsets: Tensor, grid_size: float | Tensor) -> tuple[Tensor, Tensor]:
    """Voxel of each point, as ``grid_sample`` counts them (``floor(coords / grid_size)`` minus
    the cloud's lowest voxel), without sampling.

    Args:
        coords: (N, 3) float packed points, ``offsets (B,)`` cumulative ends.
        grid_size: voxel side, a float or (3,) per axis.

    Returns:
        batch (N,) int64 cloud of each point and grid (N, 3) int64 voxel coordinates, >= 0.
    """
    batch, grid, _ = _voxels(coords, offsets, grid_size)
    return batch, grid


def grid_sample(
    coords: Tensor,
    offsets: Tensor,
    grid_size: float | Tensor,
    mode: Literal["train", "test"] = "train",
    generator: torch.Generator | None = None,
) -> GridSample | list[GridSample]:
    """Voxelise each cloud (voxel ``floor(coords / grid_size)``, counted from the cloud's lowest
    voxel, as Pointcept's ``GridSample``) and keep one point per occupied voxel.

    ``mode='train'``: one uniformly random point per voxel (drawn with ``generator``).
    ``mode='test'``: fragments as Pointcept's test-time ``GridSample``: fragment i takes, in
    every voxel, its ``i % count``-th point (points of a voxel in input order), for i below the
    largest voxel count. Every fragment holds every voxel once; together they hold every
    point, the points of a voxel with ``count`` points each once in the first ``count``
    fragments (later fragments repeat them).

    Args:
        coords: (N, 3) float packed points, ``offsets (B,)`` cumulative ends.
        grid_size: voxel side, a float or (3,) per axis.

    Returns:
        a ``GridSample`` (train) or a list of them, one per fragment (test).
    """
    if mode not in ("train", "test"):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    batch, grid, key = _voxels(coords, offsets, grid_size)
    key, order = torch.sort(key, stable=True)
    _, count = torch.unique_consecutive(key, return_counts=True)  # (V,) points per voxel
    first = torch.cumsum(count, 0) - count
    voxel_batch = batch[order[first]]
    new_offsets = torch.cumsum(torch.bincount(voxel_batch, minlength=len(offsets)), 0)
    inverse = torch.empty_like(order)
    inverse[order] = torch.repeat_interleave(torch.arange(len(count), device=order.device), count)

    def pick(rank: Tensor) -> GridSample:
        indices = order[first + rank]
        return GridSample(indices, new_offsets, grid[indices], inverse)

    if mode == "train":
        draw = torch.rand(len(count), generator=generator, device=coords.device)
        return pick((draw * count).long().clamp(max=count - 1))
    return [pick(i % count) for i in range(int(count.max()))]


def _interleave(grid: Tensor, depth: int) -> Tensor:
    """(N, 3) int64 in [0, 2**depth) -> (N,) codes with bit b of axis a at 3 * b + 2 - a."""
    code = torch.zeros_like(grid[:, 0])
    for b in range(depth):
        for axis in range(3):
            code |= ((grid[:, axis] >> b) & 1) << (3 * b + 2 - axis)
    return code


def _hilbert_transpose(grid: Tensor, depth: int) -> Tensor:
    """Skilling's ("Programming the Hilbert curve", AIP Conf. Proc. 707, 2004) axes ->
    transposed Hilbert index, vectorised: (N, 3) int64 -> (N, 3) whose interleaved bits are
    the Hilbert code."""
    x = [grid[:, axis].clone() for axis in range(3)]
    q = 1 << (depth - 1)
    while q > 1:  # undo the excess work
        p = q - 1
        for axis in range(3):
            hit = (x[axis] & q) != 0
            if axis == 0:
                x[0] = torch.where(hit, x[0] ^ p, x[0])
                continue
            t = (x[0] ^ x[axis]) & p
            x[0], x[axis] = (
                torch.where(hit, x[0] ^ p, x[0] ^ t),
                torch.where(hit, x[axis], x[axis] ^ t),
            )
        q >>= 1
    for axis in (1, 2):  # Gray encode
        x[axis] = x[axis] ^ x[axis - 1]
    t = torch.zeros_like(x[0])
    q = 1 << (depth - 1)
    while q > 1:
        t = torch.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    return torch.stack([v ^ t for v in x], 1)


def serialize(
    grid_coords: Tensor,
    batch: Tensor,
    order: Literal["z", "z-trans", "hilbert", "hilbert-trans"] = "z",
    depth: int | None = None,
) -> Serialization:
    """Space-filling-curve codes of voxel coordinates, clouds kept apart by the high bits.

    ``'z'``: Morton order, bits interleaved x-major (x, y, z from the most significant of each
    triple); ``'hilbert'``: the 3-D Hilbert curve (Skilling's construction, starting at the
    origin). The ``-trans`` variants swap x and y first, as Point Transformer V3 does. The
    codes equal Pointcept's ``serialization.encode`` (checked for depth 1-16).

    Args:
        grid_coords: (N, 3) integer voxel coordinates in [0, 2**depth).
        batch: (N,) int cloud index of each point (``offsets_to_batch``).
        order: the curve.
        depth: bits per axis; defaults to ``(max + 1).bit_length()`` as Pointcept does (the
            Hilbert order depends on the depth: keep Pointcept's to match its patches).

    Returns:
        a ``Serialization``: codes ``(batch << 3 * depth) | curve code``, their sorting order and
        its inverse.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if grid_coords.dim() != 2 or grid_coords.shape[1] != 3 or grid_coords.dtype.is_floating_point:
        raise ValueError(
            f"grid_coords must be (N, 3) integers, got {tuple(grid_coords.shape)} {grid_coords.dtype}; "
            "grid_sample returns them"
        )
    if batch.shape != grid_coords.shape[:1]:
        raise ValueError(
            f"batch must be (N,) = ({grid_coords.shape[0]},), got {tuple(batch.shape)}"
        )
    grid = grid_coords.long()
    if grid.numel() and int(grid.min()) < 0:
        raise ValueError("grid_coords must be >= 0: count voxels from each cloud's minimum corner")
    largest = int(grid.max()) if grid.numel() else 0
    if depth is None:
        depth = (largest + 1).bit_length()  # as Pointcept's Point.serialization
    if largest >= 1 << depth:
        raise ValueError(f"grid coordinate {largest} does not fit depth {depth}: raise depth")
    clouds = int(batch.max()) + 1 if batch.numel() else 1
    if 3 * depth + clouds.bit_length() > 63:
        raise ValueError(
            f"depth {depth} and {clouds} clouds need {3 * depth + clouds.bit_length()} bits, over "
            "int64's 63: lower depth (coarser grid) or split the batch"
        )
    if order.endswith("-trans"):
        grid = grid[:, [1, 0, 2]]
    if order.startswith("hilbert"):
        grid = _hilbert_transpose(grid, depth)
    codes = (batch.long() << (3 * depth)) | _interleave(grid, depth)
    perm = torch.argsort(codes, stable=True)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm), device=perm.device)
    return Serialization(codes, perm, inverse)


def scatter_pool(
    feats: Tensor, cluster: Tensor, reduce: Literal["max", "mean"] = "max"
) -> tuple[Tensor, Tensor]:
    """Pool features over clusters (e.g. voxel keys, or serialization codes shifted down).

    Args:
        feats: (N, C) features.
        cluster: (N,) integer label of each point, any values.
        reduce: ``'max'`` or ``'mean'``.

    Returns:
        pooled: (K, C), one row per distinct label, labels ascending.
        index: (N,) int64 row of ``pooled`` each point went to (to broadcast back:
        ``pooled[index]``).
    """
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    if feats.dim() != 2 or cluster.shape != feats.shape[:1]:
        raise ValueError(
            f"feats must be (N, C) and cluster (N,), got {tuple(feats.shape)} and {tuple(cluster.shape)}"
        )
    if cluster.dtype.is_floating_point:
        raise TypeError(f"cluster must be an integer tensor, got {cluster.dtype}")
    _, index = torch.unique(cluster, sorted=True, return_inverse=True)
    pooled = feats.new_zeros(int(index.max()) + 1 if index.numel() else 0, feats.shape[1])
    how = "amax" if reduce == "max" else "mean"
    pooled = pooled.scatter_reduce(
        0, index[:, None].expand_as(feats), feats, how, include_self=False
    )
    return pooled, index
