"""MLPs.

- :class:`Mlp` / :class:`GatedMlp`: a transformer block's two-layer feed-forward network,
  plain or gated (SwiGLU); :func:`make_mlp` picks one by name (``'mlp'``, ``'gated'``).
- :class:`MLP`: DETR's stack of ``num_layers`` linears with ReLU between (box, mask-embedding
  and reference-point heads), registered as ``DetrMLP``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionfm.registry import MODELS

from .norm_act import resolve_layer

__all__ = ["MLP", "GatedMlp", "Mlp", "make_mlp"]


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
        h = self.fc1(x)  # (..., hidden_dim)
        if isinstance(self.act, nn.GELU) and not h.requires_grad:
            # no gradient to keep: GELU overwrites fc1's fresh output instead of allocating
            # another (..., hidden_dim) tensor (the largest of a ViT block)
            h = torch.ops.aten.gelu_(h, approximate=self.act.approximate)
        else:
            h = self.act(h)
        return self.drop(self.fc2(self.drop(h)))


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
    return resolve_layer("mlp_layer", _MLPS, mlp_layer)


@MODELS.register_module(name="DetrMLP")
class MLP(nn.Module):
    """``num_layers`` linears with ReLU between: (..., in_dims) -> (..., out_dims).

    Registered as ``DetrMLP`` (e.g. DINO's ``ref_point_head``).
    """

    def __init__(self, in_dims: int, hidden_dims: int, out_dims: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dims] + [hidden_dims] * (num_layers - 1) + [out_dims]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x
