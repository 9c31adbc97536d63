"""Shared pieces of the converters of published DETR-family checkpoints (DETR, Deformable
DETR): their ResNet backbone, renamed into our :class:`~visionfm.backbones.TimmBackbone`,
and the original repositories' names renamed into HF's (:func:`original_to_hf`).

It also holds the COCO label-space mapping: published COCO weights classify 91 rows indexed
by COCO category id (HF's ``id2label``); a model built for COCO's 80 categories (label i =
the i-th category by id, as ``CocoDataset`` numbers them) takes those categories' rows
(:func:`is_coco_category_rows`, :func:`to_coco_categories`).

The published models keep a torchvision-named ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.{0,1}`` ...: the names timm's ResNet uses too) with frozen batch norms:

=======================================  ================================================
layout                                   prefix of the ResNet's tensors
=======================================  ================================================
Hugging Face (timm backbone)             ``model.backbone.conv_encoder.model.`` (files
                                         written by transformers < 5 and >= 5 alike);
                                         ``model.backbone.model.`` (transformers 5 in
                                         memory)
original repositories (facebookresearch  ``backbone.0.body.``
/detr, fundamentalvision/Deformable-DETR)
=======================================  ================================================

Frozen batch norms keep no ``num_batches_tracked`` counter; the model's own counters are
kept (they only matter to a batch norm trained with ``momentum=None``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from visionfm.layers import SinePositionalEncoding
from visionfm.models.published_config import COCO_CATEGORY_NAMES
from visionfm.weights import CheckpointError, ConvertedCheckpoint, split_in_proj

__all__ = [
    "BACKBONE_PREFIXES",
    "RESNETS",
    "backbone_prefix",
    "convert_backbone",
    "is_coco_category_rows",
    "original_to_hf",
    "sine_positions",
    "to_coco_categories",
]

BACKBONE_PREFIXES = (
    "model.backbone.conv_encoder.model.",
    "model.backbone.model.",
    "backbone.0.body.",
)

RESNETS = {  # (bottleneck blocks?, blocks per stage) -> timm name
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}


def backbone_prefix(state: Mapping[str, torch.Tensor]) -> str | None:
    """The prefix of :data:`BACKBONE_PREFIXES` the backbone's tensors of ``state`` carry."""
    return next((p for p in BACKBONE_PREFIXES if any(k.startswith(p) for k in state)), None)


def convert_backbone(
    state: Mapping[str, torch.Tensor], model: nn.Module, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """The backbone tensors of a published DETR-family ``state`` (any layout of the module
    doc) -> ``model``'s names (``backbone.*``), through ``model.backbone.convert_checkpoint``.

    ``config``: the backbone's part of the HF ``config.json`` (``backbone_config``) or None.
    ``ignored`` names the source keys dropped (parts the backbone prunes: ``fc``).
    """
    prefix = backbone_prefix(state)
    if prefix is None:
        raise CheckpointError(
            "no backbone tensors in this checkpoint: expected keys under one of "
            + ", ".join(BACKBONE_PREFIXES)
        )
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    converted = model.backbone.convert_checkpoint(sub, config)
    out = {f"backbone.{k}": v for k, v in converted.state_dict.items()}
    notes = list(converted.notes)
    own = model.state_dict()
    counters = [
        k
        for k in own
        if k.startswith("backbone.") and k.endswith(".num_batches_tracked") and k not in out
    ]
    for key in counters:
        out[key] = own[key].clone()
    if counters:
        notes.append(
            f"{len(counters)} batch-norm counters (num_batches_tracked) are not in the "
            "checkpoint (frozen batch norms): the model's own are kept"
        )
    return ConvertedCheckpoint(
        out,
        converted.source_format,
        [prefix + k for k in converted.ignored],
        notes,
        converted.hints,
    )


# DETRHead's tensors with one row per class (our names)
_CLASS_ROWS = re.compile(
    r"^head\.(cls_heads\.\d+|proposals(\.\d+)?\.cls_head)\.(weight|bias)$"
    r"|^head\.denoising\.label_embed\."
)


def is_coco_category_rows(rows: int, num_classes: int) -> bool:
    """Whether a checkpoint's ``rows`` class rows are COCO's 91 category ids going into a
    model of COCO's 80 categories."""
    return rows == 91 and num_classes == len(COCO_CATEGORY_NAMES)


def to_coco_categories(state: dict[str, torch.Tensor], notes: list[str]) -> None:
    """91 class rows indexed by COCO category id -> the rows of COCO's 80 categories, for
    every class-row tensor of ``state`` (our names), in place; a note says so."""
    rows = torch.tensor(sorted(COCO_CATEGORY_NAMES))
    for key in [k for k in state if _CLASS_ROWS.match(k)]:
        state[key] = state[key][rows]
    notes.append(
        "91 class rows by COCO category id -> the 80 COCO categories' (an unused id's logit no "
        "longer competes in a two-stage top-k: equal unless one was a token's highest)"
    )


def original_to_hf(
    sd: Mapping[str, torch.Tensor],
    layers: Mapping[str, Mapping[str, str]],
    renames: list[tuple[str, str]],
    family: str,
) -> dict[str, torch.Tensor]:
    """An original repository's state dict (facebookresearch/detr, fundamentalvision/
    Deformable-DETR) -> HF names, fused ``in_proj`` attention weights split into q / k / v;
    the backbone's keys are kept as they are (:func:`convert_backbone` reads
    ``backbone.0.body.*``).

    ``layers``: per side (``encoder`` / ``decoder``), the start of a layer's parameter name
    -> HF's; ``renames``: (pattern, replacement) for the other names, first match wins;
    ``family`` names the model in the error for a name neither knows.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in sd.items():
        if name.startswith("backbone.0.body."):
            out[name] = tensor
            continue
        if hit := re.match(r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.(.*)$", name):
            side, index, rest = hit.groups()
            old = next((o for o in layers[side] if rest.startswith(o)), None)
            new = None
            if old is not None:
                new = f"model.{side}.layers.{index}.{layers[side][old]}{rest[len(old) :]}"
        else:
            new = next((re.sub(p, r, name) for p, r in renames if re.match(p, name)), None)
        if new is None:
            raise CheckpointError(f"{name}: not a {family} parameter this reader knows")
        out.update(split_in_proj(new, tensor) if ".in_proj_" in new else {new: tensor})
    return out


def sine_positions(model) -> tuple:
    """``model.head``'s positional encoding as a ``config.json`` check compares it:
    ``('sine', normalize, offset, temperature)``, or ``(class name,)`` for another kind."""
    pe = model.head.positional_encoding
    if not isinstance(pe, SinePositionalEncoding):
        return (type(pe).__name__,)
    return ("sine", pe.normalize, pe.offset, pe.temperature)
