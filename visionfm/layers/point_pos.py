"""Positional encodings of voxelised point clouds, in plain PyTorch (no spconv).

- :class:`VoxelHash` / :class:`SubmanifoldConv3d`: a submanifold sparse 3-D convolution
  (Graham et al., "3D Semantic Segmentation with Submanifold Sparse Convolutional Networks",
  CVPR 2018): outputs only at occupied voxels, each the sum over the ``k**3`` kernel offsets of
  the occupied neighbour voxel's features times that offset's weight. Neighbours are found by
  sorted (cloud, voxel) keys and ``torch.searchsorted``; the convolution gathers, multiplies
  and adds, one offset at a time, forward and backward (memory of one (V, C) gather, not of a
  (V, k**3, C) one).
- :class:`SparseConvPE`: Point Transformer V3's conditional positional encoding (xCPE: the
  sparse conv, a linear and a LayerNorm, added as a residual) built on it.
- :class:`Rope3d`: 3-D rotary embedding (Su et al., "RoFormer", 2021, per axis as in
  Heo et al., "Rotary Position Embedding for Vision Transformer", ECCV 2024) of integer voxel
  positions, applied to queries and keys: their dot product depends on relative positions only.

Points sharing a voxel share its features in the convolution: the conv runs on the mean
feature of each occupied voxel and every point of a voxel receives that voxel's output (with
one point per voxel, as after ``PointGridSample``, that is the plain submanifold conv).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["Rope3d", "SparseConvPE", "SubmanifoldConv3d", "VoxelHash", "kernel_steps"]


class VoxelHash:
    """The occupied voxels of a packed, voxelised batch, keyed for neighbour lookup.

    Args:
        grid: (N, 3) int64 voxel coordinates, >= 0.
        batch: (N,) int64 cloud of each point (voxels of different clouds never meet).
        max_radius: the largest kernel radius ``lookup`` / ``table`` will be asked for
            (kernel 5: 2).

    Attributes:
        inverse: (N,) int64 voxel of each point; counts: (V,) points per voxel.
    """

    def __init__(self, grid: Tensor, batch: Tensor, max_radius: int = 2) -> None:
        r = self.max_radius = max_radius
        self.extent = grid.amax(0) + 1 + 2 * r  # room for every offset, no wrap into a row
        self.keys, self.inverse, self.counts = torch.unique(
            self._key(grid + r, batch), sorted=True, return_inverse=True, return_counts=True
        )
        first = torch.empty_like(self.counts)  # one point of each voxel, for grid and cloud
        first.scatter_(0, self.inverse, torch.arange(len(grid), device=grid.device))
        self._grid, self._batch = grid[first] + r, batch[first]
        self._tables: dict[int, Tensor] = {}

    def _key(self, g: Tensor, b: Tensor) -> Tensor:
        e = self.extent
        return ((b * e[0] + g[:, 0]) * e[1] + g[:, 1]) * e[2] + g[:, 2]

    @property
    def num_voxels(self) -> int:
        return len(self.keys)

    def lookup(self, step: tuple[int, int, int]) -> Tensor:
        """(V,) int64 voxel at ``voxel + step`` of each voxel, ``V`` where that one is empty."""
        if max(abs(s) for s in step) > self.max_radius:
            raise ValueError(f"step {step} is beyond max_radius {self.max_radius}")
        nkey = self._key(self._grid + self._grid.new_tensor(step), self._batch)
        pos = torch.searchsorted(self.keys, nkey).clamp(max=len(self.keys) - 1)
        return torch.where(self.keys[pos] == nkey, pos, len(self.keys))

    def table(self, kernel_size: int) -> Tensor:
        """(V, k**3) neighbour table (``lookup`` of every ``kernel_steps`` offset), int32
        where V allows (int64 otherwise); built once per kernel size and kept."""
        if kernel_size not in self._tables:
            dtype = torch.int32 if self.num_voxels < 2**31 - 1 else torch.int64
            columns = [self.lookup(s).to(dtype) for s in kernel_steps(kernel_size)]
            self._tables[kernel_size] = torch.stack(columns, 1)
        return self._tables[kernel_size]


def kernel_steps(kernel_size: int) -> list[tuple[int, int, int]]:
    """The k**3 offsets of a cubic kernel, x slowest, z fastest (spconv's weight order)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
    r = kernel_size // 2
    return list(itertools.product(range(-r, r + 1), repeat=3))


class _GatherConv(torch.autograd.Function):
    """``out = sum_k vox[table[:, k]] @ weight[k]``: (V + 1, C_in), (K, C_in, C_out), (V, K)
    -> (V, C_out), one offset at a time. Backward gathers again instead of keeping the K
    gathered (V, C_in) inputs: memory O(V * C) whatever the kernel."""

    @staticmethod
    def forward(ctx, vox: Tensor, weight: Tensor, table: Tensor) -> Tensor:
        ctx.save_for_backward(vox, weight, table)
        out = vox.new_zeros(table.shape[0], weight.shape[2])
        for k in range(weight.shape[0]):
            out.addmm_(vox.index_select(0, table[:, k]), weight[k])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        vox, weight, table = ctx.saved_tensors
        grad_vox = torch.zeros_like(vox) if ctx.needs_input_grad[0] else None
        grad_weight = torch.empty_like(weight) if ctx.needs_input_grad[1] else None
        for k in range(weight.shape[0]):
            if grad_vox is not None:
                grad_vox.index_add_(0, table[:, k], grad @ weight[k].T)
            if grad_weight is not None:
                torch.mm(vox.index_select(0, table[:, k]).T, grad, out=grad_weight[k])
        return grad_vox, grad_weight, None


class SubmanifoldConv3d(nn.Module):
    """Submanifold sparse conv: (N, C_in) point features -> (N, C_out) (see the module doc).

    ``weight`` is (k**3, C_in, C_out), offsets in ``kernel_steps`` order (spconv's layout is
    (k, k, k, C_in, C_out) over the same x, y, z order, so ``reshape`` converts).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True
    ):
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(kernel_size**3, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.trunc_normal_(self.weight, std=(in_channels * kernel_size**3) ** -0.5)

    def forward(self, feats: Tensor, voxels: VoxelHash) -> Tensor:
        """feats: (N, C_in) of the points ``voxels`` was built from -> (N, C_out)."""
        v = voxels.num_voxels
        vox = feats.new_zeros(v + 1, feats.shape[1])  # row V: the empty voxel
        vox = vox.index_add(0, voxels.inverse, feats)
        if v != len(feats):  # several points in a voxel: their mean
            vox = vox / torch.cat([voxels.counts, voxels.counts.new_ones(1)])[:, None].to(feats)
        out = _GatherConv.apply(vox, self.weight, voxels.table(self.kernel_size))  # (V, C_out)
        if self.bias is not None:
            out = out + self.bias
        return out[voxels.inverse]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[2]}, kernel_size={self.kernel_size}"


class SparseConvPE(nn.Module):
    """PTv3's xCPE: ``x + LayerNorm(Linear(SubmanifoldConv3d_k3(x)))``; (N, C) -> (N, C)."""

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = SubmanifoldConv3d(dim, dim, kernel_size)
        self.linear = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, feats: Tensor, voxels: VoxelHash) -> Tensor:
        return feats + self.norm(self.linear(self.conv(feats, voxels)))


