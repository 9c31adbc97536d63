"""Published DINO weights (Zhang et al., ICLR 2023) -> our ``TaskModel``
(:class:`~visionfm.backbones.TimmBackbone` ResNet + :class:`DETRHead` configured as DINO).

Reads the two original layouts of DINO-4scale / 5scale ResNet checkpoints (torch-saved
``{"model": ..., "args": Namespace}``; the args are optional):

=================================================  ==========================================
IDEA-Research/DINO (``checkpoint0011_4scale.pth``)  ours
detrex (``dino_r50_4scale_12ep.pth``)
=================================================  ==========================================
``backbone.0.body.*`` (torchvision ResNet)          ``backbone.*`` (``convert_common``)
``backbone.{stem,res2..res5}.*`` (detectron2)       renamed to torchvision's names first
``input_proj.{l}.{0,1}``                            ``head.input_proj`` convs / extra convs
``neck.{convs,extra_convs}.{l}.{conv,norm}``
``transformer.level_embed`` / ``level_embeds``      ``head.level_embed``
``transformer.tgt_embed``                           ``head.queries.content``
``transformer.enc_output(_norm)``                   ``head.proposals.proj`` / ``norm``
``transformer.enc_out_{class,bbox}_embed``          ``head.proposals.cls_head`` / ``box_head``
``{class,bbox}_embed.{L}`` (detrex)
``{class,bbox}_embed.{i}`` (decoder copies tied)    ``head.cls_heads`` / ``head.box_heads``
``transformer.decoder.{norm,ref_point_head}``       ``head.decoder.{norm,ref_point_head}``
``label_enc``                                       ``head.denoising.label_embed`` (IDEA keeps
                                                    ``dn_labelbook_size + 1`` rows: the first
                                                    ``num_classes`` are used)
encoder ``self_attn`` / ``attentions.0``,           ``head.encoder.layers.{i}``: ``self_attn.attn``,
``norm1`` / ``norms.0``, ``linear1/2`` /            ``norm1``, ``ffn.net.{0,3}``, ``norm2``
``ffns.0.layers.{0.0,1}``, ``norm2`` / ``norms.1``
decoder ``self_attn`` / ``attentions.0.attn``       ``head.decoder.layers.{i}.self_attn`` (the
(fused ``in_proj``), ``norm2`` / ``norms.0``,       fused ``in_proj`` split in q, k, v order),
``cross_attn`` / ``attentions.1``, ``norm1`` /      ``norm1``, ``cross_attn.attn``, ``norm2``,
``norms.1``, ``linear1/2``, ``norm3`` / ``norms.2``  ``ffn``, ``norm3``
=================================================  ==========================================

The model must be built as the layout runs (:func:`dino_model_config` builds it from the
checkpoint): biased input convs, two-stage mixed query selection among border tokens too
(``select_invalid_proposals``), box refinement from the raw decoder output
(``refine_from='raw'``), look-forward-twice, references' logits clamped at 1e-3
(``logit_eps``), query positions from references on level 0's padded map
(``query_pos_frame='padded'``) and the backbone's values left on padded pixels
(``mask_padded_inputs=False``: padded batches as the original code); sine positions with temperature 20 and no offset (IDEA) or temperature
10000 and offset -0.5 (detrex); one class / box head shared by the decoder layers (IDEA's
``dec_pred_*_embed_share``) or one per layer (detrex). A difference is refused naming the
argument to set. A difference that remains: detrex runs inference without padding masks at
all (padded pixels count as image), where we mask them as in its training.
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
    put_tied,
    split_in_proj,
)
from visionfm.weights import check_hf_config as check_settings

from .convert_common import (
    RESNETS,
    convert_backbone,
    is_coco_category_rows,
    to_coco_categories,
)
from .dino_config import DETREX, IDEA, SETTINGS_CHECKS, dino_model

__all__ = ["convert_dino_checkpoint", "dino_layout", "dino_model_config"]

# per-layer names: the layout's -> ours (under head.{encoder,decoder}.layers.{i}.)
_LAYERS = {
    IDEA: {
        "encoder": {"self_attn.": "self_attn.attn.", "norm1.": "norm1.", "linear1.": "ffn.net.0.",
                    "linear2.": "ffn.net.3.", "norm2.": "norm2."},
        "decoder": {"self_attn.": "self_attn.", "norm2.": "norm1.", "cross_attn.": "cross_attn.attn.",
                    "norm1.": "norm2.", "linear1.": "ffn.net.0.", "linear2.": "ffn.net.3.",
                    "norm3.": "norm3."},
    },
    DETREX: {
        "encoder": {"attentions.0.": "self_attn.attn.", "norms.0.": "norm1.",
                    "ffns.0.layers.0.0.": "ffn.net.0.", "ffns.0.layers.1.": "ffn.net.3.",
                    "norms.1.": "norm2."},
        "decoder": {"attentions.0.attn.": "self_attn.", "norms.0.": "norm1.",
                    "attentions.1.": "cross_attn.attn.", "norms.1.": "norm2.",
                    "ffns.0.layers.0.0.": "ffn.net.0.", "ffns.0.layers.1.": "ffn.net.3.",
                    "norms.2.": "norm3."},
    },
}  # fmt: skip
_RENAMES = [  # (pattern, replacement) for both layouts, first match wins
    (r"^transformer\.level_embeds?$", "head.level_embed"),
    (r"^transformer\.tgt_embed\.", "head.queries.content."),
    (r"^transformer\.enc_output\.", "head.proposals.proj."),
    (r"^transformer\.enc_output_norm\.", "head.proposals.norm."),
    (r"^transformer\.enc_out_class_embed\.", "head.proposals.cls_head."),
    (r"^transformer\.enc_out_bbox_embed\.", "head.proposals.box_head."),
    (r"^transformer\.decoder\.norm\.", "head.decoder.norm."),
    (r"^transformer\.decoder\.ref_point_head\.", "head.decoder.ref_point_head."),
]
_LAYER = re.compile(r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.(.*)$")
_INPUT_PROJ = re.compile(
    r"^(?:input_proj\.(\d+)\.([01])|neck\.(convs|extra_convs)\.(\d+)\.(conv|norm))\.(weight|bias)$"
)
_PRED = re.compile(r"^(?:transformer\.decoder\.)?(class_embed|bbox_embed)\.(\d+)\.(.*)$")
_D2_BLOCK = re.compile(r"^res(\d)\.(\d+)\.(conv\d|shortcut)\.(norm\.)?(.*)$")

_HINTS = (
    ArchHint(
        r"^head\.input_proj\..*\.0\.bias$",
        "biased input-projection convs",
        "head.input_bias=True",
        "head.input_bias=False",
    ),
)


def dino_layout(sd: Mapping[str, torch.Tensor]) -> str | None:
    """``'IDEA-Research DINO'``, ``'detrex DINO'`` or None (another layout)."""
    if "label_enc.weight" not in sd or "transformer.tgt_embed.weight" not in sd:
        return None
    if not any(k.startswith("transformer.decoder.ref_point_head.") for k in sd):
        return None
    if any(k.startswith(("bert.", "transformer.encoder.fusion_layers.")) for k in sd):
        return None  # Grounding DINO
    if "transformer.level_embeds" in sd and any(k.startswith("neck.convs.") for k in sd):
        return DETREX
    if "transformer.level_embed" in sd and any(k.startswith("input_proj.") for k in sd):
        return IDEA
    return None


def _detectron2_resnet(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """detectron2's ResNet names (``stem.conv1(.norm)``, ``res{s}.{b}.conv{j}(.norm)``,
    ``.shortcut(.norm)``) -> torchvision's (``conv1``, ``bn1``, ``layer{s-1}.{b}.conv{j}``,
    ``bn{j}``, ``downsample.{0,1}``); detectron2's ``stride_in_1x1=False`` is torchvision's
    block."""
    out = {}
    for name, tensor in sd.items():
        if name.startswith("stem.conv1.norm."):
            out["bn1." + name[len("stem.conv1.norm.") :]] = tensor
        elif name.startswith("stem.conv1."):
            out["conv1." + name[len("stem.conv1.") :]] = tensor
        elif m := _D2_BLOCK.match(name):
            stage, block, part, norm, rest = m.groups()
            if part == "shortcut":
                part = "downsample.1" if norm else "downsample.0"
            elif norm:
                part = "bn" + part[len("conv") :]
            out[f"layer{int(stage) - 1}.{block}.{part}.{rest}"] = tensor
        else:
            raise CheckpointError(
                f"backbone.{name}: not a detectron2 ResNet parameter (the DINO reader takes "
                "ResNet backbones only)"
            )
    return out


def _backbone(sd: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """The ResNet's tensors under torchvision's names with ``backbone.0.body.``."""
    if layout == IDEA:
        return {k: v for k, v in sd.items() if k.startswith("backbone.0.body.")}
    d2 = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    return {"backbone.0.body." + k: v for k, v in _detectron2_resnet(d2).items()}


def _num_layers(sd: Mapping, side: str) -> int:
    found = {int(m[2]) for k in sd if (m := _LAYER.match(k)) and m[1] == side}
    return max(found, default=-1) + 1


def _rows(sd: Mapping, name: str) -> int:
    return sd[name].shape[0]


def _check_sizes(sd: Mapping, model, layout: str) -> None:
    """Sizes the tensors show, compared first so that the refusal names the argument."""
    head = model.head
    levels = _rows(sd, "transformer.level_embed" if layout == IDEA else "transformer.level_embeds")
    classes = _rows(sd, "class_embed.0.weight")
    if is_coco_category_rows(classes, head.num_classes):
        classes = head.num_classes
    checks = [
        ("feature levels (level_embed rows)", levels,
         0 if head.level_embed is None else len(head.level_embed),
         f"head.num_feature_levels={levels} (and num_levels={levels} in the deformable "
         "attentions; a 5-scale checkpoint also reads the stride-4 backbone level: backbone "
         "out_indices=(1, 2, 3, 4) and head in_channels / strides with p2)"),
        ("classes (class_embed rows)", classes, head.num_classes,
         f"head.num_classes={classes} (and head.denoising.num_classes; a 91-row COCO "
         "checkpoint also loads into 80 classes: COCO's categories)"),
        ("queries (tgt_embed rows)", _rows(sd, "transformer.tgt_embed.weight"), head.num_queries,
         f"head.num_queries={_rows(sd, 'transformer.tgt_embed.weight')}"),
        ("encoder layers", _num_layers(sd, "encoder"), len(head.encoder.layers),
         f"head.encoder.num_layers={_num_layers(sd, 'encoder')}"),
        ("decoder layers", _num_layers(sd, "decoder"), len(head.decoder.layers),
         f"head.decoder.num_layers={_num_layers(sd, 'decoder')}"),
    ]  # fmt: skip
    problems = [
        f"  {what}: {theirs} in the checkpoint, {ours} in the model: set {fix}"
        for what, theirs, ours, fix in checks
        if theirs != ours
    ]
    if problems:
        raise CheckpointError(
            f"this {layout} checkpoint is of another architecture than the model; build it "
            "with the arguments named (or from dino_model_config):\n" + "\n".join(problems)
        )


def _input_proj(model, index: int, part: str, kind: str) -> str:
    """Level ``index`` (inputs first, then the extra levels) of our ChannelMapper."""
    num_in = len(model.head.input_proj.convs)
    where = f"convs.{index}" if index < num_in else f"extra_convs.{index - num_in}"
    return f"head.input_proj.{where}.{part}.{kind}"


def _prediction_heads(preds: dict, model, layout: str, notes: list[str]) -> dict:
    """``{(kind, index, rest): tensor}`` of ``class_embed`` / ``bbox_embed`` -> our heads:
    decoder layer i's to ``cls_heads.i`` / ``box_heads.i`` (one shared head: every layer's
    copy must be equal), detrex's extra last one to the proposals."""
    layers = len(model.head.decoder.layers)
    ours = {"class_embed": ("cls_heads", "proposals.cls_head"),
            "bbox_embed": ("box_heads", "proposals.box_head")}  # fmt: skip
    out = {}
    for (kind, index, rest), tensor in sorted(preds.items()):
        heads, proposal = ours[kind]
        if index == layers and layout == DETREX:
            out[f"head.{proposal}.{rest}"] = tensor
            continue
        if index >= layers:
            raise CheckpointError(f"{kind}.{index}: more prediction heads than decoder layers")
        shared = len(getattr(model.head, heads)) == 1
        key = f"head.{heads}.{0 if shared else index}.{rest}"
        if key in out and not torch.equal(out[key], tensor):
            raise CheckpointError(
                f"{kind}.{index}.{rest} differs from {kind}.0.{rest}: the checkpoint has one "
                "class / box head per decoder layer; set head.share_pred_heads=False"
            )
        out[key] = tensor
    if layout == IDEA and len(model.head.cls_heads) > 1:
        notes.append("the decoder layers' class / box heads are copies of one (shared) head")
    return out


