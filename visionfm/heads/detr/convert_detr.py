"""Published DETR weights -> our ``TaskModel`` (:class:`~visionfm.backbones.TimmBackbone`
ResNet with frozen batch norms + :class:`DETRHead` with DETR's softmax classification).

Reads Hugging Face transformers' ``DetrForObjectDetection`` with a timm ResNet (a
``save_pretrained`` folder or its ``model.safetensors`` with ``config.json``:
facebook/detr-resnet-50, -101, -dc5) and the original repository's checkpoints
(facebookresearch/detr ``detr-r50-e632da11.pth`` ..., torch-saved ``{"model": ...}``, maybe
with ``"args"``):

=================================================  ==========================================
HF (original)                                      ours
=================================================  ==========================================
``model.backbone.conv_encoder.model.*``            ``backbone.*`` (``convert_common``)
(``backbone.0.body.*``)
``model.input_projection`` (``input_proj``)        ``head.input_proj.convs.0.0``
``model.query_position_embeddings``                ``head.queries.content``
(``query_embed``)
``model.encoder.layers.{i}``: ``self_attn``,       ``head.encoder.layers.{i}``:
``self_attn_layer_norm``, ``fc1`` / ``fc2``,       ``self_attn.attn``, ``norm1``,
``final_layer_norm`` (``self_attn`` fused          ``ffn.net.{0,3}``, ``norm2``
``in_proj``, ``norm1``, ``linear1/2``, ``norm2``)
``model.decoder.layers.{i}``: ``self_attn``,       ``head.decoder.layers.{i}``:
``self_attn_layer_norm``, ``encoder_attn``,        ``self_attn``, ``norm1``,
``encoder_attn_layer_norm``, ``fc1/2``,            ``cross_attn.attn``, ``norm2``, ``ffn``,
``final_layer_norm`` (``self_attn``,               ``norm3``
``norm1``, ``multihead_attn``, ``norm2``,
``linear1/2``, ``norm3``)
``model.decoder.layernorm``                        ``head.decoder.norm``
(``transformer.decoder.norm``)
``class_labels_classifier`` (``class_embed``)      ``head.cls_heads.0`` (``num_classes + 1``)
``bbox_predictor.layers.{j}``                      ``head.box_heads.0.layers.{j}``
(``bbox_embed.layers.{j}``)
=================================================  ==========================================

The published COCO weights' 92 class rows (the 91 COCO category ids of HF's ``id2label`` and
"no object") also load into a model of COCO's 80 categories (``CocoDataset``'s numbering):
those categories' rows and "no object" are taken (the softmax then leaves out the unused
ids' logits: scores are renormalised over the rest).

transformers >= 5 keeps other names in memory (``o_proj``, ``mlp.fc1``,
``model.backbone.model.``): a state dict taken from such a model is read as well.

The model must be built to match (:func:`detr_model_config` builds it from the checkpoint):
``classification='softmax'`` (head and matcher), a biased 1x1 input projection without norm
(``input_norm=None``), normalised sine positions (offset 0, temperature 10000), a decoder
LayerNorm on every layer's output, a timm ResNet (``frozen_bn=True``: HF's
``DetrFrozenBatchNorm2d`` with eps 1e-5, timm's ``FrozenBatchNorm2d`` with the same eps and
arithmetic; a model with plain batch norms gives the same outputs in eval mode). Sizes,
heads and these settings are compared with the model before loading, from ``config.json``
or, for an original checkpoint, its ``args`` and tensor shapes (8 heads, the repository's
default, without ``args``); a difference is refused naming the argument to set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from visionfm.models.published import PublishedFamily, register_family
from visionfm.models.published_config import COCO_CATEGORY_NAMES
from visionfm.weights import CheckpointError, ConfigEntry, ConvertedCheckpoint, check_hf_config

from .convert_common import (
    RESNETS,
    backbone_prefix,
    convert_backbone,
    is_coco_category_rows,
    sine_positions,
)
from .convert_common import original_to_hf as rename_original
from .detr_config import detr_model

__all__ = [
    "convert_detr_checkpoint",
    "detr_model_config",
    "is_detr_checkpoint",
    "original_to_hf",
]

_CLASSIFIER = "class_labels_classifier.weight"
_QUERIES = "model.query_position_embeddings.weight"
_LAYER_PARTS = r"(self_attn|encoder_attn|self_attn_layer_norm|encoder_attn_layer_norm|final_layer_norm|fc1|fc2|mlp)"  # fmt: skip
_HF_KEY = re.compile(
    r"^(model\.backbone\.(conv_encoder\.)?model\.|model\.input_projection\.|"
    r"model\.query_position_embeddings\.|model\.decoder\.layernorm\.|class_labels_classifier\.|"
    rf"bbox_predictor\.layers\.\d+\.|model\.(en|de)coder\.layers\.\d+\.{_LAYER_PARTS}\.)"
)
_ORIGINAL_KEY = re.compile(
    r"^(backbone\.0\.body\.|input_proj\.|query_embed\.|class_embed\.(weight|bias)$|"
    r"bbox_embed\.layers\.\d+\.|transformer\.decoder\.norm\.|transformer\.(en|de)coder\.layers"
    r"\.\d+\.(self_attn|multihead_attn|linear1|linear2|norm1|norm2|norm3)\.)"
)

_ORIGINAL_RENAMES = [  # original repo -> HF names (HF's conversion), first match wins
    (r"^input_proj\.", "model.input_projection."),
    (r"^query_embed\.", "model.query_position_embeddings."),
    (r"^transformer\.decoder\.norm\.", "model.decoder.layernorm."),
    (r"^class_embed\.", "class_labels_classifier."),
    (r"^bbox_embed\.", "bbox_predictor."),
]
_ORIGINAL_LAYERS = {  # per-layer names: original -> HF
    "encoder": {"self_attn.": "self_attn.", "norm1.": "self_attn_layer_norm.",
                "linear1.": "fc1.", "linear2.": "fc2.", "norm2.": "final_layer_norm."},
    "decoder": {"self_attn.": "self_attn.", "norm1.": "self_attn_layer_norm.",
                "multihead_attn.": "encoder_attn.", "norm2.": "encoder_attn_layer_norm.",
                "linear1.": "fc1.", "linear2.": "fc2.", "norm3.": "final_layer_norm."},
}  # fmt: skip
_IN_MEMORY = [(r"\.mlp\.fc([12])\.", r".fc\1."), (r"\.o_proj\.", ".out_proj.")]  # transformers 5
_LAYERS = {  # HF per-layer names -> ours, first match wins
    "encoder": {"self_attn_layer_norm.": "norm1.", "self_attn.": "self_attn.attn.",
                "fc1.": "ffn.net.0.", "fc2.": "ffn.net.3.", "final_layer_norm.": "norm2."},
    "decoder": {"self_attn_layer_norm.": "norm1.", "self_attn.": "self_attn.",
                "encoder_attn_layer_norm.": "norm2.", "encoder_attn.": "cross_attn.attn.",
                "fc1.": "ffn.net.0.", "fc2.": "ffn.net.3.", "final_layer_norm.": "norm3."},
}  # fmt: skip
_RENAMES = [  # HF names outside the layers and the backbone -> ours
    (r"^model\.input_projection\.", "head.input_proj.convs.0.0."),
    (r"^model\.query_position_embeddings\.", "head.queries.content."),
    (r"^model\.decoder\.layernorm\.", "head.decoder.norm."),
    (r"^class_labels_classifier\.", "head.cls_heads.0."),
    (r"^bbox_predictor\.", "head.box_heads.0."),
]


# ---------------------------------------------------------------- layouts
def is_original_detr_checkpoint(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` is in the facebookresearch/detr layout (and nothing else: Conditional /
    DAB / Deformable DETR and the panoptic model have keys of their own)."""
    return (
        "class_embed.weight" in sd
        and "transformer.decoder.norm.weight" in sd
        and all(_ORIGINAL_KEY.match(k) for k in sd)
    )


