"""Norm and activation layers by name, for configs.

Layers are injected as factories (``norm_layer``, ``act_layer``, ``mlp_layer``,
``embed_layer``); configs may name them with a short string instead:

- norm (:func:`make_norm`): ``'LN'`` (``nn.LayerNorm``, eps 1e-6; ``'LN_1e-5'`` sets the
  eps), ``'LN2d'`` (channels-first :class:`LayerNorm2d`, same eps rule), ``'GN'``
  (``nn.GroupNorm``, 32 groups; ``'GN_16'`` sets the groups), ``'BN'`` (``nn.BatchNorm2d``,
  eps 1e-5; ``'BN_1e-3'`` sets it), or a callable ``dim -> nn.Module``;
- act (:func:`make_act`): ``'gelu'``, ``'gelu_tanh'``, ``'silu'``, ``'relu'``, or a module class;
- mlp (``mlp.make_mlp``) and patch embedding (``patch_embed.make_embed``) resolve their names
  with :func:`resolve_layer` the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

NormFactory = Callable[[int], nn.Module]

__all__ = ["LayerNorm2d", "NormFactory", "act_name", "make_act", "make_norm", "resolve_layer"]


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
    "bn": (nn.BatchNorm2d, "eps", float, 1e-5),
}
_ACTS: dict[str, type[nn.Module] | Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_tanh": partial(nn.GELU, approximate="tanh"),
    "silu": nn.SiLU,
    "relu": nn.ReLU,
}


def resolve_layer(kind: str, table: dict, value):
    """``value`` if it is callable, else the entry of ``table`` it names (case-insensitive);
    ValueError naming ``kind`` and the known names otherwise."""
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
    return resolve_layer("act_layer", _ACTS, act_layer)


def act_name(act: nn.Module) -> str:
    """The ``act_layer`` name of an activation module (its class name if it has none)."""
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    return next((n for n, f in _ACTS.items() if f is type(act)), type(act).__name__)
