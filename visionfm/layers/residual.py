"""Wrappers of a transformer block's residual branch: stochastic depth (Huang et al., "Deep
Networks with Stochastic Depth", ECCV 2016) and layer scale (Touvron et al., "Going deeper
with Image Transformers" (CaiT), ICCV 2021)."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["DropPath", "LayerScale"]


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