def is_detr_checkpoint(sd: Mapping[str, torch.Tensor], config: Mapping | None = None) -> bool:
    """Whether ``sd`` (with its ``config.json`` or None) is a DETR checkpoint: HF's
    ``DetrForObjectDetection`` layout (``model_type`` ``detr``) or the original one."""
    if config is not None and config.get("model_type") not in (None, "detr"):
        return False
    hf = _CLASSIFIER in sd and _QUERIES in sd and all(_HF_KEY.match(k) for k in sd)
    return hf or is_original_detr_checkpoint(sd)


def original_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original repo's state dict -> HF names (``convert_common.original_to_hf``)."""
    return rename_original(sd, _ORIGINAL_LAYERS, _ORIGINAL_RENAMES, "DETR")


def _hf_names(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any layout this module reads -> the HF file names (transformers 5's in-memory names
    and the original layout renamed; backbone keys kept)."""
    if is_original_detr_checkpoint(sd):
        return original_to_hf(sd)
    out = {}
    for name, tensor in sd.items():
        for pattern, repl in _IN_MEMORY:
            name = re.sub(pattern, repl, name)
        out[name] = tensor
    return out


def _rename(name: str) -> str:
    """An HF name (not the backbone's) -> ours; unknown names are left for the load to
    report."""
    if hit := re.match(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.*)$", name):
        side, index, rest = hit.groups()
        old = next((o for o in _LAYERS[side] if rest.startswith(o)), None)
        if old is not None:
            return f"head.{side}.layers.{index}.{_LAYERS[side][old]}{rest[len(old) :]}"
        return name
    return next((re.sub(p, r, name) for p, r in _RENAMES if re.match(p, name)), name)


# ---------------------------------------------------------------- architecture


def _resnet_name(hf: Mapping[str, torch.Tensor]) -> str:
    """The timm ResNet whose blocks the checkpoint's backbone has."""
    prefix = backbone_prefix(hf) or ""
    blocks = []
    for stage in range(1, 5):
        found = {int(m[1]) for k in hf if (m := re.match(rf"{re.escape(prefix)}layer{stage}\.(\d+)\.", k))}  # fmt: skip
        blocks.append(max(found, default=-1) + 1)
    key = (f"{prefix}layer1.0.conv3.weight" in hf, tuple(blocks))
    if key not in RESNETS:
        raise CheckpointError(
            f"the checkpoint's backbone (blocks per stage {key[1]}, bottleneck {key[0]}) is not "
            f"a ResNet this reader knows ({', '.join(RESNETS.values())})"
        )
    return RESNETS[key]


def _layers(hf: Mapping, side: str) -> tuple[int, int | None]:
    """(layers, FFN width of the first or None) of the encoder / decoder in HF names."""
    found = {int(m[1]) for k in hf if (m := re.match(rf"^model\.{side}\.layers\.(\d+)\.", k))}
    fc1 = hf.get(f"model.{side}.layers.0.fc1.weight")
    return max(found, default=-1) + 1, None if fc1 is None else fc1.shape[0]


def _settings(hf: Mapping, config: Mapping | None, args: Mapping | None) -> dict:
    """:func:`detr_model` arguments the weights do not show: from the ``config.json``, an
    original checkpoint's ``args`` (its ``main.py`` names), or the repository's defaults."""
    if config is None:
        get = (args or {}).get
        position = get("position_embedding", "sine")  # "v2" is sine too
        config = dict(
            backbone=get("backbone"), dilation=get("dilation", False),
            encoder_attention_heads=get("nheads", 8), decoder_attention_heads=get("nheads", 8),
            position_embedding_type="sine" if position in ("sine", "v2") else position,
            dropout=get("dropout", 0.1), attention_dropout=get("dropout", 0.1),  # the
            activation_dropout=get("dropout", 0.1),  # original nn.MultiheadAttention's too
            eos_coefficient=get("eos_coef", 0.1), class_cost=get("set_cost_class", 1.0),
            bbox_cost=get("set_cost_bbox", 5.0), giou_cost=get("set_cost_giou", 2.0),
            bbox_loss_coefficient=get("bbox_loss_coef", 5.0),
            giou_loss_coefficient=get("giou_loss_coef", 2.0),
        )  # fmt: skip
    sub = config.get("backbone_config") or {}
    where = config.get("_file", "the original checkpoint")
    timm = sub.get("model_type", "timm_backbone") == "timm_backbone"
    if not (timm and config.get("use_timm_backbone", True)):
        raise CheckpointError(f"{where}: a DETR with transformers' own ResNet, not timm's")
    if (position := config.get("position_embedding_type", "sine")) != "sine":
        raise CheckpointError(f"{where}: only DETR's sine positions are read, not {position!r}")
    get = config.get
    return dict(
        backbone=sub.get("backbone") or get("backbone") or _resnet_name(hf),
        dilation=bool(get("dilation") or sub.get("output_stride") == 16),
        encoder_heads=get("encoder_attention_heads", 8), decoder_heads=get("decoder_attention_heads", 8),
        act_layer=get("activation_function", "relu"), dropout=get("dropout", 0.1),
        attention_dropout=get("attention_dropout", 0.0), activation_dropout=get("activation_dropout", 0.0),
        no_object_weight=get("eos_coefficient", 0.1),
        costs=(get("class_cost", 1.0), get("bbox_cost", 5.0), get("giou_cost", 2.0)),
        loss_weights=(get("bbox_loss_coefficient", 5.0), get("giou_loss_coefficient", 2.0)),
    )  # fmt: skip


def _architecture(sd: Mapping, config: Mapping | None) -> dict:
    """A checkpoint's architecture as :func:`detr_model` arguments: sizes from the tensors,
    the rest from :func:`_settings`."""
    hf = _hf_names(sd)
    if _QUERIES not in hf or _CLASSIFIER not in hf:
        raise CheckpointError("not a DETR checkpoint: no query embeddings / class head")
    (encoder_layers, encoder_ffn), (decoder_layers, decoder_ffn) = (_layers(hf, "encoder"), _layers(hf, "decoder"))  # fmt: skip
    return dict(
        _settings(hf, config, getattr(sd, "args", None)),
        num_classes=hf[_CLASSIFIER].shape[0] - 1, embed_dims=hf[_QUERIES].shape[1],
        backbone_channels=hf["model.input_projection.weight"].shape[1],
        num_queries=hf[_QUERIES].shape[0], encoder_layers=encoder_layers,
        decoder_layers=decoder_layers, encoder_ffn_dims=encoder_ffn or 2048,
        decoder_ffn_dims=decoder_ffn or 2048,
    )  # fmt: skip


def _first(m, side: str, part: str):
    """A part of the first encoder / decoder layer, or None without layers."""
    layers = getattr(m.head, side).layers
    return getattr(layers[0], part) if len(layers) else None


def _heads(m, side: str) -> int | None:
    attn = _first(m, side, "self_attn")
    return None if attn is None else getattr(attn, "attn", attn).num_heads


def _ffn(m, side: str, read):
    ffn = _first(m, side, "ffn")
    return None if ffn is None else read(ffn.net)


def _entry(name: str, key: str, ours, argument, side: str | None = None) -> ConfigEntry:
    """A row comparing :func:`_architecture`'s ``key`` with the model (with ``side``: None
    when the encoder / decoder has no layers, as the model's is then)."""
    return ConfigEntry(name, lambda a: a[key] if side is None or a[f"{side}_layers"] else None, ours, argument)  # fmt: skip


_SOFTMAX = "head.classification='softmax', head.matcher=dict(type='HungarianMatcher', classification='softmax', ...)"  # fmt: skip
_ENTRIES = [  # the checkpoint's architecture (see _architecture) against the model's
    ConfigEntry("classification (softmax with a no-object class)", lambda a: "softmax",
                lambda m: m.head.classification, lambda v: _SOFTMAX),
    _entry("backbone", "backbone", lambda m: m.backbone.model_name, lambda v: f"backbone.model_name={v!r}"),
    _entry("dilation (DC5: output stride 16)", "dilation", lambda m: max(m.backbone.out_strides.values()) == 16,
           lambda v: "backbone.output_stride=16 (head levels at p4, stride 16)" if v else "no backbone.output_stride"),
    _entry("d_model", "embed_dims", lambda m: m.head.embed_dims, lambda v: f"head.embed_dims={v} (and in its layers)"),
    _entry("num_queries", "num_queries", lambda m: m.head.num_queries, lambda v: f"head.num_queries={v}"),
    _entry("encoder_layers", "encoder_layers", lambda m: len(m.head.encoder.layers), lambda v: f"head.encoder.num_layers={v}"),
    _entry("decoder_layers", "decoder_layers", lambda m: len(m.head.decoder.layers), lambda v: f"head.decoder.num_layers={v}"),
    _entry("encoder_ffn_dim", "encoder_ffn_dims", lambda m: _ffn(m, "encoder", lambda n: n[0].out_features),
           lambda v: f"head.encoder.layer.ffn.feedforward_dims={v}", "encoder"),
    _entry("decoder_ffn_dim", "decoder_ffn_dims", lambda m: _ffn(m, "decoder", lambda n: n[0].out_features),
           lambda v: f"head.decoder.layer.ffn.feedforward_dims={v}", "decoder"),
    _entry("encoder_attention_heads", "encoder_heads", lambda m: _heads(m, "encoder"),
           lambda v: f"num_heads={v} in head.encoder.layer.self_attn", "encoder"),
    _entry("decoder_attention_heads", "decoder_heads", lambda m: _heads(m, "decoder"),
           lambda v: f"num_heads={v} in head.decoder.layer.self_attn and .cross_attn", "decoder"),
    _entry("activation_function", "act_layer", lambda m: _ffn(m, "decoder", lambda n: type(n[1]).__name__.lower()),
           lambda v: f"act_layer={v!r} in the layers' ffn", "decoder"),
    ConfigEntry("positions (normalised sine, offset 0, temperature 10000)", lambda a: ("sine", True, 0.0, 10000.0),
                sine_positions, lambda v: "head.positional_encoding=dict(type='SinePositionalEncoding', num_feats=embed_dims // 2)"),
    ConfigEntry("input projection (a biased 1x1 conv, no norm)", lambda a: ("Conv2d",),
                lambda m: tuple(type(x).__name__ for x in m.head.input_proj.convs[0]), lambda v: "head.input_norm=None"),
    ConfigEntry("decoder norm of every layer's output", lambda a: "LayerNorm",
                lambda m: type(m.head.decoder.norm).__name__, lambda v: "head.decoder.norm_layer='LN_1e-5'"),
]  # fmt: skip


# ---------------------------------------------------------------- conversion
def convert_detr_checkpoint(
    sd: Mapping[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """HF or original DETR state dict -> ``model``'s layout (see the module doc).

    ``config``: the HF ``config.json`` (:func:`visionfm.weights.read_hf_config`) or None. The
    checkpoint's architecture (:func:`_architecture`) is compared with the model first; a
    difference is refused naming the argument to set."""
    if not is_detr_checkpoint(sd, config):
        raise CheckpointError("not a DETR checkpoint (HF DetrForObjectDetection or original)")
    original = is_original_detr_checkpoint(sd)
    where = "the checkpoint's tensors and " + (config.get("_file", "config.json") if config else (
        "args" if getattr(sd, "args", None) else "the original repository's defaults"))  # fmt: skip
    described = dict(_architecture(sd, config), model_type="detr", _file=where)
    notes = check_hf_config(described, model, {"detr": _ENTRIES})
    hf = _hf_names(sd)
    backbone_config = (config or {}).get("backbone_config")
    converted = convert_backbone(hf, model, backbone_config)
    out, ignored = dict(converted.state_dict), list(converted.ignored)
    notes += converted.notes
    prefix = backbone_prefix(hf)
    out.update({_rename(k): v for k, v in hf.items() if not k.startswith(prefix)})
    rows = out["head.cls_heads.0.weight"].shape[0] - 1  # without "no object"
    if is_coco_category_rows(rows, model.head.num_classes):
        keep = torch.tensor([*sorted(COCO_CATEGORY_NAMES), rows])  # the categories, no object
        for key in ("head.cls_heads.0.weight", "head.cls_heads.0.bias"):
            out[key] = out[key][keep]
        notes.append(
            "92 class rows (91 COCO category ids + no object) -> the 80 COCO categories' + no "
            "object: the softmax leaves out the 11 unused ids' logits (scores renormalised)"
        )
    if (config or {}).get("auxiliary_loss"):
        notes.append(
            "config.json sets auxiliary_loss: transformers 5 then feeds every decoder layer the "
            "previous one's normed output, the original DETR (and this model) the un-normed one"
        )
    fmt = "original (facebookresearch) DETR" if original else "Hugging Face DETR"
    return ConvertedCheckpoint(out, fmt, ignored, notes, converted.hints)


def detr_model_config(sd: Mapping[str, torch.Tensor], config: Mapping | None) -> dict:
    """Our ``model=`` dict for the checkpoint's architecture (:func:`_architecture`: its
    ``config.json``, or an original checkpoint's ``args`` and tensor shapes)."""
    return detr_model(**_architecture(sd, config))


register_family(
    PublishedFamily("detr", is_detr_checkpoint, convert_detr_checkpoint, detr_model_config)
)
