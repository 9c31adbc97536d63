"""The interface every 2D backbone implements (see docs/architecture.md, "Contracts").

``forward(x (B, 3, H, W)) -> dict[level, (B, C, h, w)]`` with ``out_channels`` /
``out_strides`` per level; a gradient-checkpointing switch; ``frozen_stages``;
layer ids for layer-wise lr decay; ``load_pretrained`` through the family's
checkpoint converter.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping

import torch
import torch.nn as nn

from visionfm.registry import MODELS
from visionfm.weights import (
    ConvertedCheckpoint,
    LoadReport,
    load_converted,
    read_checkpoint,
    read_hf_config,
)

__all__ = ["Backbone", "level_name", "register_preset"]

StagePart = nn.Module | nn.Parameter


class Backbone(nn.Module):
    """Base class of 2D backbones. Subclasses implement:

    - ``forward(x)``: (B, 3, H, W) -> ``{level: (B, out_channels[level], H_l, W_l)}``;
    - ``out_channels`` / ``out_strides``: ``{level: int}`` for the same levels;
    - ``stage_parts()``: ``parts[k]`` is what ``frozen_stages >= k`` freezes
      (``parts[0]`` is the stem: patch / position embeddings);
    - ``num_layers`` and ``get_layer_id(name)``: parameter ``name``'s depth for layer-wise lr
      decay, from 0 (stem) through ``num_layers + 1`` (layers after the last block);
    - ``convert_checkpoint(state_dict, config)``: a published checkpoint -> this model's
      layout; ``config`` is the Hugging Face ``config.json`` beside it (or None), refused
      where it states another architecture than the model's.

    ``frozen_stages = -1`` freezes nothing. Frozen parameters get ``requires_grad=False``
    and frozen modules stay in eval mode through ``train()`` (dropout, drop path and
    norm statistics off). Subclasses call ``self.freeze_stages()`` at the end of ``__init__``.
    """

    def __init__(self, frozen_stages: int = -1, grad_checkpointing: bool = False) -> None:
        super().__init__()
        self.frozen_stages = frozen_stages
        self.grad_checkpointing = grad_checkpointing

    # -- the interface -------------------------------------------------------------------
    @property
    def out_channels(self) -> dict[str, int]:
        raise NotImplementedError

    @property
    def out_strides(self) -> dict[str, int]:
        raise NotImplementedError

    @property
    def num_layers(self) -> int:
        raise NotImplementedError

    def get_layer_id(self, name: str) -> int:
        raise NotImplementedError

    def stage_parts(self) -> list[list[StagePart]]:
        raise NotImplementedError

    def convert_checkpoint(
        self, state_dict: dict[str, torch.Tensor], config: Mapping | None = None
    ) -> ConvertedCheckpoint:
        raise NotImplementedError

    # -- shared behaviour ----------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward instead of storing them."""
        self.grad_checkpointing = enable

    def layer_ids(self) -> dict[str, int]:
        """``{parameter name: layer id}`` for every parameter (see ``get_layer_id``)."""
        return {name: self.get_layer_id(name) for name, _ in self.named_parameters()}

    def freeze_stages(self, frozen_stages: int | None = None) -> None:
        """Freeze stage parts ``0 .. frozen_stages``; the others get ``requires_grad=True``."""
        if frozen_stages is not None:
            self.frozen_stages = frozen_stages
        for k, part in enumerate(self.stage_parts()):
            frozen = k <= self.frozen_stages
            for item in part:
                item.requires_grad_(not frozen)
                if isinstance(item, nn.Module):
                    item.train(self.training and not frozen)

    def _frozen_modules(self) -> list[nn.Module]:
        parts = self.stage_parts()[: self.frozen_stages + 1]
        return [m for part in parts for m in part if isinstance(m, nn.Module)]

    def train(self, mode: bool = True) -> Backbone:
        """Set train/eval mode; frozen modules stay in eval mode."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def load_pretrained(
        self, checkpoint: str | os.PathLike | Mapping[str, torch.Tensor], strict: bool = False
    ) -> LoadReport:
        """Load a published checkpoint of this family (file, HF folder or dict in memory).

        Returns the :class:`~visionfm.weights.LoadReport` (also logged); raises
        :class:`~visionfm.weights.CheckpointError` when the checkpoint is unreadable,
        of another family or size, has parameters the model lacks (naming the constructor
        argument to set), comes with a ``config.json`` that states another architecture, or
        (``strict``) leaves keys missing.
        """
        config = read_hf_config(checkpoint)
        converted = self.convert_checkpoint(read_checkpoint(checkpoint), config)
        return load_converted(self, converted, strict=strict)


def level_name(stride: int) -> str:
    """Key of a feature level of stride ``stride`` (a power of two): ``p{log2(stride)}``,
    e.g. ``'p4'`` for stride 16. Backbones and necks name their pyramid levels so."""
    return f"p{int(stride).bit_length() - 1}"


def register_preset(name: str, cls: type[nn.Module], preset: dict, family: str) -> None:
    """Register ``name`` in ``MODELS``: a builder of ``cls(**preset)`` whose keyword arguments
    override the preset. It carries ``cls``'s signature with the preset's values as defaults,
    so the registry checks argument names as for ``cls`` itself."""

    def build(**overrides) -> nn.Module:
        return cls(**{**preset, **overrides})

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"{family} preset {name!r}: ``{cls.__name__}(**{preset!r})``; keyword arguments "
        "override it."
    )
    sig = inspect.signature(cls)
    params = [p.replace(default=preset.get(p.name, p.default)) for p in sig.parameters.values()]
    build.__signature__ = sig.replace(parameters=params, return_annotation=cls)
    MODELS.register_module(name=name, module=build)
