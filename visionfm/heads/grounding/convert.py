"""Published Grounding DINO weights -> our ``TaskModel`` (Swin / any backbone, text encoder,
:class:`GroundingDINOHead`).

Reads Hugging Face transformers' ``GroundingDinoForObjectDetection`` and
``MMGroundingDinoForObjectDetection`` layouts (a folder as ``save_pretrained`` writes it, e.g.
IDEA-Research/grounding-dino-tiny: Swin-T + BERT-base, or its ``model.safetensors``):

=========================================================  ==================================
HF                                                         ours
=========================================================  ==================================
``model.backbone.conv_encoder.model.*``                    ``backbone.*`` (the backbone's own
                                                           converter: HF Swin names)
``model.text_backbone.*`` / ``model.text_projection``     ``text_encoder.model.*`` / ``.proj``
``model.input_proj_vision.{i}.{0,1}``                      ``head.input_proj`` convs + norms
``model.encoder.layers.{i}.fusion_layer``                  ``...layers.{i}.fusion``
``... .text_enhancer_layer`` / ``.deformable_layer``       ``.text_layer`` / ``.image_layer``
``model.decoder.layers.{i}`` (self, text, image, FFN)      ``head.decoder.layers.{i}``
``model.enc_output(_norm)``, ``encoder_output_bbox_embed``  ``head.proposals``
``bbox_embed.{i}`` (tied to ``model.decoder.bbox_embed``)   ``head.box_heads``
``class_embed.{i}.bias`` (MM-Grounding-DINO only)           ``head.cls_heads.{i}.bias``
=========================================================  ==================================

The original IDEA-Research checkpoint (``groundingdino_swint_ogc.pth``: ``bert.*``,
``feat_map``, ``transformer.*``, ``backbone.0.*`` in the official Swin layout, fused
``in_proj`` attention weights) is read too: renamed into the HF layout
(:func:`original_to_hf`) and converted as above, its Swin by the Swin converter.

The model must be built to match: ``share_pred_heads`` as the checkpoint's
``decoder_bbox_embed_share``, ``contrastive_scaled=False, contrastive_bias=False`` for the
original Grounding DINO (True / True for MM-Grounding-DINO), the decoder's
``refine_from='raw'``, sine positions with temperature 20; a mismatch is refused by the
load, naming the argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from visionfm.models.published import PublishedFamily, register_family
from visionfm.weights import (
    ArchHint,
    CheckpointError,
    ConfigEntry,
    ConvertedCheckpoint,
    check_hf_config,
    put_tied,
    split_in_proj,
)

__all__ = [
    "convert_grounding_dino_checkpoint",
    "is_grounding_dino_checkpoint",
    "is_original_grounding_dino_checkpoint",
    "original_to_hf",
]

_BACKBONE = "model.backbone.conv_encoder.model."
_TEXT = "model.text_backbone."

_ATTN = [(r"\.query\.", ".q_proj."), (r"\.key\.", ".k_proj."), (r"\.value\.", ".v_proj.")]
_FFN = [(r"\.fc1\.", ".ffn.net.0."), (r"\.fc2\.", ".ffn.net.3.")]

# (pattern, replacement) applied in order to the non-backbone, non-text keys
_RENAMES = [
    (r"^model\.level_embed$", "head.level_embed"),
    (r"^model\.query_position_embeddings\.", "head.queries.content."),
    (r"^model\.text_projection\.", "text_encoder.proj."),
    (r"^model\.enc_output\.", "head.proposals.proj."),
    (r"^model\.enc_output_norm\.", "head.proposals.norm."),
    (r"^model\.encoder_output_bbox_embed\.", "head.proposals.box_head."),
    (r"^model\.encoder_output_class_embed\.", "head.proposals.cls_head."),
    (r"^model\.decoder\.layer_norm\.", "head.decoder.norm."),
    (r"^model\.decoder\.reference_points_head\.", "head.decoder.ref_point_head."),
    (r"^class_embed\.(\d+)\.", r"head.cls_heads.\1."),
    # encoder: fusion
    (r"^model\.encoder\.layers\.(\d+)\.fusion_layer\.", r"head.encoder.layers.\1.fusion."),
    (r"\.fusion\.vision_param$", ".fusion.image_scale.gamma"),
    (r"\.fusion\.text_param$", ".fusion.text_scale.gamma"),
    (r"\.fusion\.layer_norm_vision\.", ".fusion.image_norm."),
    (r"\.fusion\.layer_norm_text\.", ".fusion.text_norm."),
    (r"\.fusion\.attn\.vision_proj\.", ".fusion.image_proj."),
    (r"\.fusion\.attn\.text_proj\.", ".fusion.text_proj."),
    (r"\.fusion\.attn\.values_vision_proj\.", ".fusion.image_value."),
    (r"\.fusion\.attn\.values_text_proj\.", ".fusion.text_value."),
    (r"\.fusion\.attn\.out_vision_proj\.", ".fusion.image_out."),
    (r"\.fusion\.attn\.out_text_proj\.", ".fusion.text_out."),
    # encoder: text layer
    (
        r"^model\.encoder\.layers\.(\d+)\.text_enhancer_layer\.",
        r"head.encoder.layers.\1.text_layer.",
    ),
    (r"\.text_layer\.layer_norm_before\.", ".text_layer.norm1."),
    (r"\.text_layer\.layer_norm_after\.", ".text_layer.norm2."),
    # encoder: image layer
    (r"^model\.encoder\.layers\.(\d+)\.deformable_layer\.", r"head.encoder.layers.\1.image_layer."),
    (r"\.image_layer\.self_attn\.", ".image_layer.self_attn.attn."),
    (r"\.image_layer\.self_attn_layer_norm\.", ".image_layer.norm1."),
    (r"\.image_layer\.final_layer_norm\.", ".image_layer.norm2."),
    # decoder layers
    (r"^model\.decoder\.layers\.(\d+)\.", r"head.decoder.layers.\1."),
    (r"(decoder\.layers\.\d+)\.self_attn_layer_norm\.", r"\1.norm1."),
    (r"(decoder\.layers\.\d+)\.encoder_attn_text_layer_norm\.", r"\1.norm2."),
    (r"(decoder\.layers\.\d+)\.encoder_attn_layer_norm\.", r"\1.norm3."),
    (r"(decoder\.layers\.\d+)\.final_layer_norm\.", r"\1.norm4."),
    (r"(decoder\.layers\.\d+)\.encoder_attn_text\.", r"\1.text_cross_attn."),
    (r"(decoder\.layers\.\d+)\.encoder_attn\.", r"\1.cross_attn.attn."),
]
_INPUT_PROJ = re.compile(r"^model\.input_proj_vision\.(\d+)\.([01])\.(weight|bias)$")
_BOX = re.compile(r"^(?:model\.decoder\.)?bbox_embed\.(\d+)\.(.*)$")

_HINTS = (
    ArchHint(
        r"^head\.cls_heads\.\d+\.bias$",
        "a contrastive bias (MM-Grounding-DINO)",
        "contrastive_bias=True, contrastive_scaled=True",
        "contrastive_bias=False",
    ),
    ArchHint(
        r"^head\.box_heads\.[1-9]",
        "one box head per decoder layer",
        "share_pred_heads=False",
        "share_pred_heads=True",
    ),
)


def _contrastive(model) -> tuple[bool, bool]:
    head = model.head.cls_heads[0]
    return head.scale != 1.0, head.bias is not None


def _partitions(model) -> bool:
    return getattr(model.backbone, "always_partition", True)


_ENTRIES = [
    ConfigEntry(
        "positional_embedding_temperature",
        lambda c: c.get("positional_embedding_temperature", 20),
        lambda m: m.head.positional_encoding.temperature,
        lambda v: (
            f"head.positional_encoding=dict(type='SinePositionalEncoding', temperature={v}, ...)"
        ),
    ),
    ConfigEntry(
        "num_queries",
        lambda c: c.get("num_queries", 900),
        lambda m: m.head.num_queries,
        lambda v: f"head.num_queries={v}",
    ),
    ConfigEntry(
        "decoder_bbox_embed_share",
        lambda c: c.get("decoder_bbox_embed_share", True),
        lambda m: len(m.head.box_heads) == 1,
        lambda v: f"head.share_pred_heads={v}",
    ),
    ConfigEntry(
        "max_text_len",
        lambda c: c.get("max_text_len", 256),
        lambda m: m.text_encoder.max_tokens,
        lambda v: f"text_encoder.max_tokens={v}",
    ),
    ConfigEntry(
        "box refinement from the raw decoder output",
        lambda c: "raw",
        lambda m: m.head.decoder.refine_from,
        lambda v: f"head.decoder.refine_from={v!r}",
    ),
    ConfigEntry(
        "two-stage selection among border / padding tokens too",
        lambda c: True,
        lambda m: m.head.proposals.select_invalid,
        lambda v: f"head.select_invalid_proposals={v}",
    ),
    ConfigEntry(
        "backbone windows (HF SwinBackbone partitions every stage)",
        lambda c: True,
        _partitions,
        lambda v: f"backbone.always_partition={v}",
    ),
]
_HF_CONFIG = {
    "grounding-dino": [
        *_ENTRIES,
        ConfigEntry(
            "contrastive class head (scaled, bias)",
            lambda c: (False, False),
            _contrastive,
            lambda v: "head.contrastive_scaled=False, head.contrastive_bias=False",
        ),
    ],
    "mm-grounding-dino": [
        *_ENTRIES,
        ConfigEntry(
            "contrastive class head (scaled, bias)",
            lambda c: (True, True),
            _contrastive,
            lambda v: "head.contrastive_scaled=True, head.contrastive_bias=True",
        ),
    ],
}


_ORIGINAL_RENAMES = [  # (pattern, replacement), first match wins (HF's conversion names)
    (r"^bert\.", "model.text_backbone."),
    (r"^feat_map\.", "model.text_projection."),
    (r"^input_proj\.", "model.input_proj_vision."),
    (r"^transformer\.level_embed$", "model.level_embed"),
    (r"^transformer\.tgt_embed\.", "model.query_position_embeddings."),
    (r"^transformer\.enc_output(_norm)?\.", r"model.enc_output\1."),
    (r"^transformer\.enc_out_bbox_embed\.", "model.encoder_output_bbox_embed."),
    (r"^transformer\.decoder\.norm\.", "model.decoder.layer_norm."),
    (r"^transformer\.decoder\.ref_point_head\.", "model.decoder.reference_points_head."),
    (r"^transformer\.decoder\.bbox_embed\.", "model.decoder.bbox_embed."),
    (r"^bbox_embed\.", "bbox_embed."),
]
_ORIGINAL_LAYERS = {  # per-layer names: original -> HF, under each layer's prefix
    "transformer.encoder.layers": ("model.encoder.layers", "deformable_layer.", {
        "norm1.": "self_attn_layer_norm.", "linear1.": "fc1.", "linear2.": "fc2.",
        "norm2.": "final_layer_norm.", "self_attn.": "self_attn.",
    }),
    "transformer.encoder.text_layers": ("model.encoder.layers", "text_enhancer_layer.", {
        "norm1.": "layer_norm_before.", "norm2.": "layer_norm_after.", "linear1.": "fc1.",
        "linear2.": "fc2.", "self_attn.": "self_attn.",
    }),
    "transformer.encoder.fusion_layers": ("model.encoder.layers", "fusion_layer.", {
        "gamma_v": "vision_param", "gamma_l": "text_param",
        "layer_norm_v.": "layer_norm_vision.", "layer_norm_l.": "layer_norm_text.",
        "attn.v_proj.": "attn.vision_proj.", "attn.l_proj.": "attn.text_proj.",
        "attn.values_v_proj.": "attn.values_vision_proj.",
        "attn.values_l_proj.": "attn.values_text_proj.",
        "attn.out_v_proj.": "attn.out_vision_proj.", "attn.out_l_proj.": "attn.out_text_proj.",
    }),
    "transformer.decoder.layers": ("model.decoder.layers", "", {
        "cross_attn.": "encoder_attn.", "norm1.": "encoder_attn_layer_norm.",
        "ca_text.": "encoder_attn_text.", "catext_norm.": "encoder_attn_text_layer_norm.",
        "self_attn.": "self_attn.", "norm2.": "self_attn_layer_norm.", "linear1.": "fc1.",
        "linear2.": "fc2.", "norm3.": "final_layer_norm.",
    }),
}  # fmt: skip
# parameter-free or unused parts of the original model
_ORIGINAL_IGNORED = re.compile(
    r"^(bert\.pooler\.|bert\.embeddings\.position_ids$|class_embed\.|"
    r"transformer\.enc_out_class_embed\.|transformer\.decoder\.class_embed\.)"
)


def original_to_hf(sd: Mapping[str, torch.Tensor]) -> tuple[dict, dict, list[str]]:
    """The original repo's state dict -> (HF-layout non-backbone tensors, the backbone's
    tensors without ``backbone.0.``, ignored names)."""
    hf, backbone, ignored = {}, {}, []
    for name, tensor in sd.items():
        if name.startswith("backbone.0."):
            backbone[name[len("backbone.0.") :]] = tensor
            continue
        if _ORIGINAL_IGNORED.match(name):
            ignored.append(name)
            continue
        hit = re.match(r"^(transformer\.(?:encoder|decoder)\.\w+)\.(\d+)\.(.*)$", name)
        if hit and hit[1] in _ORIGINAL_LAYERS:
            target, sub, table = _ORIGINAL_LAYERS[hit[1]]
            rest = next((new + hit[3][len(old) :] for old, new in table.items()
                         if hit[3].startswith(old)), None)  # fmt: skip
            if rest is None:
                raise CheckpointError(f"{name}: not a Grounding DINO parameter this reader knows")
            new = f"{target}.{hit[2]}.{sub}{rest}"
        else:
            new = next(
                (re.sub(p, r, name) for p, r in _ORIGINAL_RENAMES if re.match(p, name)), None
            )
            if new is None:
                raise CheckpointError(f"{name}: not a Grounding DINO parameter this reader knows")
        if ".in_proj_" in new:  # HF's names of the q / k / v rows
            hf.update(split_in_proj(new, tensor, ("query", "key", "value")))
        else:
            hf[new] = tensor
    return hf, backbone, ignored


def is_original_grounding_dino_checkpoint(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` is in the IDEA-Research repo's layout."""
    return any(k.startswith("bert.") for k in sd) and any(
        k.startswith("transformer.encoder.fusion_layers.") for k in sd
    )


