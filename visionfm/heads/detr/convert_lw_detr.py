"""Published LW-DETR and RF-DETR weights -> our ``TaskModel`` (ViT backbone, projector neck,
:class:`~visionfm.heads.detr.DETRHead` without an encoder).

Reads Hugging Face transformers' ``LwDetrForObjectDetection`` and ``RfDetrForObjectDetection``
layouts (a ``save_pretrained`` folder, e.g. AnnaZhang/lwdetr_small_60e_coco or
Roboflow/rf-detr-base, or its ``model.safetensors``):

=================================================  =========================================
HF                                                 ours
=================================================  =========================================
``model.backbone.backbone.*``                      ``backbone.*`` (the backbone's converter)
``model.backbone.projector.*``                     ``neck.*`` (the projector's converter)
``model.query_feat`` / ``model.reference_point_    ``head.queries.content`` / ``.anchors``
embed``                                            (``num_groups * num_queries`` rows)
``model.enc_output.{g}`` / ``enc_output_norm.{g}``  ``head.proposals.{g}.proj`` / ``.norm``
``model.enc_out_class_embed.{g}`` /                ``head.proposals.{g}.cls_head`` /
``enc_out_bbox_embed.{g}``                         ``.box_head`` (no ``.{g}`` for one group)
``model.decoder.layers.{i}``: ``self_attn``        ``head.decoder.layers.{i}``: ``self_attn``
(``o_proj``), ``self_attn_layer_norm``,            (``out_proj``), ``norm1``,
``cross_attn``, ``cross_attn_layer_norm``,         ``cross_attn.attn``, ``norm2``,
``mlp.fc1`` / ``fc2``, ``layer_norm``              ``ffn.net.0`` / ``.3``, ``norm3``
``model.decoder.layernorm`` / ``ref_point_head``   ``head.decoder.norm`` / ``ref_point_head``
``class_embed`` / ``bbox_embed``                   ``head.cls_heads.0`` / ``head.box_heads.0``
=================================================  =========================================

Those are the names of HF's modules. Files store other names, read first
(:func:`_stored_to_hf`): what ``save_pretrained`` writes and the hub folders hold (RF-DETR:
Roboflow's original prefix-free names, ``backbone.0.encoder.encoder.*``,
``backbone.0.projector.stages.0.*``, ``transformer.decoder.*`` with fused ``in_proj``,
``refpoint_embed``, ``query_feat``; both families' backbones with split attention names), so
Roboflow's own ``.pth`` files load too. A 91-row COCO-id checkpoint loads into COCO's 80
categories by their rows. The class count is not checked here: ``load_from`` re-initialises
the class layers of another count (fine-tuning), ``load_model_weights`` refuses it.

The architecture these checkpoints share (``lw_detr_config.lw_detr_model_config`` builds it
from the ``config.json``): no transformer encoder, no input projection
(``project_inputs=False``), the projector's levels as they are; two-stage mixed query
selection whose references are the top-k proposals moved by the learned
``reference_point_embed`` (``anchor_deltas=True``), boxes as ``bbox_reparam`` (the decoder's
``box_param='reparam'``), references not refined between decoder layers
(``with_box_refine=False``: one class head and one box head), query positions in the padded
frame (``query_pos_frame='padded'``), Group DETR with ``group_detr`` groups
(``num_groups``). A model built otherwise is refused naming the argument to set.
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

from .convert_common import is_coco_category_rows, to_coco_categories
from .lw_detr_config import lw_detr_model_config

__all__ = ["convert_head", "convert_lw_detr_checkpoint", "is_lw_detr_checkpoint"]

_BACKBONE = "model.backbone.backbone."
_PROJECTOR = "model.backbone.projector."
_MODEL_TYPES = ("lw_detr", "rf_detr")

# (pattern, replacement) applied in order to the decoder / query / prediction keys
_RENAMES = [
    (r"^model\.query_feat\.", "head.queries.content."),
    (r"^model\.reference_point_embed\.", "head.queries.anchors."),
    (r"^model\.decoder\.layernorm\.", "head.decoder.norm."),
    (r"^model\.decoder\.ref_point_head\.", "head.decoder.ref_point_head."),
    (r"^model\.decoder\.layers\.(\d+)\.", r"head.decoder.layers.\1."),
    (r"\.self_attn\.o_proj\.", ".self_attn.out_proj."),
    (r"\.self_attn_layer_norm\.", ".norm1."),
    (r"\.cross_attn\.", ".cross_attn.attn."),
    (r"\.cross_attn_layer_norm\.", ".norm2."),
    (r"\.mlp\.fc1\.", ".ffn.net.0."),
    (r"\.mlp\.fc2\.", ".ffn.net.3."),
    (r"(decoder\.layers\.\d+)\.layer_norm\.", r"\1.norm3."),
    (r"^class_embed\.", "head.cls_heads.0."),
    (r"^bbox_embed\.", "head.box_heads.0."),
]
_PROPOSAL = re.compile(
    r"^model\.(enc_output|enc_output_norm|enc_out_class_embed|enc_out_bbox_embed)\.(\d+)\.(.*)$"
)
_PROPOSAL_PARTS = {
    "enc_output": "proj",
    "enc_output_norm": "norm",
    "enc_out_class_embed": "cls_head",
    "enc_out_bbox_embed": "box_head",
}


# the files as published / written by save_pretrained: transformers renames these on load.
# Roboflow's original names (RF-DETR folders, prefix-free) -> HF's, first match wins
_ORIGINAL_RENAMES = [
    (r"^backbone\.0\.encoder\.encoder\.", _BACKBONE),
    (
        r"^backbone\.0\.projector\.stages\.0\.0\.cv(\d)\.bn\.",
        _PROJECTOR + r"projector_layer.conv\1.norm.",
    ),
    (
        r"^backbone\.0\.projector\.stages\.0\.0\.cv(\d)\.conv\.",
        _PROJECTOR + r"projector_layer.conv\1.conv.",
    ),
    (
        r"^backbone\.0\.projector\.stages\.0\.0\.m\.(\d+)\.cv(\d)\.bn\.",
        _PROJECTOR + r"projector_layer.bottlenecks.\1.conv\2.norm.",
    ),
    (
        r"^backbone\.0\.projector\.stages\.0\.0\.m\.(\d+)\.cv(\d)\.conv\.",
        _PROJECTOR + r"projector_layer.bottlenecks.\1.conv\2.conv.",
    ),
    (r"^backbone\.0\.projector\.stages\.0\.1\.", _PROJECTOR + "layer_norm."),
    (r"^transformer\.decoder\.norm\.", "model.decoder.layernorm."),
    (r"^transformer\.(decoder\.layers\.\d+)\.norm1\.", r"model.\1.self_attn_layer_norm."),
    (r"^transformer\.(decoder\.layers\.\d+)\.norm2\.", r"model.\1.cross_attn_layer_norm."),
    (r"^transformer\.(decoder\.layers\.\d+)\.norm3\.", r"model.\1.layer_norm."),
    (r"^transformer\.(decoder\.layers\.\d+)\.linear(\d)\.", r"model.\1.mlp.fc\2."),
    (r"^transformer\.(decoder\.layers\.\d+)\.self_attn\.out_proj\.", r"model.\1.self_attn.o_proj."),
    (r"^transformer\.", "model."),
    (r"^refpoint_embed\.", "model.reference_point_embed."),
    (r"^query_feat\.", "model.query_feat."),
]
# both families' backbones as stored (split self-attention names) -> HF's module names
_BACKBONE_RENAMES = [
    (r"\.attention\.attention\.(query|key|value)\.", None),
    (r"\.attention\.output\.dense\.", ".attention.o_proj."),
    (r"\.attention\.output\.", ".attention.o_proj."),
]
_QKV = {"query": "q_proj", "key": "k_proj", "value": "v_proj"}


def _stored_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The names of a stored checkpoint (HF folder or Roboflow's original file) -> the
    names of HF's modules, which :func:`convert_head` and the backbone converter read."""
    out = {}
    for name, tensor in sd.items():
        new = next((re.sub(p, r, name) for p, r in _ORIGINAL_RENAMES if re.match(p, name)), name)
        if new.startswith(_BACKBONE):
            new = re.sub(_BACKBONE_RENAMES[0][0], lambda m: f".attention.{_QKV[m[1]]}.", new)
            for pattern, repl in _BACKBONE_RENAMES[1:]:
                new = re.sub(pattern, repl, new)
        if new.endswith((".self_attn.in_proj_weight", ".self_attn.in_proj_bias")):
            out.update(split_in_proj(new, tensor))
            continue
        out[new] = tensor
    return out


