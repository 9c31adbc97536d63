"""The parts of :class:`~visionfm.backbones.point_serialized.PointTransformerV3`: one resolution
of a packed batch (:class:`Level`: voxels, curve orders, patches), serialized patch attention,
its transformer block, and serialized pooling / unpooling between resolutions.

Point features stay in the packed input order at every level; the curve orders only say
which rows a patch gathers (``make_patches``) and where each row's output is read back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
from torch import Tensor

from visionfm.layers.mlp import Mlp
from visionfm.layers.point_pos import Rope3d, SparseConvPE, VoxelHash
from visionfm.layers.residual import DropPath
from visionfm.ops.attention import attention, check_backend
from visionfm.ops.point_batch import batch_to_offsets, offsets_to_lengths
from visionfm.ops.point_grid import scatter_pool, serialize

__all__ = [
    "Level",
    "Patches",
    "SerializedAttention",
    "SerializedBlock",
    "SerializedPooling",
    "SerializedUnpooling",
    "make_patches",
]


class Patches(NamedTuple):
    """groups: one (M, p) int64 tensor of point rows per patch length p (clouds of at least
    ``patch_size`` points share p = patch_size; a shorter cloud is one patch of its length).
    gather: (N,) int64 row of each point's output in the groups' outputs flattened (M * p)
    and concatenated in order."""

    groups: list[Tensor]
    gather: Tensor


def make_patches(perm: Tensor, offsets: Tensor, patch_size: int) -> Patches:
    """Cut each cloud's serialized order into patches of ``patch_size`` consecutive points.

    Args:
        perm: (N,) rows in serialized order, clouds contiguous and in offsets order (the
            ``order`` of ``serialize``, whose codes carry the cloud in their high bits).
        offsets: (B,) cumulative ends.
        patch_size: P.

    A cloud of n >= P points gets ceil(n / P) patches, the last one slid back to its last P
    points (PTv3's padding: the rows it repeats from the patch before are read from that
    one); a cloud of n < P points is one patch of n.
    """
    lengths = offsets_to_lengths(offsets)
    starts = offsets - lengths
    sizes = lengths.clamp(max=patch_size)
    gather = torch.empty_like(perm)
    groups, base = [], 0
    for p in torch.unique(sizes).tolist():
        clouds = (sizes == p).nonzero()[:, 0]
        n, s0 = lengths[clouds], starts[clouds]
        m = (n + p - 1) // p  # patches per cloud
        first_patch = torch.cumsum(m, 0) - m
        ids = torch.arange(len(clouds), device=perm.device)
        patch_cloud = torch.repeat_interleave(ids, m)  # (M,)
        j = torch.arange(len(patch_cloud), device=perm.device) - first_patch[patch_cloud]
        begin = torch.minimum(j * p, n[patch_cloud] - p)  # (M,) first position in the cloud
        steps = torch.arange(p, device=perm.device)
        groups.append(perm[(s0[patch_cloud] + begin)[:, None] + steps])  # (M, p)
        point_cloud = torch.repeat_interleave(ids, n)  # serialized positions of these clouds
        local = torch.arange(len(point_cloud), device=perm.device)
        local = local - (torch.cumsum(n, 0) - n)[point_cloud]
        jj = local // p
        within = local - torch.minimum(jj * p, n[point_cloud] - p)
        gather[perm[s0[point_cloud] + local]] = base + (first_patch[point_cloud] + jj) * p + within
        base += len(patch_cloud) * p
    return Patches(groups, gather)


class Level:
    """One resolution of a packed batch.

    Args:
        grid: (N, 3) int64 voxels, >= 0; batch: (N,) int64 cloud of each point; offsets: (B,).
        depth: bits per axis of the curve codes.
        orders: the curve of each order index (``'z'``, ``'hilbert'``, ...).
        max_radius: the largest conv radius asked of ``voxels``.
    """

    def __init__(
        self,
        grid: Tensor,
        batch: Tensor,
        offsets: Tensor,
        depth: int,
        orders: Sequence[str],
        max_radius: int = 1,
    ) -> None:
        self.grid, self.batch, self.offsets, self.depth = grid, batch, offsets, depth
        self.orders = tuple(orders)
        self._radius = max_radius
        self._voxels: VoxelHash | None = None
        self._perms: dict[int, Tensor] = {}
        self._patches: dict[tuple[int, int], Patches] = {}

    @property
    def voxels(self) -> VoxelHash:
        """The voxel hash of this level (built on first use)."""
        if self._voxels is None:
            self._voxels = VoxelHash(self.grid, self.batch, self._radius)
        return self._voxels

    def patches(self, order_index: int, patch_size: int) -> Patches:
        """Patches of order ``orders[order_index % len(orders)]`` (built on first use)."""
        i = order_index % len(self.orders)
        if i not in self._perms:
            self._perms[i] = serialize(self.grid, self.batch, self.orders[i], self.depth).order
        if (i, patch_size) not in self._patches:
            self._patches[i, patch_size] = make_patches(self._perms[i], self.offsets, patch_size)
        return self._patches[i, patch_size]

    def parent(self) -> tuple[Level, Tensor]:
        """The stride-2 level above (voxels ``grid >> 1``) and ``cluster`` (N,): the parent row
        of each point. Parents are ordered by cloud, then by z-code."""
        grid = self.grid >> 1
        depth = max(self.depth - 1, 1)
        key = serialize(grid, self.batch, "z", depth).codes  # unique per (cloud, parent voxel)
        parents, cluster = torch.unique(key, sorted=True, return_inverse=True)
        k = len(parents)
        pgrid = grid.new_empty(k, 3).scatter_(0, cluster[:, None].expand(-1, 3), grid)
        pbatch = self.batch.new_empty(k).scatter_(0, cluster, self.batch)
        offsets = batch_to_offsets(pbatch, len(self.offsets))
        level = Level(pgrid, pbatch, offsets, depth, self.orders)
        return level, cluster


class SerializedAttention(nn.Module):
    """Multi-head attention inside serialized patches; (N, C) -> (N, C).

    Args:
        dim: C; num_heads: heads (C divisible by them); patch_size: P.
        qkv_bias: bias of the qkv projection; attn_drop / proj_drop: dropout rates.
        rope: a :class:`Rope3d` of the head dim, applied to queries and keys, or None.
        attn_backend: ``visionfm.ops.attention`` backend override (None: the default).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        patch_size: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rope: Rope3d | None = None,
        attn_backend: str | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"channels {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.patch_size, self.attn_drop = num_heads, patch_size, attn_drop
        self.attn_backend = check_backend(attn_backend)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rope = rope

    def forward(self, x: Tensor, patches: Patches, grid: Tensor) -> Tensor:
        """x: (N, C) packed; patches: ``make_patches`` of the level; grid: (N, 3) its voxels
        (read by RoPE only)."""
        n, c = x.shape
        h = self.num_heads
        qkv = self.qkv(x)  # (N, 3C)
        angles = self.rope.angles(grid) if self.rope is not None else None  # (N, A) each
        outs = []
        for rows in patches.groups:
            m, p = rows.shape
            q, k, v = qkv[rows].view(m, p, 3, h, c // h).permute(2, 0, 3, 1, 4)  # (M, h, p, D)
            if angles is not None:
                cos, sin = angles[0][rows][:, None], angles[1][rows][:, None]  # (M, 1, p, A)
                q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            drop = self.attn_drop if self.training else 0.0
            out = attention(q, k, v, dropout_p=drop, backend=self.attn_backend)
            outs.append(out.transpose(1, 2).reshape(m * p, c))
        out = torch.cat(outs)[patches.gather]  # (N, C) back in packed order
        return self.proj_drop(self.proj(out))


class SerializedBlock(nn.Module):
    """PTv3 block (pre-norm): ``x = cpe(x)``; ``x += drop_path(attn(norm1(x)))``;
    ``x += drop_path(mlp(norm2(x)))``. (N, C) -> (N, C).

    ``pos_embed``: ``'sparse_conv'`` (xCPE before the attention), ``'rope'`` (rotary
    embedding of the voxels in the attention) or None.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        patch_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        pos_embed: str | None = "sparse_conv",
        rope_theta: float = 100.0,
        attn_backend: str | None = None,
    ) -> None:
        super().__init__()
        self.cpe = SparseConvPE(dim) if pos_embed == "sparse_conv" else None
        rope = Rope3d(dim // num_heads, rope_theta) if pos_embed == "rope" else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SerializedAttention(
            dim, num_heads, patch_size, qkv_bias, rope=rope, attn_backend=attn_backend
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, round(dim * mlp_ratio))

    def forward(self, x: Tensor, level: Level, order_index: int) -> Tensor:
        if self.cpe is not None:
            x = self.cpe(x, level.voxels)
        patches = level.patches(order_index, self.attn.patch_size)
        x = x + self.drop_path(self.attn(self.norm1(x), patches, level.grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _linear_norm_act(
    c_in: int, c_out: int, norm_layer: Callable[[int], nn.Module]
) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, c_out), norm_layer(c_out), nn.GELU())


class SerializedPooling(nn.Module):
    """PTv3's SerializedPooling, stride 2: linear ``c_in -> c_out`` on every point, max over
    the points of each parent voxel, then norm and GELU.

    ``forward(x (N, c_in), level) -> (x (K, c_out), parent level, cluster (N,))``, cluster the
    parent row of each point (what :class:`SerializedUnpooling` gathers through).
    """

    def __init__(
        self, c_in: int, c_out: int, norm_layer: Callable[[int], nn.Module] = nn.BatchNorm1d
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(c_in, c_out)
        self.norm = norm_layer(c_out)
        self.act = nn.GELU()

    def forward(self, x: Tensor, level: Level) -> tuple[Tensor, Level, Tensor]:
        parent, cluster = level.parent()
        pooled, index = scatter_pool(self.proj(x), cluster, "max")  # index == cluster
        return self.act(self.norm(pooled)), parent, index


class SerializedUnpooling(nn.Module):
    """PTv3's SerializedUnpooling: ``proj_skip(skip) + proj(parent)[cluster]``, each projection
    linear + norm + GELU. (K, c_parent), (N, c_skip), (N,) -> (N, c_out)."""

    def __init__(
        self,
        c_parent: int,
        c_skip: int,
        c_out: int,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm1d,
    ) -> None:
        super().__init__()
        self.proj = _linear_norm_act(c_parent, c_out, norm_layer)
        self.proj_skip = _linear_norm_act(c_skip, c_out, norm_layer)

    def forward(self, parent: Tensor, skip: Tensor, cluster: Tensor) -> Tensor:
        return self.proj_skip(skip) + self.proj(parent)[cluster]
