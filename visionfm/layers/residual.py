"""Wrappers of a transformer block's residual branch: stochastic depth (Huang et al., "Deep
Networks with Stochastic Depth", ECCV 2016) and layer scale (Touvron et al., "Going deeper
with Image Transformers" (CaiT), ICCV 2021); the base of post-norm layers (Vaswani et al.,
"Attention Is All You Need", NeurIPS 2017)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from .norm_act import make_norm

__all__ = ["DropPath", "LayerScale", "PostNormLayer"]


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


class PostNormLayer(nn.Module):
    """Base of post-norm transformer layers: the subclass's ``forward`` runs sublayer ``i``
    (attention, FFN) as ``x = self.norm{i}(x + self.drop(sublayer(x)))``.

    Args:
        sublayers: the sublayers by attribute name, in the order they run; the first one's
            ``embed_dims`` (C) is the layer's. ``norm1`` ... ``normN`` follow them, one each.
        dropout: on each residual branch.
        norm_layer: factory ``dims -> module`` or name (``'LN_1e-5'``, see ``make_norm``).
    """

    def __init__(
        self,
        sublayers: dict[str, nn.Module],
        /,
        dropout: float = 0.0,
        norm_layer: str | Callable[[int], nn.Module] = "LN_1e-5",
    ) -> None:
        super().__init__()
        for name, sublayer in sublayers.items():
            self.add_module(name, sublayer)
        self.embed_dims = next(iter(sublayers.values())).embed_dims
        for i in range(1, len(sublayers) + 1):
            self.add_module(f"norm{i}", make_norm(norm_layer)(self.embed_dims))
        self.drop = nn.Dropout(dropout)
