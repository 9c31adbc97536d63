"""Published Mask2Former weights -> our ``TaskModel`` (Swin / any backbone with a converter,
:class:`Mask2FormerHead`).

Reads Hugging Face transformers' ``Mask2FormerForUniversalSegmentation`` layout (a folder as
``save_pretrained`` writes it, e.g. facebook/mask2former-swin-tiny-coco-panoptic, or its
``model.safetensors``) and the facebookresearch/Mask2Former (detectron2) layout, as a
torch-saved ``{"model": state_dict}`` or a detectron2 ``model_final_*.pkl`` of numpy arrays
(``visionfm.weights.read_checkpoint`` unpickles nothing else). The original names are
renamed into HF's (:func:`original_to_hf`), then both convert alike:

===================================================  ==========================================
HF (``model.`` prefix left out)                      ours (``head.`` prefix left out)
===================================================  ==========================================
``pixel_level_module.encoder.*``                     ``backbone.*`` (the backbone's converter)
``pixel_level_module.decoder.input_projections.i``   ``pixel_decoder.input_proj.i`` (biased)
``pixel_level_module.decoder.level_embed``           ``pixel_decoder.level_embed``
``pixel_level_module.decoder.encoder.layers.j``      ``pixel_decoder.encoder.layers.j``
``pixel_level_module.decoder.adapter_k / layer_k``   ``pixel_decoder.lateral_convs / output_convs``
                                                     (HF counts fine to coarse, we coarse to fine)
``pixel_level_module.decoder.mask_projection``       ``pixel_decoder.mask_feature``
``transformer_module.queries_features / _embedder``  ``query_feat`` / ``query_embed``
``transformer_module.level_embed``                   ``level_embed`` (added to the features)
``transformer_module.decoder.layers.i``              ``transformer_decoder.layers.i`` (fused
                                                     ``cross_attn.in_proj`` split into q / k / v)
``transformer_module.decoder.layernorm``             ``decoder_norm``
``transformer_module.decoder.mask_predictor.*``      ``mask_head.layers.*``
``class_predictor`` (no ``model.``)                  ``cls_head``
===================================================  ==========================================

HF's ``decoder_layers`` counts the initial prediction: ``decoder_layers - 1`` layers. The
model must be built to match (see :func:`mask2former_model_config` for the published
architecture): ``head.level_embed_on='feats'``, ``head.mask_padding=False``,
``pixel_decoder.input_bias=True``, Swin with
``always_partition=True``, the heads / widths / layer counts of ``config.json``; a mismatch is
refused naming the argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from visionfm.models.published import PublishedFamily, register_family
from visionfm.weights import (
    CheckpointError,
    ConfigEntry,
    ConvertedCheckpoint,
    check_hf_config,
    split_in_proj,
)

from .model_config import _BACKBONE, _PIXEL, _TRANSFORMER, mask2former_model_config

__all__ = [
    "convert_mask2former_checkpoint",
    "is_mask2former_checkpoint",
    "is_original_mask2former_checkpoint",
    "original_to_hf",
]

# (pattern, replacement), applied in order to the head's HF names
_RENAMES = [
    (r"^model\.pixel_level_module\.decoder\.", "head.pixel_decoder."),
    (r"^head\.pixel_decoder\.input_projections\.", "head.pixel_decoder.input_proj."),
    (r"^head\.pixel_decoder\.mask_projection\.", "head.pixel_decoder.mask_feature."),
    (r"(pixel_decoder\.encoder\.layers\.\d+)\.self_attn\.", r"\1.self_attn.attn."),
    (r"(pixel_decoder\.encoder\.layers\.\d+)\.self_attn_layer_norm\.", r"\1.norm1."),
    (r"(pixel_decoder\.encoder\.layers\.\d+)\.final_layer_norm\.", r"\1.norm2."),
    (r"^model\.transformer_module\.queries_features\.", "head.query_feat."),
    (r"^model\.transformer_module\.queries_embedder\.", "head.query_embed."),
    (r"^model\.transformer_module\.level_embed\.weight$", "head.level_embed"),
    (r"^model\.transformer_module\.decoder\.layernorm\.", "head.decoder_norm."),
    (r"^model\.transformer_module\.decoder\.mask_predictor\.mask_embedder\.(\d)\.0\.",
     r"head.mask_head.layers.\1."),
    (r"^model\.transformer_module\.decoder\.layers\.", "head.transformer_decoder.layers."),
    (r"(transformer_decoder\.layers\.\d+)\.cross_attn_layer_norm\.", r"\1.norm1."),
    (r"(transformer_decoder\.layers\.\d+)\.self_attn_layer_norm\.", r"\1.norm2."),
    (r"(transformer_decoder\.layers\.\d+)\.final_layer_norm\.", r"\1.norm3."),
    (r"\.fc1\.", ".ffn.net.0."),
    (r"\.fc2\.", ".ffn.net.3."),
    (r"^class_predictor\.", "head.cls_head."),
]  # fmt: skip
_FPN = re.compile(r"^model\.pixel_level_module\.decoder\.(adapter|layer)_(\d+)\.(\d)\.(\w+)$")
_IGNORED = re.compile(r"^criterion\.empty_weight$")  # the loss's class weights (a buffer)


def is_mask2former_checkpoint(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` is in HF's or the original repo's Mask2Former layout."""
    hf = any(k.startswith(_PIXEL) for k in sd) and any(
        k.startswith(_TRANSFORMER + "decoder.mask_predictor.") for k in sd
    )
    return hf or is_original_mask2former_checkpoint(sd)


