"""Published Deformable DETR weights -> our ``TaskModel`` (:class:`~visionfm.backbones.TimmBackbone`
ResNet + :class:`DETRHead` configured as Deformable DETR).

Reads Hugging Face transformers' ``DeformableDetrForObjectDetection`` (a ``save_pretrained``
folder or its ``model.safetensors`` with ``config.json``: SenseTime/deformable-detr,
-with-box-refine, -with-box-refine-two-stage) and the original repository's checkpoints
(fundamentalvision/Deformable-DETR ``r50_deformable_detr*-checkpoint.pth``, torch-saved
``{"model": ..., "args": Namespace}``):

==============================================  ============================================
HF (original)                                   ours
==============================================  ============================================
``model.backbone.conv_encoder.model.*``         ``backbone.*`` (``convert_common``)
(``backbone.0.body.*``)
``model.input_proj.{i}.{0,1}``                  ``head.input_proj`` convs / extra convs
(``input_proj.{i}.{0,1}``)
``model.level_embed`` (``transformer.*``)        ``head.level_embed``
``model.query_position_embeddings``             ``head.queries.content`` (position, content)
(``query_embed``)
``model.reference_points``                      ``head.queries.point_head``
``model.encoder.layers.{i}``: ``self_attn``,    ``head.encoder.layers.{i}``: ``self_attn.attn``,
``self_attn_layer_norm``, ``fc1`` / ``fc2``,    ``norm1``, ``ffn.net.{0,3}``, ``norm2``
``final_layer_norm`` (``norm1``, ``linear1/2``,
``norm2``)
``model.decoder.layers.{i}``: ``self_attn``,    ``head.decoder.layers.{i}``: ``self_attn``,
``self_attn_layer_norm``, ``encoder_attn``,     ``norm1``, ``cross_attn.attn``, ``norm2``,
``encoder_attn_layer_norm``, ``fc1/2``,         ``ffn``, ``norm3``
``final_layer_norm`` (``self_attn`` fused
``in_proj``, ``norm2``, ``cross_attn``,
``norm1``, ``linear1/2``, ``norm3``)
``class_embed.{i}``, ``bbox_embed.{i}``         ``head.cls_heads`` / ``head.box_heads``
(decoder copies tied)                           (one each without box refinement)
``class_embed.{L}``, ``bbox_embed.{L}``         ``head.proposals.cls_head`` / ``box_head``
(two-stage: after the L decoder layers)
``model.enc_output(_norm)``                     ``head.proposals.proj`` / ``norm``
``model.pos_trans(_norm)``                      ``head.queries.pos_trans`` / ``pos_norm``
==============================================  ============================================

Two arithmetic differences are absorbed here rather than by options: ``pos_trans`` reads the
proposals' sine code in the order ``x, y, w, h`` where :func:`~visionfm.layers.sine_encoding`
writes ``y, x, w, h`` (its input columns are swapped accordingly), and a file from
transformers >= 5 keeps one class head for the box-refine variant (transformers ties
``class_embed.{i}`` to ``class_embed.0``): it is copied to every layer, as HF runs it.

The model must be built to match (:func:`deformable_detr_model_config` builds it from the
checkpoint): biased input convs (``input_bias=True``), padded pixels not zeroed before them
(``mask_padded_inputs=False``), sine positions with ``offset=-0.5``, no decoder norm, and for two-stage ``select_invalid_proposals=True`` (border tokens stay
selectable with the full-image box) and ``class_agnostic_proposals=True`` (top-k by class
0's logit). ``config.json`` settings the weights do not show (heads, points, these options)
are compared with the model and a difference refused naming the argument to set.

The published COCO weights' 91 class rows (COCO category ids, HF's ``id2label``) also load
into a model of COCO's 80 categories (``num_classes=80``, labels as ``CocoDataset`` numbers
them): the categories' rows are taken; the two-stage proposals keep row 0, the "object" score
their top-k goes by.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from visionfm.models.published import PublishedFamily, register_family
from visionfm.weights import (
    ArchHint,
    CheckpointError,
    ConvertedCheckpoint,
    check_hf_config,
    put_tied,
)

from .convert_common import (
    backbone_prefix,
    convert_backbone,
    is_coco_category_rows,
    to_coco_categories,
)
from .convert_common import original_to_hf as rename_original
from .deformable_detr_config import HF_CONFIG_CHECKS, backbone_name, deformable_detr_model

__all__ = [
    "convert_deformable_detr_checkpoint",
    "deformable_detr_model_config",
    "is_deformable_detr_checkpoint",
    "original_to_hf",
]

_LAYER = r"^model\.(encoder|decoder)\.layers\.(\d+)\."
_RENAMES = [  # (pattern, replacement) on HF names, first match wins
    (r"^model\.level_embed$", "head.level_embed"),
    (r"^model\.query_position_embeddings\.", "head.queries.content."),
    (r"^model\.reference_points\.", "head.queries.point_head."),
    (r"^model\.enc_output\.", "head.proposals.proj."),
    (r"^model\.enc_output_norm\.", "head.proposals.norm."),
    (r"^model\.pos_trans\.", "head.queries.pos_trans."),
    (r"^model\.pos_trans_norm\.", "head.queries.pos_norm."),
    (_LAYER + r"self_attn_layer_norm\.", r"head.\1.layers.\2.norm1."),
    (_LAYER + r"(?:mlp\.)?fc1\.", r"head.\1.layers.\2.ffn.net.0."),
    (_LAYER + r"(?:mlp\.)?fc2\.", r"head.\1.layers.\2.ffn.net.3."),
    (r"^model\.encoder\.layers\.(\d+)\.self_attn\.", r"head.encoder.layers.\1.self_attn.attn."),
    (r"^model\.encoder\.layers\.(\d+)\.final_layer_norm\.", r"head.encoder.layers.\1.norm2."),
    (r"^model\.decoder\.layers\.(\d+)\.self_attn\.o_proj\.", r"head.decoder.layers.\1.self_attn.out_proj."),
    (r"^model\.decoder\.layers\.(\d+)\.self_attn\.", r"head.decoder.layers.\1.self_attn."),
    (r"^model\.decoder\.layers\.(\d+)\.encoder_attn\.", r"head.decoder.layers.\1.cross_attn.attn."),
    (r"^model\.decoder\.layers\.(\d+)\.encoder_attn_layer_norm\.", r"head.decoder.layers.\1.norm2."),
    (r"^model\.decoder\.layers\.(\d+)\.final_layer_norm\.", r"head.decoder.layers.\1.norm3."),
]  # fmt: skip
_INPUT_PROJ = re.compile(r"^model\.input_proj\.(\d+)\.([01])\.(weight|bias)$")
_PRED = re.compile(r"^(?:model\.decoder\.)?(class_embed|bbox_embed)\.(\d+)\.(.*)$")

_ORIGINAL_RENAMES = [  # original repo -> HF names (HF's own conversion), first match wins
    (r"^input_proj\.", "model.input_proj."),
    (r"^query_embed\.", "model.query_position_embeddings."),
    (r"^transformer\.(level_embed|reference_points|enc_output|enc_output_norm|pos_trans|"
     r"pos_trans_norm)\b", r"model.\1"),
    (r"^transformer\.decoder\.(class_embed|bbox_embed)\.", r"model.decoder.\1."),
    (r"^(class_embed|bbox_embed)\.", r"\1."),
]  # fmt: skip
_ORIGINAL_LAYERS = {  # per-layer names: original -> HF
    "encoder": {"self_attn.": "self_attn.", "norm1.": "self_attn_layer_norm.",
                "linear1.": "fc1.", "linear2.": "fc2.", "norm2.": "final_layer_norm."},
    "decoder": {"self_attn.": "self_attn.", "norm2.": "self_attn_layer_norm.",
                "cross_attn.": "encoder_attn.", "norm1.": "encoder_attn_layer_norm.",
                "linear1.": "fc1.", "linear2.": "fc2.", "norm3.": "final_layer_norm."},
}  # fmt: skip

_HINTS = (
    ArchHint(
        r"^head\.(proposals|queries\.pos_)",
        "two-stage proposals",
        "head.two_stage=True, head.with_box_refine=True, head.select_invalid_proposals=True, "
        "head.class_agnostic_proposals=True",
        "head.two_stage=False",
    ),
    ArchHint(
        r"^head\.(cls|box)_heads\.[1-9]",
        "one class / box head per decoder layer (box refinement)",
        "head.with_box_refine=True",
        "head.with_box_refine=False",
    ),
    ArchHint(
        r"^head\.input_proj\..*\.0\.bias$",
        "biased input-projection convs",
        "head.input_bias=True",
        "head.input_bias=False",
    ),
)


# ---------------------------------------------------------------- layouts
_ORIGINAL_ENCODER = re.compile(r"^transformer\.encoder\.layers\.\d+\.self_attn\.sampling_offsets\.")
_HF_ENCODER = re.compile(r"^model\.encoder\.layers\.\d+\.self_attn\.sampling_offsets\.")
# parts of the relatives that share these encoder names (DINO, Grounding DINO)
_OTHERS = (
    "transformer.tgt_embed", "transformer.enc_out_", "transformer.decoder.ref_point_head",
    "transformer.encoder.text_layers", "bert.", "model.text_backbone.", "model.tgt_embed",
    "model.decoder.reference_points_head",
)  # fmt: skip


def is_original_deformable_detr_checkpoint(sd: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``sd`` is in the fundamentalvision/Deformable-DETR layout."""
    return any(_ORIGINAL_ENCODER.match(k) for k in sd) and not any(
        k.startswith(_OTHERS) for k in sd
    )


