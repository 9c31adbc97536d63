"""ViT self-attention and transformer block, with the position schemes the family uses.

- 2D axial rotary embedding (RoPE) in the DINOv3 form: patch centres normalised
  to [-1, 1] per axis, ``head_dim / 4`` frequencies per axis, rotate-half pairs;
  prefix (class / register) tokens are not rotated.
- Decomposed relative position bias of MViTv2 / ViTDet / SAM: per-axis tables
  ``rel_pos_h (2*S_h - 1, head_dim)``, ``rel_pos_w (2*S_w - 1, head_dim)``,
  linearly resized when the attended grid differs from the table's, turned into
  an additive bias passed to :func:`visionfm.ops.attention.attention`.
- Windowed attention (ViTDet / SAM): the token map is zero-padded to a multiple
  of the window and split into windows that attend within themselves. As in the
  reference implementations the padding tokens take part as keys. (RF-DETR / LW-DETR
  split the grid into a fixed number of windows instead; :class:`~.vit.ViT` does that
  once for all blocks, see its ``num_windows``.)

All softmax attention goes through :func:`visionfm.ops.attention.attention`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionfm.layers import DropPath, LayerScale, Mlp
from visionfm.ops.attention import attention

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), each (N_patches, head_dim)

__all__ = [
    "Attention",
    "Block",
    "RotaryEmbedding2d",
    "apply_rope",
    "rel_pos_bias",
    "resize_rel_pos",
    "window_partition",
    "window_unpartition",
]


class RotaryEmbedding2d(nn.Module):
    """Axial 2D RoPE tables (DINOv3 form) for any patch grid; no parameters.

    Frequencies ``base ** -(4 i / head_dim)``, i < head_dim / 4, for each axis; angle
    ``2 pi * coord * freq`` with coord the patch centre in [-1, 1].
    """

    def __init__(self, head_dim: int, base: float = 100.0) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        self.base = base

    def forward(self, hw: tuple[int, int], device: torch.device, dtype: torch.dtype) -> Rope:
        """Returns (cos, sin), each (h * w, head_dim), rows in raster order."""
        h, w = hw
        f = dict(device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
        freqs = self.base ** -(torch.arange(self.head_dim // 4, **f) * 4.0 / self.head_dim)
        ys = (torch.arange(h, **f) + 0.5) / h * 2.0 - 1.0  # (h,)
        xs = (torch.arange(w, **f) + 0.5) / w * 2.0 - 1.0  # (w,)
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)
        angles = 2 * math.pi * coords[:, :, None] * freqs  # (hw, 2, head_dim / 4)
        angles = angles.flatten(1).tile(2)  # (hw, head_dim)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"


def apply_rope(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate the last N_patches tokens of ``x``; leading (prefix) tokens are left as they are.

    x: (B, heads, N, D) with N = prefix + N_patches; rope: (cos, sin) each (N_patches, D).
    """
    cos, sin = rope
    num_prefix = x.shape[-2] - cos.shape[0]
    prefix, x = x[..., :num_prefix, :], x[..., num_prefix:, :]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    x = x * cos + rotated * sin
    return torch.cat((prefix, x), dim=-2) if num_prefix else x


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resize of a relative-position table: (L, D) -> (length, D)."""
    if table.shape[0] == length:
        return table
    out = F.interpolate(table.t()[None].float(), size=length, mode="linear")  # (1, D, length)
    return out[0].t().to(table.dtype)


def _rel_pos_lookup(table: torch.Tensor, size: int) -> torch.Tensor:
    """(L, D) table -> (size, size, D) embeddings of offset q - k for a size-long axis."""
    table = resize_rel_pos(table, 2 * size - 1)
    idx = torch.arange(size, device=table.device)
    return table[idx[:, None] - idx[None, :] + size - 1]


def rel_pos_bias(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, hw: tuple[int, int]
) -> torch.Tensor:
    """Decomposed relative position bias (MViTv2 / ViTDet) for self-attention on an h x w grid.

    Args:
        q: (B, heads, h * w, D) queries, unscaled.
        rel_pos_h, rel_pos_w: (L_h, D), (L_w, D) tables, resized to 2h-1 / 2w-1 as needed.
        hw: the grid (h, w).

    Returns:
        (B, heads, h * w, h * w) additive bias: ``q . R_h[qy - ky] + q . R_w[qx - kx]``.
    """
    h, w = hw
    b, heads, _, d = q.shape
    r_h = _rel_pos_lookup(rel_pos_h, h)  # (h, h, D)
    r_w = _rel_pos_lookup(rel_pos_w, w)  # (w, w, D)
    r_q = q.reshape(b, heads, h, w, d)
    bias_h = torch.einsum("bnhwd,hkd->bnhwk", r_q, r_h)  # (B, heads, h, w, h)
    bias_w = torch.einsum("bnhwd,wkd->bnhwk", r_q, r_w)  # (B, heads, h, w, w)
    bias = bias_h[..., :, None] + bias_w[..., None, :]  # (B, heads, h, w, h, w)
    return bias.reshape(b, heads, h * w, h * w)


def window_partition(
    x: torch.Tensor, ws: int | tuple[int, int]
) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> windows (B * nW, wh * ww, C) after zero-padding to (Hp, Wp); returns (Hp, Wp).

    ``ws``: the window, square (int) or (wh, ww); windows are ordered row-major over the image.
    """
    wh, ww = (ws, ws) if isinstance(ws, int) else ws
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % wh, (-w) % ww
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // wh, wh, wp // ww, ww, c).transpose(2, 3)  # (B, nh, nw, wh, ww, C)
    return x.reshape(-1, wh * ww, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor,
    ws: int | tuple[int, int],
    padded_hw: tuple[int, int],
    hw: tuple[int, int],
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, wh * ww, C) -> (B, H, W, C), padding cropped."""
    wh, ww = (ws, ws) if isinstance(ws, int) else ws
    hp, wp = padded_hw
    c = windows.shape[-1]
    x = windows.view(-1, hp // wh, wp // ww, wh, ww, c).transpose(2, 3).reshape(-1, hp, wp, c)
    h, w = hw
    return x[:, :h, :w] if (hp, wp) != (h, w) else x


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection.

    Options: qk-norm (``qk_norm_layer``), 2D RoPE (tables passed to ``forward``), decomposed
    relative position bias (``rel_pos_size``: the grid its tables are made for; the window
    for windowed blocks), windowed attention (``window_size``). ``attn_backend`` overrides the
    backend choice of :func:`visionfm.ops.attention.attention` for this module.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_norm_layer: Callable[[int], nn.Module] | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        window_size: int = 0,
        rel_pos_size: tuple[int, int] | None = None,
        attn_backend: str | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.attn_backend = attn_backend
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = qk_norm_layer(self.head_dim) if qk_norm_layer else nn.Identity()
        self.k_norm = qk_norm_layer(self.head_dim) if qk_norm_layer else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if rel_pos_size is not None:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size[0] - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size[1] - 1, self.head_dim))
        else:
            self.rel_pos_h = self.rel_pos_w = None

    def forward(
        self, x: torch.Tensor, hw: tuple[int, int], rope: Rope | None = None
    ) -> torch.Tensor:
        """x: (B, N, C) with N = prefix tokens + h * w patch tokens (raster order); -> (B, N, C).

        Windowed attention and relative position bias require N == h * w (no prefix tokens).
        """
        b, n, c = x.shape
        grid = hw
        if self.window_size:
            x, padded_hw = window_partition(x.view(b, hw[0], hw[1], c), self.window_size)
            grid = (self.window_size, self.window_size)
        bw, nw, _ = x.shape
        qkv = self.qkv(x).view(bw, nw, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B', heads, N', D) each
        q, k = self.q_norm(q), self.k_norm(k)
        bias = None
        if self.rel_pos_h is not None:
            bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, grid)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        x = attention(
            q,
            k,
            v,
            bias=bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            backend=self.attn_backend,
        )  # (B', heads, N', D)
        x = self.proj_drop(self.proj(x.transpose(1, 2).reshape(bw, nw, c)))
        if self.window_size:
            x = window_unpartition(x, self.window_size, padded_hw, hw).reshape(b, n, c)
        return x


class Block(nn.Module):
    """Pre-norm transformer block: ``x + dp(ls1(attn(norm1(x))))``, then ``x + dp(ls2(mlp(norm2(x))))``.

    ``attn`` is an :class:`Attention` built by the caller; ``init_values`` enables layer scale.
    """

    def __init__(
        self,
        dim: int,
        attn: Attention,
        mlp_hidden_dim: int,
        norm_layer: Callable[[int], nn.Module],
        act_layer: Callable[[], nn.Module],
        mlp_layer: Callable[..., nn.Module] = Mlp,
        init_values: float | None = None,
        drop_path: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn
        self.ls1 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = mlp_layer(dim, mlp_hidden_dim, act_layer=act_layer, drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values) if init_values is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, hw: tuple[int, int], rope: Rope | None = None
    ) -> torch.Tensor:
        """x: (B, N, C) -> (B, N, C); see :meth:`Attention.forward`."""
        x = self._residual(x, self.attn(self.norm1(x), hw, rope), self.ls1)
        return self._residual(x, self.mlp(self.norm2(x)), self.ls2)

    def _residual(self, x: torch.Tensor, y: torch.Tensor, ls: nn.Module) -> torch.Tensor:
        """``x + drop_path(ls(y))``, both (B, N, C). When no path is dropped, layer scale and
        sum run as one ``addcmul``: one (B, N, C) temporary and one pass over it fewer."""
        if isinstance(ls, LayerScale) and not (
            self.training and isinstance(self.drop_path, DropPath)
        ):
            return torch.addcmul(x, y, ls.gamma)
        return x + self.drop_path(ls(y))
