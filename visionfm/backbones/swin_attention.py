"""Swin shifted-window attention: window partitioning, shift masks, and the V1 / V2 window
attention layers used by :mod:`visionfm.backbones.swin`.

A (B, H, W, C) token map is zero-padded to a multiple of the window (padding tokens take
part as keys, as in the reference implementations), cyclically shifted by ``-shift`` on
shifted blocks, split into (B, nW, wh * ww, C) windows, attended within each window and
put back. Shifted windows mask the pairs that the cyclic shift brings together; the
relative position bias plus that mask is the additive bias passed to
:func:`visionfm.ops.attention.attention`.

V1 (Liu et al. 2021): a learned ((2 * window - 1) ** 2, heads) relative position bias table.
V2 (Liu et al. 2022): scaled cosine attention (per-head learnable logit scale, clamped at
``log(100)``, folded into the normalised queries; attention scale 1), a continuous position
bias (MLP over log-spaced relative coordinates, ``16 * sigmoid``), q / v biases with a zero
k bias.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionfm.ops.attention import attention

__all__ = [
    "CosineWindowAttention",
    "Pair",
    "WindowAttention",
    "shift_window_mask",
    "stage_window",
    "window_attention",
]

Pair = tuple[int, int]


# -- windows -----------------------------------------------------------------------------
def stage_window(hw: Pair, window_size: int, always_partition: bool = False) -> tuple[Pair, Pair]:
    """(window, shift) per axis for an h x w map: an axis that fits in one window gets a
    window of its size and no shift, unless ``always_partition``."""
    if always_partition:
        return (window_size, window_size), (window_size // 2, window_size // 2)
    window = (min(window_size, hw[0]), min(window_size, hw[1]))
    shift = tuple(window_size // 2 if n > window_size else 0 for n in hw)
    return window, shift


def shift_window_mask(
    padded_hw: Pair, window: Pair, shift: Pair, device=None
) -> torch.Tensor | None:
    """Which token pairs of each shifted window may attend: (nW, N, N) bool, or None unshifted.

    After the cyclic shift by ``-shift`` the last window row / column holds tokens from the
    far side of the map; tokens attend only within their region (3 per shifted axis).
    """
    if not any(shift):
        return None

    def regions(n: int, w: int, s: int) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - w).long() + (idx >= n - s).long() if s else torch.zeros_like(idx)

    (hp, wp), (wh, ww) = padded_hw, window
    ids = regions(hp, wh, shift[0])[:, None] * 3 + regions(wp, ww, shift[1])[None, :]
    ids = ids.view(hp // wh, wh, wp // ww, ww).transpose(1, 2).reshape(-1, wh * ww)  # (nW, N)
    return ids[:, :, None] == ids[:, None, :]


def window_attention(
    x: torch.Tensor, attn: nn.Module, window: Pair, shift: Pair, mask: torch.Tensor | None
) -> torch.Tensor:
    """Shifted-window attention on a token map: (B, H, W, C) -> (B, H, W, C).

    Pads to a multiple of ``window``, rolls by ``-shift``, runs ``attn`` on the windows
    (B, nW, wh * ww, C) with ``mask`` (see :func:`shift_window_mask`), then undoes it all.
    """
    b, h, w, c = x.shape
    (wh, ww), (sh, sw) = window, shift
    pad_h, pad_w = (-h) % wh, (-w) % ww
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    if sh or sw:
        x = torch.roll(x, (-sh, -sw), dims=(1, 2))
    hp, wp = h + pad_h, w + pad_w
    windows = x.view(b, hp // wh, wh, wp // ww, ww, c).transpose(2, 3).reshape(b, -1, wh * ww, c)
    windows = attn(windows, window, mask)  # (B, nW, N, C)
    x = windows.view(b, hp // wh, wp // ww, wh, ww, c).transpose(2, 3).reshape(b, hp, wp, c)
    if sh or sw:
        x = torch.roll(x, (sh, sw), dims=(1, 2))
    return x[:, :h, :w] if pad_h or pad_w else x


def _relative_index(window: Pair, table: Pair, device) -> torch.Tensor:
    """(N * N,) index of each (query, key) offset of a ``window`` in a (2*th-1) x (2*tw-1) table."""
    ys, xs = torch.meshgrid(
        torch.arange(window[0], device=device),
        torch.arange(window[1], device=device),
        indexing="ij",
    )
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + table[0] - 1
    dx = xs[:, None] - xs[None, :] + table[1] - 1
    return (dy * (2 * table[1] - 1) + dx).flatten()


# -- attention ---------------------------------------------------------------------------
class WindowAttention(nn.Module):
    """Window self-attention with a learned relative position bias table (Swin V1).

    ``rel_pos_table``: ((2 * window_size - 1) ** 2, heads); smaller windows use its centre.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        attn_backend: str | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"stage width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.attn_drop = attn_drop
        self.attn_backend = attn_backend
        self.scale: float | None = None  # head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self._init_position(num_heads, window_size)

    def _init_position(self, num_heads: int, window_size: int) -> None:
        self.rel_pos_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))

    def relative_bias(self, window: Pair) -> torch.Tensor:
        """(heads, N, N) additive bias for a window of ``window`` tokens, N = wh * ww."""
        n = window[0] * window[1]
        ws = (self.window_size, self.window_size)
        idx = _relative_index(window, ws, self.rel_pos_table.device)
        return self.rel_pos_table[idx].view(n, n, -1).permute(2, 0, 1)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, nW, N, C) -> q, k, v each (B, nW, heads, N, head_dim)."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).view(b, nw, n, 3, self.num_heads, c // self.num_heads)
        return qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)

    def forward(self, x: torch.Tensor, window: Pair, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, nW, N, C) windows; mask: (nW, N, N) bool (True = attend) or None."""
        b, nw, n, c = x.shape
        q, k, v = self.qkv_heads(x)
        bias = self.relative_bias(window)  # (heads, N, N)
        if mask is None:  # one bias for every window: (B * nW, heads) batch
            q, k, v = (t.reshape(b * nw, self.num_heads, n, -1) for t in (q, k, v))
            bias = bias[None]
        else:  # a bias per window: fold windows into the head dim, (B, nW * heads) batch
            bias = bias.masked_fill(~mask[:, None], float("-inf")).reshape(1, -1, n, n)
            q, k, v = (t.reshape(b, nw * self.num_heads, n, -1) for t in (q, k, v))
        drop = self.attn_drop if self.training else 0.0
        out = attention(q, k, v, bias, dropout_p=drop, scale=self.scale, backend=self.attn_backend)
        out = out.reshape(b, nw, self.num_heads, n, -1).transpose(2, 3).reshape(b, nw, n, c)
        return self.proj_drop(self.proj(out))


class CosineWindowAttention(WindowAttention):
    """Swin V2 window attention: scaled cosine similarity plus a continuous position bias.

    ``logit_scale``: (heads,) log of the per-head temperature; ``rel_pos_mlp``: 2 -> 512 ->
    heads MLP over log-spaced relative coordinates, normalised by ``pretrained_window_size - 1``
    (0: by the window in use); q / v biases with a zero k bias.
    """

    def __init__(self, *args, pretrained_window_size: int = 0, **kwargs) -> None:
        qkv_bias = kwargs.pop("qkv_bias", True)
        super().__init__(*args, qkv_bias=False, **kwargs)
        self.pretrained_window_size = pretrained_window_size
        self.scale = 1.0  # the temperature is folded into q
        dim = self.qkv.in_features
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None

    def _init_position(self, num_heads: int, window_size: int) -> None:
        self.logit_scale = nn.Parameter(torch.full((num_heads,), math.log(10.0)))
        self.rel_pos_mlp = nn.Sequential(
            nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False)
        )

    def relative_bias(self, window: Pair) -> torch.Tensor:
        """(heads, N, N): ``16 * sigmoid(mlp(log-spaced offsets))`` for a ``window``."""
        wh, ww = window
        device = self.logit_scale.device
        pw = self.pretrained_window_size
        norm = (pw, pw) if pw > 0 else window
        coords = torch.meshgrid(
            torch.arange(1 - wh, wh, device=device, dtype=torch.float32),
            torch.arange(1 - ww, ww, device=device, dtype=torch.float32),
            indexing="ij",
        )
        table = torch.stack(coords, dim=-1)  # (2wh-1, 2ww-1, 2) offsets (dy, dx)
        table = table / table.new_tensor([max(norm[0] - 1, 1), max(norm[1] - 1, 1)]) * 8
        table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
        table = self.rel_pos_mlp(table.to(self.rel_pos_mlp[0].weight.dtype)).view(
            -1, self.num_heads
        )
        n = wh * ww
        bias = table[_relative_index(window, window, device)].view(n, n, -1).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x: (B, nW, N, C) -> unit q scaled by the temperature, unit k, v: (B, nW, heads, N, d)."""
        b, nw, n, c = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).view(b, nw, n, 3, self.num_heads, -1)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)
        temperature = self.logit_scale.clamp(max=math.log(100.0)).exp()[:, None, None]
        q = F.normalize(q, dim=-1) * temperature.to(q.dtype)  # (autocast: keep q's dtype)
        return q, F.normalize(k, dim=-1), v