class Rope3d(nn.Module):
    """Rotary embedding of (x, y, z) voxel positions on a head dim ``D``.

    The first ``6 * (D // 6)`` channels are split in three equal runs, one per axis; in each,
    channel pairs (2i, 2i + 1) rotate by angle ``pos_axis * theta ** (-2i / run)``. Channels
    past ``6 * (D // 6)`` are left as they are. Rotating q and k alike makes ``q . k`` depend
    only on the difference of their positions.
    """

    def __init__(self, head_dim: int, theta: float = 100.0) -> None:
        super().__init__()
        if head_dim < 6:
            raise ValueError(f"Rope3d needs head_dim >= 6 (a pair per axis), got {head_dim}")
        run = 2 * (head_dim // 6)
        freqs = theta ** (-torch.arange(0, run, 2, dtype=torch.float64) / run)  # (run / 2,)
        self.register_buffer("freqs", freqs, persistent=False)
        self.head_dim = head_dim

    def angles(self, pos: Tensor) -> tuple[Tensor, Tensor]:
        """pos: (..., 3) integer positions -> (cos, sin), each (..., 3 * run / 2)."""
        a = pos.to(torch.float64)[..., None] * self.freqs  # (..., 3, run / 2)
        a = a.flatten(-2)
        return a.cos(), a.sin()

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """x: (..., D); cos / sin: from ``angles``, broadcastable over x's leading dims."""
        m = 2 * cos.shape[-1]
        pairs = x[..., :m].unflatten(-1, (-1, 2))  # (..., m / 2, 2)
        c, s = cos.to(x.dtype), sin.to(x.dtype)
        even, odd = pairs[..., 0], pairs[..., 1]
        rot = torch.stack([even * c - odd * s, even * s + odd * c], -1).flatten(-2)
        return torch.cat([rot, x[..., m:]], -1)
