"""Patch embeddings of an image: a strided convolution (ViT) or a convolutional stem;
:func:`make_embed` picks one by name (``'patch'``, ``'patch_pad<N>'``, ``'conv'``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norm_act import resolve_layer

__all__ = ["ConvStemEmbed", "PatchEmbed", "make_embed"]


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
    return resolve_layer("embed_layer", _EMBEDS, embed_layer)