def convert_dino_checkpoint(
    sd: Mapping[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """An IDEA-Research DINO or detrex DINO state dict -> ``model``'s layout (see the module
    doc). Sizes and the settings of the layout (and of the pickled ``args``, ``sd.args``) are
    compared with the model first; a difference is refused naming the argument to set."""
    layout = dino_layout(sd)
    if layout is None:
        raise CheckpointError(
            "not a DINO checkpoint of the IDEA-Research or detrex layout (label_enc, "
            "transformer.tgt_embed, transformer.decoder.ref_point_head)"
        )
    _check_sizes(sd, model, layout)
    args = dict(getattr(sd, "args", None) or {})
    where = "the checkpoint's args and layout" if args else "the checkpoint's layout"
    notes = check_settings({**args, "model_type": layout, "_file": where}, model, SETTINGS_CHECKS)
    backbone = convert_backbone(_backbone(sd, layout), model)
    out, notes = dict(backbone.state_dict), notes + backbone.notes
    preds, ignored, side_tables = {}, list(backbone.ignored), _LAYERS[layout]
    for name, tensor in sd.items():
        if name.startswith("backbone."):
            continue
        if m := _INPUT_PROJ.match(name):
            idea_index, idea_part, group, index, part, kind = m.groups()
            if idea_index is not None:
                index, part = int(idea_index), idea_part
            else:
                index = int(index) + (len(model.head.input_proj.convs) if group[0] == "e" else 0)
                part = "0" if part == "conv" else "1"
            out[_input_proj(model, index, part, kind)] = tensor
        elif m := _PRED.match(name):
            kind, index, rest = m[1], int(m[2]), m[3]
            put_tied(preds, (kind, index, rest), tensor, name, f"{kind}.{index}.{rest}")
        elif name == "label_enc.weight":
            classes = _rows(sd, "class_embed.0.weight")
            out.update(_label_embed(tensor, classes, model, notes, ignored))
        elif m := _LAYER.match(name):
            side, index, rest = m.groups()
            old = next((o for o in side_tables[side] if rest.startswith(o)), None)
            if old is None:
                raise CheckpointError(f"{name}: not a parameter of the {layout} layout")
            new = f"head.{side}.layers.{index}.{side_tables[side][old]}{rest[len(old) :]}"
            out.update(split_in_proj(new, tensor) if ".in_proj_" in new else {new: tensor})
        else:
            new = next((re.sub(p, r, name) for p, r in _RENAMES if re.match(p, name)), None)
            if new is None and "refpoint_embed" in name:
                raise CheckpointError(
                    f"{name}: learned reference boxes (two_stage_type 'no' or "
                    "two_stage_add_query_num > 0) are not supported; DINO's 'standard' two-stage "
                    "selection is"
                )
            if new is None:
                raise CheckpointError(f"{name}: not a parameter of the {layout} layout")
            out[new] = tensor
    out.update(_prediction_heads(preds, model, layout, notes))
    if is_coco_category_rows(_rows(sd, "class_embed.0.weight"), model.head.num_classes):
        to_coco_categories(out, notes)
    return ConvertedCheckpoint(out, layout, ignored, notes, _HINTS)


def _label_embed(weight: torch.Tensor, classes: int, model, notes: list, ignored: list) -> dict:
    """``label_enc`` (IDEA: ``dn_labelbook_size + 1`` rows; detrex: ``num_classes``) -> the
    denoising label embedding: its first ``classes`` (the checkpoint's) rows; nothing for a
    model without denoising."""
    if getattr(model.head, "denoising", None) is None:
        ignored.append("label_enc.weight")
        notes.append("label_enc (training-only denoising) is left out: the model has none")
        return {}
    if weight.shape[0] < classes:
        raise CheckpointError(f"label_enc has {weight.shape[0]} rows, fewer than {classes} classes")
    if weight.shape[0] > classes:
        notes.append(
            f"label_enc: the first {classes} of {weight.shape[0]} rows (the others unused)"
        )
    return {"head.denoising.label_embed.weight": weight[:classes]}


# ---------------------------------------------------------------- architecture


def _resnet(body: Mapping[str, torch.Tensor]) -> dict:
    """TimmBackbone arguments of a torchvision-named ResNet state dict (``layers=`` for
    depths other than the standard ones)."""
    depths = tuple(
        len({m[1] for k in body if (m := re.match(rf"^layer{s}\.(\d+)\.", k))})
        for s in (1, 2, 3, 4)
    )
    bottleneck = any(".conv3." in k for k in body)
    name = RESNETS.get((bottleneck, depths))
    if name is not None:
        return dict(model_name=name)
    return dict(model_name="resnet50" if bottleneck else "resnet18", layers=depths)


def dino_model_config(sd: Mapping[str, torch.Tensor], config: Mapping | None = None) -> dict:
    """Our ``model=`` dict for the architecture of a DINO checkpoint of either layout, from its
    tensors and its pickled ``args`` (``sd.args``, else the defaults of the published
    configs: 8 heads, 100 denoising queries)."""
    layout = dino_layout(sd)
    if layout is None:
        raise CheckpointError("not a DINO checkpoint of the IDEA-Research or detrex layout")
    args = dict(getattr(sd, "args", None) or {})
    if args.get("dilation"):
        raise CheckpointError("a DC5 (dilated) DINO: write the config by hand (output_stride=16)")
    if args.get("pe_temperatureH", 20) != args.get("pe_temperatureW", 20):
        raise CheckpointError("pe_temperatureH != pe_temperatureW: one temperature is supported")
    body = {k[len("backbone.0.body.") :]: v for k, v in _backbone(sd, layout).items()}
    if layout == IDEA:
        inputs = [sd[f"input_proj.{i}.0.weight"] for i in range(len(sd["transformer.level_embed"]))]
        ffn = sd["transformer.encoder.layers.0.linear1.weight"]
        weights = sd["transformer.encoder.layers.0.self_attn.attention_weights.weight"]
        levels, dims = sd["transformer.level_embed"].shape
        share = args.get("dec_pred_class_embed_share")
        if share is None:  # every layer's copy of the first head equal: shared
            share = all(torch.equal(sd[k], sd["class_embed.0.weight"]) for k in sd
                        if re.match(r"^class_embed\.\d+\.weight$", k))  # fmt: skip
    else:
        inputs = [v for k, v in sd.items() if re.match(r"^neck\.convs\.\d+\.conv\.weight$", k)]
        ffn = sd["transformer.encoder.layers.0.ffns.0.layers.0.0.weight"]
        weights = sd["transformer.encoder.layers.0.attentions.0.attention_weights.weight"]
        levels, dims = sd["transformer.level_embeds"].shape
        share = False
    num_in = sum(1 for w in inputs if w.shape[-1] == 1)  # 1x1: backbone levels
    names = [f"p{6 - num_in + i}" for i in range(num_in)]  # the last is stride 32
    heads = args.get("nheads", 8)
    return dino_model(
        num_classes=_rows(sd, "class_embed.0.weight"),
        embed_dims=dims,
        backbone=dict(
            _resnet(body),
            out_indices=tuple(range(5 - num_in, 5)),
            frozen_stages=1 if layout == IDEA else 0,
        ),  # fmt: skip
        in_channels={n: w.shape[1] for n, w in zip(names, inputs)},
        strides={n: 2 ** (6 - num_in + i) for i, n in enumerate(names)},
        num_feature_levels=levels,
        encoder_layers=_num_layers(sd, "encoder"),
        decoder_layers=_num_layers(sd, "decoder"),
        ffn_dims=ffn.shape[0],
        num_heads=heads,
        num_points=weights.shape[0] // (heads * levels),
        num_queries=_rows(sd, "transformer.tgt_embed.weight"),
        num_dn_queries=args.get("dn_number", 100),
        box_noise_scale=args.get("dn_box_noise_scale", 0.4) if layout == IDEA else 1.0,
        share_pred_heads=share,
        temperature=args.get("pe_temperatureH", 20) if layout == IDEA else 10000,
        offset=0.0 if layout == IDEA else -0.5,
    )


register_family(
    PublishedFamily(
        "dino",
        lambda sd, config: config is None and dino_layout(sd) is not None,
        convert_dino_checkpoint,
        dino_model_config,
    )
)
