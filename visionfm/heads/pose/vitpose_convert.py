"""Published ViTPose checkpoints -> a ViT backbone + ``TopDownHeatmapHead`` model.

Recognised layouts:

- Hugging Face ``VitPoseForPoseEstimation`` (``usyd-community/vitpose-*``): ``backbone.``
  is a ``VitPoseBackbone`` (HF ViT names, ``layernorm`` as final norm), ``head.conv`` (simple
  decoder) or ``head.deconv{1,2}`` / ``head.batchnorm{1,2}`` / ``head.conv`` (classic);
- the original ViTPose repo (mmpose 0.x): ``backbone.`` timm-style names with
  ``last_norm``, ``keypoint_head.deconv_layers.{0,1,3,4}`` and ``keypoint_head.final_layer``.

Both keep a class-token slot in ``pos_embed`` (1, 1 + h * w, C) but no class token: the
slot's entry is added to every patch (``x + pos[:, 1:] + pos[:, :1]``), so it is folded
into the patch grid here; the rest of the backbone goes through the ViT converter
(:func:`visionfm.backbones.vit_convert.convert_vit_checkpoint`). The backbone must be built
as ViTPose's: ``class_token=False``, ``embed_layer='patch_pad2'`` (its patch projection
pads 2 px) and the checkpoint's LayerNorm eps (the original repo: 1e-6, ``norm_layer='LN'``;
HF: the ``layer_norm_eps`` of its config.json, 1e-12 by default: ``'LN_1e-12'``).
ViTPose+ mixture-of-experts checkpoints are refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from visionfm.weights import (
    CheckpointError,
    ConvertedCheckpoint,
    LoadReport,
    load_converted,
    read_checkpoint,
)

__all__ = ["convert_vitpose_head", "fold_pos_embed", "load_vitpose_checkpoint"]

# checkpoint head names -> ours, for the classic decoder (Sequential: deconv, BN, ReLU, ...)
_CLASSIC = [
    ("head.deconv1.", "decoder.deconv.0."),
    ("head.batchnorm1.", "decoder.deconv.1."),
    ("head.deconv2.", "decoder.deconv.3."),
    ("head.batchnorm2.", "decoder.deconv.4."),
    ("head.conv.", "decoder.final."),
    ("keypoint_head.deconv_layers.", "decoder.deconv."),
    ("keypoint_head.final_layer.", "decoder.final."),
]


def fold_pos_embed(pos: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
    """ViTPose's (1, 1 + N, C) position table -> (1, N, C) with the slot-0 entry added.

    ``grid``: the model's patch grid; a table already of ``h * w`` entries is returned
    unchanged.
    """
    n = pos.shape[1]
    if grid is not None and n == grid[0] * grid[1]:
        return pos
    if grid is not None and n - 1 != grid[0] * grid[1]:
        raise CheckpointError(
            f"ViTPose pos_embed has {n} entries, the model's {grid[0]} x {grid[1]} patch grid "
            f"needs {grid[0] * grid[1]} (+1 slot): build the backbone with the checkpoint's "
            "img_size / patch_size (ViTPose: img_size=(256, 192), patch_size=16)"
        )
    return pos[:, 1:] + pos[:, :1]


def _split(sd: Mapping[str, torch.Tensor]) -> tuple[dict, dict, str]:
    """-> (backbone keys without ``backbone.``, head keys, source format)."""
    if "backbone.embeddings.patch_embeddings.projection.weight" in sd:
        fmt = "Hugging Face VitPose"
    elif "backbone.patch_embed.proj.weight" in sd:
        fmt = "ViTPose (original repo)"
    else:
        sample = ", ".join(sorted(sd)[:8])
        raise CheckpointError(
            "not a ViTPose checkpoint: no 'backbone.embeddings.patch_embeddings.projection."
            f"weight' (Hugging Face) or 'backbone.patch_embed.proj.weight' (original repo); it "
            f"has {len(sd)} keys such as: {sample}"
        )
    if any(".experts." in k for k in sd):
        raise CheckpointError(
            "ViTPose+ mixture-of-experts checkpoints (mlp.experts.*) are not supported"
        )
    backbone = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    head = {k: v for k, v in sd.items() if k.startswith(("head.", "keypoint_head."))}
    return backbone, head, fmt


def convert_vitpose_head(sd: Mapping[str, torch.Tensor], decoder: nn.Module) -> dict:
    """Head keys of a ViTPose checkpoint -> ``TopDownHeatmapHead`` state-dict keys for
    ``decoder`` (a ``ClassicDecoder`` or ``SimpleDecoder``)."""
    classic = any(k.startswith(("head.deconv", "keypoint_head.deconv")) for k in sd)
    ours_classic = hasattr(decoder, "deconv") and len(decoder.deconv) > 0
    if classic != ours_classic:
        raise CheckpointError(
            f"the checkpoint has a {'classic' if classic else 'simple'} decoder but the model's "
            f"is {type(decoder).__name__} with {'deconvolutions' if ours_classic else 'none'}: "
            f"use {'ClassicDecoder' if classic else 'SimpleDecoder'}"
        )
    out = {}
    for name, tensor in sd.items():
        for old, new in _CLASSIC:
            if name.startswith(old):
                out[new + name[len(old) :]] = tensor
                break
    return out


def load_vitpose_checkpoint(
    model: nn.Module, source: str | os.PathLike | Mapping, strict: bool = True
) -> dict[str, LoadReport]:
    """Load a ViTPose checkpoint (file, HF folder or state dict) into ``model`` (a task model
    with ``backbone`` (ViT) and ``head`` (``TopDownHeatmapHead``)).

    Returns ``{'backbone': LoadReport, 'head': LoadReport}``; raises ``CheckpointError``
    (before loading anything) when the layout or a shape does not fit, or, with ``strict``,
    when a key is missing or left over.
    """
    sd = read_checkpoint(source)
    backbone_sd, head_sd, fmt = _split(sd)
    backbone, head = model.backbone, model.head
    if head is None:
        raise CheckpointError("load_vitpose_checkpoint needs a model with a single pose head")
    if getattr(backbone, "cls_token", None) is not None:
        raise CheckpointError(
            "ViTPose backbones have no class token: build the ViT with class_token=False"
        )
    backbone_sd = {
        ("norm." + k[10:] if k.startswith("last_norm.") else k): v for k, v in backbone_sd.items()
    }
    for key in ("embeddings.position_embeddings", "pos_embed"):
        if key in backbone_sd:
            grid = tuple(backbone.pos_embed.shape[1:3]) if backbone.pos_embed is not None else None
            backbone_sd[key] = fold_pos_embed(backbone_sd[key], grid)
    converted = backbone.convert_checkpoint(backbone_sd)
    converted.source_format = fmt
    head_converted = ConvertedCheckpoint(convert_vitpose_head(head_sd, head.decoder), fmt)
    own = head.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in head_converted.state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    if bad:  # checked before the backbone is loaded, so a failure leaves the model untouched
        raise CheckpointError(
            "ViTPose head shapes differ (keypoint count or decoder widths?): " + "; ".join(bad)
        )
    reports = dict(
        backbone=load_converted(backbone, converted, strict=strict),
        head=load_converted(head, head_converted, strict=strict),
    )
    return reports
