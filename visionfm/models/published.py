"""Whole-model checkpoints published in another library's layout, converted on load.

``load_from=`` (training, fine-tuning), ``tools/test.py`` / ``tools/demo.py`` checkpoints and
``Inferencer(config, checkpoint)`` accept, besides our own checkpoints:

- Hugging Face ``GroundingDinoForObjectDetection`` / ``MMGroundingDinoForObjectDetection``
  (a ``save_pretrained`` folder such as ``grounding-dino-tiny``, or its ``model.safetensors``
  with the ``config.json`` beside it), into a ``TaskModel`` with a ``GroundingDINOHead``.

The conversion is strict: every tensor of the model is loaded and every tensor of the file is
placed, or the load is refused naming the argument to set (``visionfm.weights.load_converted``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from visionfm.weights import ConvertedCheckpoint, load_converted, read_checkpoint, read_hf_config

__all__ = ["convert_published", "is_published_path", "load_published"]


def is_published_path(path: str | os.PathLike) -> bool:
    """A folder or a ``.safetensors`` file: not one of our (torch.save) checkpoints."""
    return os.path.isdir(path) or os.fspath(path).endswith(".safetensors")


def convert_published(
    model: nn.Module, state: Mapping[str, torch.Tensor], config: Mapping | None = None
) -> ConvertedCheckpoint | None:
    """``state`` converted into ``model``'s layout when it is in a published layout we know;
    None when it is not (e.g. our own)."""
    from visionfm.heads.grounding.convert import (
        convert_grounding_dino_checkpoint,
        is_grounding_dino_checkpoint,
    )

    if is_grounding_dino_checkpoint(state):
        return convert_grounding_dino_checkpoint(state, model, config)
    return None


def load_published(model: nn.Module, path: str | os.PathLike) -> bool:
    """Load the published checkpoint at ``path`` (folder or file) into ``model``, strictly;
    False (nothing loaded) when it is in none of the published layouts."""
    state = read_checkpoint(path)
    converted = convert_published(model, state, read_hf_config(path))
    if converted is None:
        return False
    load_converted(model, converted, strict=True)
    return True
