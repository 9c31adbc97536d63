"""Hugging Face ``DPTForDepthEstimation`` checkpoints -> ViT + :class:`DPTDepthHead`.

A published DPT checkpoint (``Intel/dpt-large``, ``Intel/dpt-hybrid-midas`` style names)
holds three parts:

- ``dpt.embeddings / dpt.encoder / dpt.layernorm``: the ViT, loaded by the backbone's own
  converter (:func:`visionfm.backbones.vit_convert.convert_vit_checkpoint`, which finds it
  under the ``dpt.`` prefix; ``dpt.layernorm`` is unused, DPT reads the blocks unnormed);
- ``neck.reassemble_stage / neck.convs / neck.fusion_stage``: the decoder;
- ``head.head.{0,2,4}``: the depth output convs.

:func:`convert_dpt_checkpoint` renames the last two for a :class:`DPTDepthHead`, which
loads them with ``pretrained=``. A whole model therefore loads from a config by giving the
backbone and the head the same checkpoint::

    ckpt = 'checkpoints/dpt-large'  # a Hugging Face folder (config.json + model.safetensors)
    model = dict(type='TaskModel', **dpt_model_from_hf(ckpt + '/config.json'))
    # = backbone=dict(type='ViT', ..., pretrained=ckpt), head=dict(type='DPTDepthHead', ...,
    #   pretrained=ckpt)

:func:`dpt_model_from_hf` writes that pair of configs from the checkpoint's
``config.json`` (or a ``DPTConfig`` / dict). Not supported: DPT-Hybrid (a BiT backbone
under the ViT), ``add_projection`` heads and ``backbone_config`` variants (DINOv2 / Swin
backbones); they raise :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

import torch

from visionfm.weights import CheckpointError, ConvertedCheckpoint, find_prefix

__all__ = ["convert_dpt_checkpoint", "dpt_model_from_hf"]

_ANCHOR = "neck.fusion_stage.layers.0.projection.weight"

# HF name (after the prefix) -> ours, inside DPTDepthHead; \1 is a level / block index
_RULES = [
    (r"neck\.reassemble_stage\.readout_projects\.(\d+)\.0\.", r"decoder.readouts.\1.project.0."),
    (r"neck\.reassemble_stage\.layers\.(\d+)\.projection\.", r"decoder.reassembles.\1.proj."),
    (r"neck\.reassemble_stage\.layers\.(\d+)\.resize\.", r"decoder.reassembles.\1.resample."),
    (r"neck\.convs\.(\d+)\.", r"decoder.level_convs.\1."),
    (r"neck\.fusion_stage\.layers\.(\d+)\.projection\.", r"decoder.fusions.\1.out_conv."),
    (r"neck\.fusion_stage\.layers\.(\d+)\.residual_layer1\.", r"decoder.fusions.\1.skip_unit."),
    (r"neck\.fusion_stage\.layers\.(\d+)\.residual_layer2\.", r"decoder.fusions.\1.unit."),
    (r"head\.head\.([024])\.", r"output.\1."),
]
_UNIT = [("convolution1.", "conv1."), ("convolution2.", "conv2."), ("batch_norm1.", "norm1."),
         ("batch_norm2.", "norm2.")]  # fmt: skip


def _rename(name: str) -> str | None:
    for pattern, repl in _RULES:
        new, hits = re.subn("^" + pattern, repl, name)
        if hits:
            for old, ours in _UNIT:  # inside residual units only
                new = new.replace("unit." + old, "unit." + ours)
            return new
    return None


def convert_dpt_checkpoint(sd: Mapping[str, torch.Tensor], head) -> ConvertedCheckpoint:
    """A HF ``DPTForDepthEstimation`` state dict -> the layout of ``head`` (a DPTDepthHead).

    Backbone keys (``dpt.*``) are left to the backbone's converter and listed as ignored, as
    is the unused skip unit of the deepest fusion block. Raises :class:`CheckpointError` for
    other formats and for unsupported DPT variants (see the module doc).
    """
    found = find_prefix(sd.keys(), (_ANCHOR,))
    if found is None:
        sample = ", ".join(sorted(sd)[:8])
        raise CheckpointError(
            f"not a Hugging Face DPT checkpoint: no key ends with {_ANCHOR!r}; it has "
            f"{len(sd)} keys such as: {sample}"
        )
    prefix = found[0]
    body = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if any(k.startswith("head.projection.") for k in body):
        raise CheckpointError("DPT checkpoints with add_projection=True are not supported")
    if any(".embeddings.backbone." in "." + k for k in body) or (
        "neck.reassemble_stage.layers.0.projection.weight" not in body
        and "neck.reassemble_stage.layers.2.projection.weight" in body
    ):
        raise CheckpointError("DPT-Hybrid (BiT + ViT) checkpoints are not supported")
    out, ignored = {}, [k for k in sd if not k.startswith(prefix)]
    for name, tensor in body.items():
        new = _rename(name)
        if new is None or new.startswith("decoder.fusions.0.skip_unit."):
            ignored.append(prefix + name)  # the backbone's part, or HF's unused unit
        else:
            out[new] = tensor
    notes = [f"keys taken from under the prefix {prefix!r}"] if prefix else []
    has_readout = any(k.startswith("decoder.readouts.") for k in out)
    if has_readout and head.decoder.readouts[0].mode != "project":
        raise CheckpointError(
            "the checkpoint has readout projections (readout_type='project') but the "
            f"decoder was built with readout={head.decoder.readouts[0].mode!r}"
        )
    return ConvertedCheckpoint(out, "Hugging Face DPT", ignored=ignored, notes=notes)


def _load_hf_config(config) -> dict:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    path = os.fspath(config)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read a DPT config.json at {path}: {e}") from e


def dpt_model_from_hf(config, pretrained: str | os.PathLike | None = None) -> dict:
    """``backbone`` / ``head`` configs of a ViT + DPTDepthHead equal to a HF DPT model.

    Args:
        config: the checkpoint's ``config.json`` (path or folder), a dict or a ``DPTConfig``.
        pretrained: the checkpoint both parts load; default: the folder of ``config`` when
            it is a path.

    Returns:
        ``dict(backbone=dict(type='ViT', ...), head=dict(type='DPTDepthHead', ...))``: plain
        config dicts for a ``TaskModel`` (relative depth, ReLU output, like the HF model).
    """
    cfg = _load_hf_config(config)
    if pretrained is None and isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        pretrained = path if os.path.isdir(path) else os.path.dirname(path) or "."
    if cfg.get("is_hybrid") or cfg.get("backbone_config") or cfg.get("add_projection"):
        raise CheckpointError(
            "only plain-ViT DPT models convert (not is_hybrid / backbone_config / add_projection)"
        )
    dim, patch = cfg.get("hidden_size", 768), cfg.get("patch_size", 16)
    indices = list(cfg.get("backbone_out_indices", (2, 5, 8, 11)))
    readout = cfg.get("readout_type", "project")
    batch_norm = bool(cfg.get("use_batch_norm_in_fusion_residual", False))
    bias = cfg.get("use_bias_in_fusion_residual")
    if bias is not None and bool(bias) == batch_norm:
        raise CheckpointError("fusion units with both batch norm and conv biases are not supported")
    backbone = dict(
        type="ViT",
        img_size=cfg.get("image_size", 384),
        patch_size=patch,
        embed_dim=dim,
        depth=cfg.get("num_hidden_layers", 12),
        num_heads=cfg.get("num_attention_heads", 12),
        mlp_ratio=cfg.get("intermediate_size", 4 * dim) / dim,
        qkv_bias=cfg.get("qkv_bias", True),
        act_layer=cfg.get("hidden_act", "gelu"),
        norm_layer=f"LN_{cfg.get('layer_norm_eps', 1e-12)}",
        pos_embed_mode="bilinear",
        final_norm=False,
        return_class_token=readout != "ignore",
        out_indices=indices,
        pretrained=pretrained,
    )
    decoder = dict(
        type="DPTDecoder",
        in_channels=[dim] * len(indices),
        in_strides=[patch] * len(indices),
        neck_channels=list(cfg.get("neck_hidden_sizes", (96, 192, 384, 768))),
        channels=cfg.get("fusion_hidden_size", 256),
        reassemble_factors=list(cfg.get("reassemble_factors", (4, 2, 1, 0.5))),
        readout=readout,
        norm_layer="BN" if batch_norm else None,
    )
    head = dict(
        type="DPTDepthHead",
        decoder=decoder,
        mode="relative",
        activation="relu",
        pretrained=pretrained,
    )
    return dict(backbone=backbone, head=head)