def is_deformable_detr_checkpoint(sd: Mapping[str, torch.Tensor], config=None) -> bool:
    """Whether ``sd`` is a (HF or original) Deformable DETR checkpoint: deformable encoder
    layers of that layout, no text branch (Grounding DINO), no DINO query embeddings."""
    if config is not None and config.get("model_type") not in (None, "deformable_detr"):
        return False
    hf = any(_HF_ENCODER.match(k) for k in sd) and not any(k.startswith(_OTHERS) for k in sd)
    return hf or is_original_deformable_detr_checkpoint(sd)


def original_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original repo's state dict -> HF names (``convert_common.original_to_hf``)."""
    return rename_original(sd, _ORIGINAL_LAYERS, _ORIGINAL_RENAMES, "Deformable DETR")


# ---------------------------------------------------------------- conversion
def _rename(name: str) -> str:
    for pattern, repl in _RENAMES:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name)
    return name  # left for the strict load to report


def _input_proj(model, level: int, part: str, kind: str) -> str:
    num_in = len(model.head.input_proj.convs)
    if level < num_in:
        return f"head.input_proj.convs.{level}.{part}.{kind}"
    return f"head.input_proj.extra_convs.{level - num_in}.{part}.{kind}"


def _prediction_heads(preds: dict, model, notes: list[str]) -> dict[str, torch.Tensor]:
    """``preds``: {(kind, index): {param: tensor}} of the class / box heads -> our names."""
    head = model.head
    layers = len(head.decoder.layers)
    out: dict[str, torch.Tensor] = {}
    ours = {"class_embed": ("cls_heads", "cls_head"), "bbox_embed": ("box_heads", "box_head")}
    for kind, (many, proposal) in ours.items():
        found = {i: p for (k, i), p in preds.items() if k == kind}
        if not found:
            continue
        if max(found) >= layers:  # two-stage: the encoder's head after the decoder's
            for param, t in found.pop(max(found)).items():
                out[f"head.proposals.{proposal}.{param}"] = t
        count = len(getattr(head, many))
        if count == 1:  # one head shared by every layer: the file's copies must agree
            for i, params in found.items():
                if any(not torch.equal(t, found[0][p]) for p, t in params.items()):
                    raise CheckpointError(
                        f"the checkpoint has a different {kind}.{i} for decoder layer {i} (box "
                        "refinement) but the model shares one head: set head.with_box_refine=True"
                    )
            for param, t in found[0].items():
                out[f"head.{many}.0.{param}"] = t
            continue
        if set(found) == {0}:  # transformers >= 5 ties class_embed.{i} to .0
            notes.append(f"{kind}.0 is the only one in the file (tied): used for every layer")
        for i in range(count):
            for param, t in found.get(i, found[0]).items():
                out[f"head.{many}.{i}.{param}"] = t
    return out


