"""Building blocks shared by the plain-ViT family (and reusable by other backbones).

Layers are injected as factories (``norm_layer``, ``act_layer``, ``mlp_layer``);
configs may name them with a short string instead, resolved by
:func:`make_norm`, :func:`make_act` and :func:`make_mlp`:

- norm: ``'LN'`` (``nn.LayerNorm``, eps 1e-6; ``'LN_1e-5'`` sets the eps), ``'LN2d'``
  (channels-first :class:`LayerNorm2d`, same eps rule), ``'GN'`` (``nn.GroupNorm``, 32
  groups; ``'GN_16'`` sets the groups), or a callable ``dim -> nn.Module``;
- act: ``'gelu'``, ``'gelu_tanh'``, ``'silu'``, ``'relu'``, or a module class;
- mlp: ``'mlp'`` (:class:`Mlp`) or ``'gated'`` (:class:`GatedMlp`, SwiGLU
  with ``act_layer='silu'``), or a callable with :class:`Mlp`'s signature.

Also here: position-embedding resizing (:func:`resize_pos_embed`) and patch
embedding with padding to a multiple of the patch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

NormFactory = Callable[[int], nn.Module]

__all__ = [
    "DropPath",
    "GatedMlp",
    "LayerNorm2d",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "act_name",
    "grid_from_length",
    "make_act",
    "make_mlp",
    "make_norm",
    "resize_pos_embed",
]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dim of a ``(B, C, H, W)`` map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _group_norm(dim: int, groups: int = 32) -> nn.GroupNorm:
    return nn.GroupNorm(groups, dim)


_NORMS: dict[str, tuple[Callable[..., nn.Module], str, type, object]] = {
    # name: (class, argument the "_<value>" suffix sets, its type, default)
    "ln": (nn.LayerNorm, "eps", float, 1e-6),
    "ln2d": (LayerNorm2d, "eps", float, 1e-6),
    "gn": (_group_norm, "groups", int, 32),
}
_ACTS: dict[str, type[nn.Module] | Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_tanh": partial(nn.GELU, approximate="tanh"),
    "silu": nn.SiLU,
    "relu": nn.ReLU,
}


def _lookup(kind: str, table: dict, value):
    if callable(value):
        return value
    if isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    raise ValueError(f"unknown {kind} {value!r}; use a callable or one of {sorted(table)}")


def make_norm(norm_layer: str | NormFactory) -> NormFactory:
    """A ``dim -> nn.Module`` factory from a name (see module doc) or a callable."""
    if callable(norm_layer):
        return norm_layer
    name, _, value = str(norm_layer).lower().partition("_")
    if name not in _NORMS:
        raise ValueError(
            f"unknown norm_layer {norm_layer!r}; use a callable or one of "
            f"{sorted(_NORMS)} (optionally with a suffix such as 'LN_1e-5', 'GN_16')"
        )
    cls, arg, kind, default = _NORMS[name]
    return partial(cls, **{arg: kind(value) if value else default})


def make_act(act_layer: str | Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """A zero-argument activation factory from a name (see module doc) or a class."""
    return _lookup("act_layer", _ACTS, act_layer)


def act_name(act: nn.Module) -> str:
    """The ``act_layer`` name of an activation module (its class name if it has none)."""
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    return next((n for n, f in _ACTS.items() if f is type(act)), type(act).__name__)


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability ``p`` (training only)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, ...) -> (B, ...), kept samples scaled by 1 / (1 - p)."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerScale(nn.Module):
    """Per-channel learnable scale ``x * gamma`` (CaiT / DINOv2), ``gamma`` starts at ``init_value``."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., dim) -> (..., dim)."""
        return x * self.gamma


class Mlp(nn.Module):
    """Two-layer MLP ``fc2(drop(act(fc1(x))))``; (..., dim) -> (..., dim)."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class GatedMlp(nn.Module):
    """Gated MLP (SwiGLU with SiLU): ``fc2(act(a) * b)`` where ``[a, b] = fc1(x)``.

    ``fc1`` is packed: rows ``[:hidden]`` are the gate ``a``, rows ``[hidden:]`` the value ``b``
    (the layout of DINOv2's ``w12`` and timm's ``SwiGLUPacked``). (..., dim) -> (..., dim).
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        act_layer: Callable[[], nn.Module] = nn.SiLU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden_dim, bias=bias)
        self.act = act_layer()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)  # (..., hidden) each
        return self.drop(self.fc2(self.drop(self.act(gate) * value)))