def is_original_mask2former_checkpoint(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` is in the facebookresearch/Mask2Former (detectron2) layout."""
    return any(k.startswith("sem_seg_head.pixel_decoder.") for k in sd) and any(
        k.startswith("sem_seg_head.predictor.transformer_cross_attention_layers.") for k in sd
    )


# ------------------------------------------------------------------ the original layout
_ORIGINAL_RENAMES = [  # (pattern, replacement), first match wins
    (r"^sem_seg_head\.pixel_decoder\.input_proj\.", _PIXEL + "input_projections."),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.level_embed$", _PIXEL + "level_embed"),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.norm1\.",
     _PIXEL + r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.norm2\.",
     _PIXEL + r"encoder.layers.\1.final_layer_norm."),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.linear(\d)\.",
     _PIXEL + r"encoder.layers.\1.fc\2."),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.self_attn\.",
     _PIXEL + r"encoder.layers.\1.self_attn."),
    (r"^sem_seg_head\.pixel_decoder\.mask_features\.", _PIXEL + "mask_projection."),
    # detectron2's Conv2d(norm=...): the conv's own weight, its norm under ".norm"
    (r"^sem_seg_head\.pixel_decoder\.(adapter|layer)_(\d+)\.weight$", _PIXEL + r"\1_\2.0.weight"),
    (r"^sem_seg_head\.pixel_decoder\.(adapter|layer)_(\d+)\.norm\.", _PIXEL + r"\1_\2.1."),
    (r"^sem_seg_head\.predictor\.query_feat\.", _TRANSFORMER + "queries_features."),
    (r"^sem_seg_head\.predictor\.query_embed\.", _TRANSFORMER + "queries_embedder."),
    (r"^sem_seg_head\.predictor\.level_embed\.", _TRANSFORMER + "level_embed."),
    (r"^sem_seg_head\.predictor\.decoder_norm\.", _TRANSFORMER + "decoder.layernorm."),
    (r"^sem_seg_head\.predictor\.mask_embed\.layers\.(\d)\.",
     _TRANSFORMER + r"decoder.mask_predictor.mask_embedder.\1.0."),
    (r"^sem_seg_head\.predictor\.class_embed\.", "class_predictor."),
    (r"^sem_seg_head\.predictor\.transformer_self_attention_layers\.(\d+)\.self_attn\.",
     _TRANSFORMER + r"decoder.layers.\1.self_attn."),
    (r"^sem_seg_head\.predictor\.transformer_self_attention_layers\.(\d+)\.norm\.",
     _TRANSFORMER + r"decoder.layers.\1.self_attn_layer_norm."),
    (r"^sem_seg_head\.predictor\.transformer_cross_attention_layers\.(\d+)\.multihead_attn\.",
     _TRANSFORMER + r"decoder.layers.\1.cross_attn."),
    (r"^sem_seg_head\.predictor\.transformer_cross_attention_layers\.(\d+)\.norm\.",
     _TRANSFORMER + r"decoder.layers.\1.cross_attn_layer_norm."),
    (r"^sem_seg_head\.predictor\.transformer_ffn_layers\.(\d+)\.linear(\d)\.",
     _TRANSFORMER + r"decoder.layers.\1.fc\2."),
    (r"^sem_seg_head\.predictor\.transformer_ffn_layers\.(\d+)\.norm\.",
     _TRANSFORMER + r"decoder.layers.\1.final_layer_norm."),
    (r"^criterion\.empty_weight$", "criterion.empty_weight"),
]  # fmt: skip
_ORIGINAL_IGNORED = re.compile(r"^(pixel_mean|pixel_std)$")  # normalisation constants


def original_to_hf(sd: Mapping[str, torch.Tensor]) -> tuple[dict, dict, list[str]]:
    """The original repo's state dict -> (HF-layout head tensors, the backbone's tensors
    without ``backbone.``, ignored names). The self-attention's fused ``in_proj`` is split
    into HF's q / k / v here (HF keeps the cross-attention's fused)."""
    hf, backbone, ignored = {}, {}, []
    for name, tensor in sd.items():
        if name.startswith("backbone."):
            backbone[name[len("backbone.") :]] = tensor
            continue
        if _ORIGINAL_IGNORED.match(name):
            ignored.append(name)
            continue
        new = next((re.sub(p, r, name) for p, r in _ORIGINAL_RENAMES if re.match(p, name)), None)
        if new is None:
            raise CheckpointError(f"{name}: not a Mask2Former parameter this reader knows")
        if ".self_attn.in_proj_" in new and new.startswith(_TRANSFORMER):
            hf.update(split_in_proj(new, tensor))
        else:
            hf[new] = tensor
    return hf, backbone, ignored


# ------------------------------------------------------------------ config.json checks
def _heads(m) -> tuple[int, int, int]:
    """(pixel-decoder deformable heads, decoder cross-attention heads, self-attention heads)."""
    enc = m.head.pixel_decoder.encoder.layers[0].self_attn.attn
    dec = m.head.transformer_decoder.layers[0]
    return enc.num_heads, dec.cross_attn.num_heads, dec.self_attn.num_heads


def _pos(m) -> tuple:
    """(temperature, normalize) of both sine encodings."""
    return tuple(
        (p.temperature, p.normalize)
        for p in (m.head.pixel_decoder.positional_encoding, m.head.positional_encoding)
    )


def _decoder_act(m) -> str:
    from visionfm.layers import act_name

    return act_name(m.head.transformer_decoder.layers[0].ffn.net[1])


_HF_CONFIG = {
    "mask2former": [
        ConfigEntry(
            "num_queries",
            lambda c: c.get("num_queries", 100),
            lambda m: m.head.num_queries,
            lambda v: f"head.num_queries={v}",
        ),
        ConfigEntry(
            "decoder_layers (the initial prediction + decoder layers)",
            lambda c: c.get("decoder_layers", 10) - 1,
            lambda m: len(m.head.transformer_decoder.layers),
            lambda v: f"head.transformer_decoder.num_layers={v}",
        ),
        ConfigEntry(
            "encoder_layers",
            lambda c: c.get("encoder_layers", 6),
            lambda m: len(m.head.pixel_decoder.encoder.layers),
            lambda v: f"head.pixel_decoder.encoder.num_layers={v}",
        ),
        ConfigEntry(
            "num_attention_heads (pixel decoder, cross-, self-attention)",
            lambda c: (c.get("num_attention_heads", 8),) * 3,
            _heads,
            lambda v: (
                f"num_heads={v[0]} in the pixel decoder's DeformableMemoryAttention and "
                "the decoder layer's cross_attn / self_attn"
            ),
        ),
        ConfigEntry(
            "activation_function",
            lambda c: c.get("activation_function", "relu"),
            _decoder_act,
            lambda v: f"act_layer={v!r} in the decoder layer's ffn",
        ),
        ConfigEntry(
            "pre_norm",
            lambda c: c.get("pre_norm", False),
            lambda m: False,
            lambda v: "(nothing: pre-norm decoder layers are not implemented, only post-norm)",
        ),
        ConfigEntry(
            "enforce_input_projection",
            lambda c: (
                bool(c.get("enforce_input_projection", False))
                or c.get("feature_size", 256) != c.get("hidden_dim", 256)
            ),
            lambda m: False,
            lambda v: "(nothing: the decoder's input projections are not implemented)",
        ),
        ConfigEntry(
            "common_stride (the mask features' stride)",
            lambda c: c.get("common_stride", 4),
            lambda m: min(m.head.pixel_decoder.strides.values()),
            lambda v: f"head.pixel_decoder in_channels / strides down to stride {v}",
        ),
        ConfigEntry(
            "sine positions (temperature, normalize) of the pixel decoder and the decoder",
            lambda c: ((10000, True), (10000, True)),
            _pos,
            lambda v: (
                "positional_encoding=dict(type='SinePositionalEncoding', "
                "temperature=10000, normalize=True) in the head and its pixel_decoder"
            ),
        ),
        ConfigEntry(
            "level embedding added to the decoder's features",
            lambda c: "feats",
            lambda m: m.head.level_embed_on,
            lambda v: f"head.level_embed_on={v!r}",
        ),
        ConfigEntry(
            "padding treated as image content",
            lambda c: False,
            lambda m: m.head.mask_padding,
            lambda v: f"head.mask_padding={v}",
        ),
        ConfigEntry(
            "backbone windows (HF SwinBackbone partitions every stage)",
            lambda c: True,
            lambda m: getattr(m.backbone, "always_partition", True),
            lambda v: f"backbone.always_partition={v}",
        ),
    ]
}


def _check_classes(sd: Mapping[str, torch.Tensor], model, config: Mapping | None) -> None:
    """Refuse a class head of another size, naming both fixes."""
    weight = sd.get("class_predictor.weight")
    if weight is None:
        return
    have = model.head.num_classes
    if weight.shape[0] - 1 != have:
        names = (config or {}).get("id2label") or {}
        shown = f" (config.json id2label: {len(names)} names)" if names else ""
        raise CheckpointError(
            f"the checkpoint's classifier has {weight.shape[0] - 1} classes + 'no object'"
            f"{shown}, the model {have} (num_things_classes={model.head.num_things} + "
            f"num_stuff_classes={model.head.num_stuff}): set num_things_classes + "
            f"num_stuff_classes to {weight.shape[0] - 1} to use the published classes; to "
            "fine-tune on other classes, set model.backbone.pretrained to the folder "
            "(backbone only) or drop class_predictor.* from the state dict first"
        )


# ------------------------------------------------------------------ conversion
def _rename(name: str) -> str:
    for pattern, repl in _RENAMES:
        name = re.sub(pattern, repl, name)
    return name


def convert_mask2former_checkpoint(
    sd: Mapping[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """HF or original Mask2Former state dict -> ``model``'s layout (see the module doc).

    ``config``: the HF ``config.json`` (or None): settings the weights do not show (heads,
    activation, layer norms' placement, positions, windows) are compared with the model, its
    ``backbone_config`` by the backbone's converter; a difference is refused naming the
    argument to set."""
    if not is_mask2former_checkpoint(sd):
        raise CheckpointError(
            "not a Mask2Former checkpoint (no model.pixel_level_module.* / "
            "sem_seg_head.pixel_decoder.*)"
        )
    fmt, ignored = "Hugging Face Mask2Former", []
    if is_original_mask2former_checkpoint(sd):
        fmt = "original (facebookresearch) Mask2Former"
        hf, official, ignored = original_to_hf(sd)
        sd = {**hf, **{_BACKBONE + k: v for k, v in official.items()}}
    notes = check_hf_config(config, model, _HF_CONFIG)
    _check_classes(sd, model, config)
    backbone = {k[len(_BACKBONE) :]: v for k, v in sd.items() if k.startswith(_BACKBONE)}
    unused = [k for k in backbone if k.startswith("swin.layernorm.")]  # HF's unused final norm
    backbone = {k: v for k, v in backbone.items() if k not in unused}
    converted = model.backbone.convert_checkpoint(backbone, (config or {}).get("backbone_config"))
    out = {f"backbone.{k}": v for k, v in converted.state_dict.items()}
    ignored += [_BACKBONE + k for k in (*unused, *converted.ignored)]
    notes += converted.notes
    num_fpn = len(model.head.pixel_decoder.fpn_names)
    for name, tensor in sd.items():
        if name.startswith(_BACKBONE):
            continue
        if _IGNORED.match(name):
            ignored.append(name)
            continue
        if m := _FPN.match(name):  # HF counts the FPN levels fine to coarse, 1-based
            kind = "lateral_convs" if m[1] == "adapter" else "output_convs"
            out[f"head.pixel_decoder.{kind}.{num_fpn - int(m[2])}.{m[3]}.{m[4]}"] = tensor
            continue
        new = _rename(name)
        if ".cross_attn.in_proj_" in new:
            out.update(split_in_proj(new, tensor))
            continue
        out[new] = tensor
    return ConvertedCheckpoint(out, fmt, ignored, notes)


register_family(
    PublishedFamily(
        "mask2former",
        lambda sd, config: is_mask2former_checkpoint(sd),
        convert_mask2former_checkpoint,
        mask2former_model_config,
    )
)