def is_lw_detr_checkpoint(sd: Mapping[str, torch.Tensor], config: Mapping | None = None) -> bool:
    """Whether ``sd`` is an LW-DETR / RF-DETR checkpoint in HF's layout, as stored or as
    Roboflow's original (learned 4-d reference deltas and per-group proposal heads beside a
    projector; no other family has both)."""
    if config is not None and config.get("model_type") not in _MODEL_TYPES:
        return False
    hf = "model.reference_point_embed.weight" in sd and "model.enc_out_class_embed.0.weight" in sd
    original = "refpoint_embed.weight" in sd and "transformer.enc_out_class_embed.0.weight" in sd
    projector = any(k.startswith((_PROJECTOR, "backbone.0.projector.")) for k in sd)
    return (hf or original) and projector


def _groups(sd: Mapping[str, torch.Tensor]) -> int:
    return len({k.split(".")[2] for k in sd if k.startswith("model.enc_output.")})


def _decoder_layers(sd: Mapping[str, torch.Tensor]) -> int:
    found = {int(m[1]) for k in sd if (m := re.match(r"model\.decoder\.layers\.(\d+)\.", k))}
    return max(found, default=-1) + 1


def _rename(name: str) -> str:
    for pattern, repl in _RENAMES:
        name = re.sub(pattern, repl, name)
    return name