def is_grounding_dino_checkpoint(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` is in the HF (MM-)Grounding-DINO layout."""
    hf = any(k.startswith(_TEXT) for k in sd) and any(
        k.startswith("model.encoder.layers.") and ".fusion_layer." in k for k in sd
    )
    return hf or is_original_grounding_dino_checkpoint(sd)


def _rename(name: str) -> str:
    for pattern, repl in _RENAMES:
        name = re.sub(pattern, repl, name)
    if ".fc1." in name or ".fc2." in name:
        for pattern, repl in _FFN:
            name = re.sub(pattern, repl, name)
    if re.search(r"(self_attn|text_cross_attn)\.(query|key|value)\.", name):
        for pattern, repl in _ATTN:
            name = re.sub(pattern, repl, name)
    return name


def _input_proj(model, level: int, part: str, kind: str) -> str:
    """``model.input_proj_vision.{level}.{0 conv | 1 norm}`` -> our ChannelMapper's key."""
    num_in = len(model.head.input_proj.convs)
    if level < num_in:
        return f"head.input_proj.convs.{level}.{part}.{kind}"
    return f"head.input_proj.extra_convs.{level - num_in}.{part}.{kind}"


def convert_grounding_dino_checkpoint(
    sd: Mapping[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """HF (MM-)Grounding-DINO state dict -> ``model``'s layout (see the module doc).

    ``config``: the HF ``config.json`` (:func:`visionfm.weights.read_hf_config`): settings the
    weights do not show (position temperature, box sharing, the contrastive head's form, the
    backbone's windows) are compared with the model, its ``backbone_config`` by the
    backbone's converter; a difference is refused naming the argument to set."""
    if not is_grounding_dino_checkpoint(sd):
        raise CheckpointError(
            "not a Hugging Face Grounding DINO checkpoint (no model.text_backbone.* / fusion layers)"
        )
    notes = check_hf_config(config, model, _HF_CONFIG)
    fmt, ignored = "Hugging Face Grounding DINO", []
    if is_original_grounding_dino_checkpoint(sd):
        fmt = "original (IDEA-Research) Grounding DINO"
        hf, official, ignored = original_to_hf(sd)
        sd = {**hf, **{_BACKBONE + k: v for k, v in official.items()}}
    backbone = {k[len(_BACKBONE) :]: v for k, v in sd.items() if k.startswith(_BACKBONE)}
    # HF's SwinBackbone keeps an unused final norm (``swin.layernorm``, ignored by HF too)
    unused = [k for k in backbone if k.startswith("swin.layernorm.")]
    backbone = {k: v for k, v in backbone.items() if k not in unused}
    converted = model.backbone.convert_checkpoint(backbone, (config or {}).get("backbone_config"))
    out = {f"backbone.{k}": v for k, v in converted.state_dict.items()}
    ignored += [_BACKBONE + k for k in (*unused, *converted.ignored)]
    notes += converted.notes
    for name, tensor in sd.items():
        if name.startswith(_BACKBONE):
            continue
        if name.startswith(_TEXT):
            out["text_encoder.model." + name[len(_TEXT) :]] = tensor
            continue
        m = _INPUT_PROJ.match(name)
        if m:
            out[_input_proj(model, int(m.group(1)), m.group(2), m.group(3))] = tensor
            continue
        m = _BOX.match(name)
        if m:  # the decoder's copy and the head's are one module (tied)
            key = f"head.box_heads.{m.group(1)}.{m.group(2)}"
            put_tied(out, key, tensor, name, f"({key})")
            continue
        out[_rename(name)] = tensor
    denoising = getattr(model.head, "denoising", None)
    if denoising is not None:  # training-only: published checkpoints have none
        out["head.denoising.label_embed.weight"] = denoising.label_embed.weight.detach().clone()
        notes.append("the denoising label embedding (training only) keeps its initial values")
    return ConvertedCheckpoint(out, fmt, ignored, notes, _HINTS)


register_family(
    PublishedFamily(
        "grounding_dino",
        lambda sd, config: is_grounding_dino_checkpoint(sd),
        convert_grounding_dino_checkpoint,
    )
)