_MLPS = {"mlp": Mlp, "gated": GatedMlp}


def make_mlp(mlp_layer: str | Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """An MLP factory ``(dim, hidden_dim, act_layer=, drop=)`` from ``'mlp'``/``'gated'`` or a callable."""
    return _lookup("mlp_layer", _MLPS, mlp_layer)


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; inputs are zero-padded (right/bottom) to a multiple of the patch.

    ``padding`` (< p / 2) additionally zero-pads every side before the projection, so each
    patch sees a margin of its neighbours (ViTPose: 2, name ``'patch_pad2'``); the grid
    stays the same. (B, in_chans, H, W) -> (B, embed_dim, ceil(H / p), ceil(W / p)).
    """

    def __init__(
        self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768, padding: int = 0
    ) -> None:
        super().__init__()
        if not 0 <= 2 * padding < patch_size:
            raise ValueError(f"padding must be in [0, patch_size / 2), got {padding}")
        self.patch_size = patch_size
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, padding=padding
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.proj(x)


class ConvStemEmbed(nn.Module):
    """Convolutional stem (Xiao et al., 2021, "Early Convolutions Help Transformers See
    Better"): log2(patch) stride-2 3x3 conv + BatchNorm + ReLU stages, widths growing to
    ``embed_dim``, then a 1x1 projection. Same interface and output grid as PatchEmbed;
    it trains faster from scratch (no published checkpoint uses it, so it has no converter).

    (B, in_chans, H, W) -> (B, embed_dim, ceil(H / p), ceil(W / p)).
    """

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        stages = patch_size.bit_length() - 1
        if patch_size < 2 or 2**stages != patch_size:
            raise ValueError(f"the conv stem needs a power-of-two patch size, got {patch_size}")
        self.patch_size = patch_size
        widths = [max(embed_dim // 2 ** (stages - i), 16) for i in range(1, stages + 1)]
        layers, prev = [], in_chans
        for width in widths:
            layers += [
                nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            prev = width
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(prev, embed_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.proj(self.stem(x))


_EMBEDS = {"patch": PatchEmbed, "conv": ConvStemEmbed}


def make_embed(embed_layer: str | Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """``embed_layer`` name ('patch', 'patch_pad<N>', 'conv') or factory
    ``(patch_size, in_chans, embed_dim)``."""
    if isinstance(embed_layer, str) and embed_layer.lower().startswith("patch_pad"):
        suffix = embed_layer[len("patch_pad") :]
        if not suffix.isdigit():
            raise ValueError(f"embed_layer {embed_layer!r}: expected 'patch_pad<int>'")
        return partial(PatchEmbed, padding=int(suffix))
    return _lookup("embed_layer", _EMBEDS, embed_layer)


def resize_pos_embed(
    pos: torch.Tensor,
    size: tuple[int, int],
    antialias: bool = False,
    offset: float = 0.0,
    mode: str = "bicubic",
) -> torch.Tensor:
    """Bicubic (or ``mode``) resize of a grid of absolute position embeddings.

    Args:
        pos: (1, h, w, C) embeddings of the grid they were trained on.
        size: target grid (H, W).
        antialias: PyTorch's antialiased bicubic (PIL-style kernel; what timm uses).
            False gives the plain bicubic kernel (Hugging Face, ViTDet, mmpretrain).
        offset: the original DINOv2 repo's ``interpolate_offset`` (0.1 there): resample with
            scale factor ``(H + offset) / h`` instead of the exact target size.
        mode: ``'bicubic'`` (timm, HF ViT / DINOv2) or ``'bilinear'`` (HF DPT).

    Returns:
        (1, H, W, C), in ``pos``'s dtype (computed in float32).
    """
    h, w = pos.shape[1:3]
    if (h, w) == tuple(size):
        return pos
    grid = pos.permute(0, 3, 1, 2).float()  # (1, C, h, w)
    if offset:
        scale = ((size[0] + offset) / h, (size[1] + offset) / w)
        grid = F.interpolate(grid, scale_factor=scale, mode=mode, antialias=antialias)
    else:
        grid = F.interpolate(grid, size=tuple(size), mode=mode, antialias=antialias)
    return grid.to(pos.dtype).permute(0, 2, 3, 1)


def grid_from_length(length: int) -> tuple[int, int] | None:
    """(n, n) if ``length`` is a perfect square n * n, else None."""
    n = math.isqrt(length)
    return (n, n) if n * n == length else None