def _head_checks(model) -> dict:
    head = model.head
    return dict(
        encoder=head.encoder is None,
        project=head.input_proj is None,
        mode=head.queries.mode,
        param=head.decoder.box_param,
        refine=head.with_box_refine,
    )


_EXPECTED_HEAD = dict(
    encoder=True, project=True, mode="mixed_anchors", param="reparam", refine=False
)
_HEAD_ARGS = (
    "head.encoder=None, head.project_inputs=False, head.two_stage=True, "
    "head.mixed_query_selection=True, head.anchor_deltas=True, "
    "head.decoder.box_param='reparam', head.with_box_refine=False"
)

_ENTRIES = [
    ConfigEntry(
        "num_queries",
        lambda c: c.get("num_queries", 300),
        lambda m: m.head.num_queries,
        lambda v: f"head.num_queries={v}",
    ),
    ConfigEntry(
        "group_detr",
        lambda c: c.get("group_detr", 13),
        lambda m: m.head.num_groups,
        lambda v: f"head.num_groups={v}",
    ),
    ConfigEntry(
        "decoder_self_attention_heads",
        lambda c: c.get("decoder_self_attention_heads", 8),
        lambda m: m.head.decoder.layers[0].self_attn.num_heads,
        lambda v: f"head.decoder.layer.self_attn.num_heads={v}",
    ),
    ConfigEntry(
        "decoder_cross_attention_heads",
        lambda c: c.get("decoder_cross_attention_heads", 16),
        lambda m: m.head.decoder.layers[0].cross_attn.attn.num_heads,
        lambda v: f"head.decoder.layer.cross_attn.num_heads={v}",
    ),
    ConfigEntry(
        "decoder_activation_function",
        lambda c: c.get("decoder_activation_function", "relu"),
        lambda m: type(m.head.decoder.layers[0].ffn.net[1]).__name__.lower(),
        lambda v: f"head.decoder.layer.ffn.act_layer={v!r}",
    ),
    ConfigEntry(
        "query positions from references in the padded frame (HF's valid-ratio scaling)",
        lambda c: "padded",
        lambda m: m.head.decoder.query_pos_frame,
        lambda v: f"head.decoder.query_pos_frame={v!r}",
    ),
    ConfigEntry(
        "the LW-DETR head (no encoder or input projection, learned reference deltas, "
        "bbox_reparam, no refinement between layers)",
        lambda c: _EXPECTED_HEAD,
        _head_checks,
        lambda v: _HEAD_ARGS,
    ),
]
_HF_CONFIG = {"lw_detr": _ENTRIES, "rf_detr": _ENTRIES}


def _proposal_key(model, part: str, group: int, rest: str) -> str:
    single = model.head.num_groups == 1
    where = "head.proposals" if single else f"head.proposals.{group}"
    return f"{where}.{_PROPOSAL_PARTS[part]}.{rest}"