def _variant(hf: Mapping[str, torch.Tensor]) -> tuple[bool, bool]:
    """(two_stage, with_box_refine) of a checkpoint in HF names, from its tensors."""
    two_stage = "model.enc_output.weight" in hf
    return two_stage, two_stage or any(k.startswith("model.decoder.bbox_embed.") for k in hf)


def _check_variant(hf: Mapping[str, torch.Tensor], model) -> None:
    """Refuse a checkpoint of another variant (plain / box refinement / two-stage)."""
    two_stage, refine = _variant(hf)
    if (two_stage, refine) != (model.head.two_stage, model.head.with_box_refine):
        names = {(False, False): "plain", (False, True): "box-refine", (True, True): "two-stage"}
        raise CheckpointError(
            f"a {names[two_stage, refine]} Deformable DETR checkpoint, a "
            f"{names.get((model.head.two_stage, model.head.with_box_refine), 'other')} model: "
            f"set head.two_stage={two_stage}, head.with_box_refine={refine}"
            + (", head.select_invalid_proposals=True, head.class_agnostic_proposals=True"
               if two_stage else "")
        )  # fmt: skip


def _swap_xy_columns(weight: torch.Tensor) -> torch.Tensor:
    """``pos_trans`` weight (2C, 2C) reading ``x, y, w, h`` sine blocks -> reading ``y, x,
    w, h`` (the order of ``sine_encoding``)."""
    x, y, rest = weight.tensor_split([weight.shape[1] // 4, weight.shape[1] // 2], dim=1)
    return torch.cat((y, x, rest), dim=1)


def convert_deformable_detr_checkpoint(
    sd: Mapping[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """HF or original Deformable DETR state dict -> ``model``'s layout (see the module doc).

    ``config``: the HF ``config.json`` (:func:`visionfm.weights.read_hf_config`) or None;
    settings it states that the weights do not show are compared with the model."""
    if not is_deformable_detr_checkpoint(sd):
        raise CheckpointError("not a Deformable DETR checkpoint (no deformable encoder layers)")
    notes = check_hf_config(config, model, HF_CONFIG_CHECKS)
    fmt = "Hugging Face Deformable DETR"
    if is_original_deformable_detr_checkpoint(sd):
        fmt, sd = "fundamentalvision/Deformable-DETR (original repository)", original_to_hf(sd)
    _check_variant(sd, model)
    if sd["model.level_embed"].shape[0] == 1:
        raise CheckpointError(
            "a single-scale Deformable DETR (num_feature_levels=1): DETRHead keeps no level "
            "embedding for one level, so these weights are not supported"
        )
    converted = convert_backbone(sd, model, (config or {}).get("backbone_config"))
    out, ignored = dict(converted.state_dict), list(converted.ignored)
    notes += converted.notes
    prefix = backbone_prefix(sd)
    preds: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    for name, tensor in sd.items():
        if name.startswith(prefix):
            continue
        if m := _INPUT_PROJ.match(name):
            out[_input_proj(model, int(m[1]), m[2], m[3])] = tensor
        elif m := _PRED.match(name):  # the decoder's copies are tied to the head's
            params = preds.setdefault((m[1], int(m[2])), {})
            put_tied(params, m[3], tensor, name, f"{m[1]}.{m[2]}.{m[3]}")
        elif name == "model.pos_trans.weight":
            out["head.queries.pos_trans.weight"] = _swap_xy_columns(tensor)
        else:
            out[_rename(name)] = tensor
    out.update(_prediction_heads(preds, model, notes))
    rows = out["head.cls_heads.0.weight"].shape[0]
    if is_coco_category_rows(rows, model.head.num_classes):
        agnostic = {
            k: v[0]
            for k, v in out.items()
            if k.startswith("head.proposals.cls_head.") and model.head.class_agnostic_proposals
        }
        to_coco_categories(out, notes)
        for key, row in agnostic.items():  # class-agnostic proposals rank by row 0: keep it
            out[key] = torch.cat((row[None], out[key][1:]))
    return ConvertedCheckpoint(out, fmt, ignored, notes, _HINTS)


# ---------------------------------------------------------------- architecture
_FC1 = r"^model\.{}\.layers\.0\.(mlp\.)?fc1\.weight$"


def _layers(sd: Mapping, side: str) -> int:
    found = {int(m[1]) for k in sd if (m := re.match(rf"^model\.{side}\.layers\.(\d+)\.", k))}
    return max(found) + 1


def deformable_detr_model_config(sd: Mapping[str, torch.Tensor], config: Mapping | None) -> dict:
    """Our ``model=`` dict for the checkpoint's architecture: from the HF ``config.json``, or
    for an original ``.pth`` from its tensors and the ``args`` pickled beside them
    (``read_checkpoint(path).args``; without them 8 heads and 4 points are assumed)."""
    hf = original_to_hf(sd) if is_original_deformable_detr_checkpoint(sd) else dict(sd)
    c = dict(config or getattr(sd, "args", None) or {})
    if c.get("model_type") is None:  # original args (or none): use the HF names
        c = {
            "encoder_attention_heads": c.get("nheads", 8),
            "decoder_attention_heads": c.get("nheads", 8),
            "encoder_n_points": c.get("enc_n_points", 4),
            "decoder_n_points": c.get("dec_n_points", 4),
            "dilation": c.get("dilation", False),
            "backbone": c.get("backbone", "resnet50"),
            "two_stage_num_proposals": c.get("num_queries", 300),
        }
    two_stage = "model.enc_output.weight" in hf
    if c.get("dilation"):
        raise CheckpointError(
            "a DC5 (dilated) Deformable DETR: not built by deformable_detr_model_config; write "
            "the config by hand with backbone output_stride=16"
        )
    two_stage, refine = _variant(hf)
    levels, dims = hf["model.level_embed"].shape
    cls = next(
        t for k, t in hf.items() if re.match(r"^(model\.decoder\.)?class_embed\.0\.weight$", k)
    )
    fc1 = {  # the FFN widths
        side: next(t.shape[0] for k, t in hf.items() if re.match(_FC1.format(side), k))
        for side in ("encoder", "decoder")
    }
    if two_stage:
        num_queries = c.get("two_stage_num_proposals", c.get("num_queries", 300))
    else:
        num_queries = hf["model.query_position_embeddings.weight"].shape[0]
    convs = [k for k in hf if _INPUT_PROJ.match(k) and k.endswith(".0.weight")]
    num_in = sum(1 for k in convs if hf[k].shape[-1] == 1)  # 1x1: backbone levels
    channels = [hf[f"model.input_proj.{i}.0.weight"].shape[1] for i in range(num_in)]
    strides = [2 ** (6 - num_in + i) for i in range(num_in)]  # the last is stride 32
    names = [f"p{6 - num_in + i}" for i in range(num_in)]
    return deformable_detr_model(
        num_classes=cls.shape[0],
        embed_dims=dims,
        backbone=backbone_name(c),
        out_indices=tuple(range(5 - num_in, 5)),
        in_channels=dict(zip(names, channels)),
        strides=dict(zip(names, strides)),
        num_feature_levels=levels,
        encoder_layers=_layers(hf, "encoder"),
        decoder_layers=_layers(hf, "decoder"),
        ffn_dims=fc1["encoder"],
        decoder_ffn_dims=fc1["decoder"],
        encoder_heads=c.get("encoder_attention_heads", 8),
        decoder_heads=c.get("decoder_attention_heads", 8),
        encoder_points=c.get("encoder_n_points", 4),
        decoder_points=c.get("decoder_n_points", 4),
        num_queries=num_queries,
        with_box_refine=refine,
        two_stage=two_stage,
    )


register_family(
    PublishedFamily(
        "deformable_detr",
        is_deformable_detr_checkpoint,
        convert_deformable_detr_checkpoint,
        deformable_detr_model_config,
    )
)
