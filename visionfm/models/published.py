"""Whole-model checkpoints published in another library's layout, converted on load.

``load_from=`` (training, fine-tuning), ``tools/test.py`` / ``tools/demo.py`` checkpoints and
``Inferencer(config, checkpoint)`` accept, besides our own checkpoints, the layouts of the
registered :class:`PublishedFamily` entries (a Hugging Face ``save_pretrained`` folder, its
``model.safetensors`` with the ``config.json`` beside it, or an original repository's
torch-saved checkpoint).

Each family lives beside its head (``visionfm/heads/<family>/convert*.py``) and registers
itself with :func:`register_family` when its module is imported; the modules are listed in
``_FAMILY_MODULES`` and imported on first use. A family gives:

- ``matches(state, hf_config)``: whether a state dict (and the folder's ``config.json``, or
  None) is in its layout — specific enough that no other family's checkpoint matches;
- ``convert(state, model, hf_config)``: the state dict renamed into ``model``'s layout
  (a :class:`~visionfm.weights.ConvertedCheckpoint`), refusing settings of ``config.json``
  that differ from the built model, naming the argument to set;
- ``model_config(state, hf_config)`` (optional): our ``model=`` config dict (backbone, neck,
  head, data preprocessor) that builds the architecture of the checkpoint, from its
  ``config.json`` or, for an original checkpoint without one, from the tensors' names and
  shapes (``tools/convert_checkpoint.py`` and ``Inferencer`` on a folder use it); an original
  checkpoint's pickled training arguments are ``state.args`` (``visionfm.weights.CheckpointState``);
- ``processor`` (optional): the original repository's evaluation preprocessing, for its
  checkpoints that come without a ``preprocessor_config.json``;
- ``data_config`` (optional): the evaluation data of a family whose inputs are not images
  (point clouds: the test pipeline, dataset, metric and class names of its benchmark).

The conversion is strict: every tensor of the model is loaded and every tensor of the file is
placed, or the load is refused naming the argument to set (``visionfm.weights.load_converted``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from visionfm.weights import ConvertedCheckpoint

__all__ = [
    "PublishedFamily",
    "convert_published",
    "families",
    "find_family",
    "is_published_path",
    "register_family",
]

StateDict = Mapping[str, torch.Tensor]

# modules that call register_family() when imported (one per published family)
_FAMILY_MODULES: tuple[str, ...] = (
    "visionfm.heads.grounding.convert",
    "visionfm.heads.detr.convert_deformable",
    "visionfm.heads.detr.convert_dino",
    "visionfm.heads.segmentation.mask2former.convert",
    "visionfm.heads.detr.convert_lw_detr",
    "visionfm.heads.detr.convert_detr",
    "visionfm.models.convert_point_mae",
)
_FAMILIES: dict[str, PublishedFamily] = {}


@dataclass(frozen=True)
class PublishedFamily:
    """One family of published whole-model checkpoints (see the module doc)."""

    name: str
    matches: Callable[[StateDict, Mapping | None], bool]
    convert: Callable[[StateDict, nn.Module, Mapping | None], ConvertedCheckpoint]
    model_config: Callable[[StateDict, Mapping | None], dict] | None = None
    #: the original repository's evaluation preprocessing in ``preprocessor_config.json``'s
    #: terms (``visionfm.models.published_config``), for its checkpoints without one; None:
    #: DETR's (shortest edge 800, longest 1333, ImageNet mean / std)
    processor: Mapping | None = None
    #: ``(model config, data_root or None) -> dict`` of the config's data keys (``metainfo``,
    #: ``data_root``, ``test_pipeline``, ``test_dataloader``, ``test_evaluator``,
    #: ``test_cfg``) for a family whose inputs are not images (point clouds); None: COCO
    #: val2017 through the image ``processor`` (``visionfm.models.published_config``)
    data_config: Callable[[Mapping, str | None], dict] | None = None


def register_family(family: PublishedFamily) -> PublishedFamily:
    """Add ``family`` (called at import by the family's module); names are unique."""
    if family.name in _FAMILIES and _FAMILIES[family.name] != family:
        raise KeyError(f"a published family named {family.name!r} is registered already")
    _FAMILIES[family.name] = family
    return family


def families() -> tuple[PublishedFamily, ...]:
    """Every registered family (importing the family modules on first use)."""
    for module in _FAMILY_MODULES:
        importlib.import_module(module)
    return tuple(_FAMILIES.values())


def find_family(state: StateDict, config: Mapping | None = None) -> PublishedFamily | None:
    """The family whose layout ``state`` (with its ``config.json`` or None) is in, or None."""
    for family in families():
        if family.matches(state, config):
            return family
    return None


def is_published_path(path: str | os.PathLike) -> bool:
    """A folder, a ``.safetensors`` file or a detectron2 ``.pkl``: not one of our (torch.save)
    checkpoints."""
    return os.path.isdir(path) or os.fspath(path).endswith((".safetensors", ".pkl"))


def convert_published(
    model: nn.Module, state: StateDict, config: Mapping | None = None
) -> ConvertedCheckpoint | None:
    """``state`` converted into ``model``'s layout when it is in a published layout we know;
    None when it is not (e.g. our own)."""
    family = find_family(state, config)
    return None if family is None else family.convert(state, model, config)