def convert_head(sd: Mapping[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """The decoder / query / prediction tensors of an HF LW-DETR / RF-DETR state dict ->
    ``model``'s ``head.*`` names (backbone and projector tensors are left out)."""
    out = {}
    for name, tensor in sd.items():
        if name.startswith(("model.backbone.",)):
            continue
        m = _PROPOSAL.match(name)
        if m:
            out[_proposal_key(model, m[1], int(m[2]), m[3])] = tensor
            continue
        out[_rename(name)] = tensor
    return out


def _check_counts(sd: Mapping[str, torch.Tensor], model) -> None:
    """Group and layer counts that the tensors show, against the model (before the strict
    load, to name the argument rather than a list of keys)."""
    head = model.head
    problems = []
    if _groups(sd) != head.num_groups:
        problems.append(
            f"{_groups(sd)} query groups (group_detr): set head.num_groups={_groups(sd)}"
        )
    layers = _decoder_layers(sd)
    if layers != len(head.decoder.layers):
        problems.append(f"{layers} decoder layers: set head.decoder.num_layers={layers}")
    rows = sd["model.query_feat.weight"].shape[0]
    if rows != head.num_queries * head.num_groups:
        problems.append(
            f"{rows} learned queries = num_queries x group_detr: set head.num_queries="
            f"{rows // max(_groups(sd), 1)}"
        )
    if problems:
        raise CheckpointError("the LW-DETR / RF-DETR checkpoint has " + "; ".join(problems))


def convert_lw_detr_checkpoint(
    sd: Mapping[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """HF LW-DETR / RF-DETR state dict -> ``model``'s layout (see the module doc).

    ``config``: the HF ``config.json``; its settings that the weights do not show are compared
    with the model (its ``backbone_config`` by the backbone's converter); a difference is
    refused naming the argument to set."""
    if not is_lw_detr_checkpoint(sd, config):
        raise CheckpointError(
            "not a Hugging Face LW-DETR / RF-DETR checkpoint (no model.reference_point_embed / "
            "model.enc_out_class_embed.0 / model.backbone.projector.*)"
        )
    notes = check_hf_config(config, model, _HF_CONFIG)
    sd = _stored_to_hf(sd)
    _check_counts(sd, model)
    model_type = (config or {}).get("model_type", "lw_detr")
    fmt = "Hugging Face RF-DETR" if model_type == "rf_detr" else "Hugging Face LW-DETR"
    backbone = {k[len(_BACKBONE) :]: v for k, v in sd.items() if k.startswith(_BACKBONE)}
    converted = model.backbone.convert_checkpoint(backbone, (config or {}).get("backbone_config"))
    out = {f"backbone.{k}": v for k, v in converted.state_dict.items()}
    ignored = [_BACKBONE + k for k in converted.ignored]
    notes += converted.notes
    projector = {k[len(_PROJECTOR) :]: v for k, v in sd.items() if k.startswith(_PROJECTOR)}
    out.update({f"neck.{k}": v for k, v in _convert_projector(projector, model).items()})
    out.update(convert_head(sd, model))
    if is_coco_category_rows(sd["class_embed.weight"].shape[0], model.head.num_classes):
        to_coco_categories(out, notes)
    return ConvertedCheckpoint(out, fmt, ignored, notes)


def _convert_projector(projector: Mapping[str, torch.Tensor], model) -> dict:
    from visionfm.necks.projector import convert_projector_checkpoint

    return convert_projector_checkpoint(projector)


def _is_rf_detr(sd: Mapping[str, torch.Tensor], config: Mapping | None) -> bool:
    """RF-DETR: ``model_type`` rf_detr, or (no config.json) a DINOv2 backbone (layer scales)."""
    if config is not None:
        return config.get("model_type") == "rf_detr"
    return any("layer_scale" in k for k in sd)


register_family(
    PublishedFamily(
        "rf_detr",
        lambda sd, config: is_lw_detr_checkpoint(sd, config) and _is_rf_detr(sd, config),
        convert_lw_detr_checkpoint,
        lw_detr_model_config,
    )
)
register_family(
    PublishedFamily(
        "lw_detr",
        lambda sd, config: is_lw_detr_checkpoint(sd, config) and not _is_rf_detr(sd, config),
        convert_lw_detr_checkpoint,
        lw_detr_model_config,
    )
)
