"""Published PVT v2 checkpoints -> the layout of :class:`visionfm.backbones.pvt.PyramidVisionTransformerV2`.

Our layout: ``stages.{i}.patch_embed.{proj,norm}``, ``stages.{i}.blocks.{j}.{norm1, attn.q,
attn.kv, attn.sr, attn.norm, attn.proj, norm2, mlp.fc1, mlp.dwconv, mlp.fc2}``,
``stages.{i}.norm``. Recognised by anchor keys, under any prefix (``backbone.``,
``pvt_v2.`` ...; keys outside the prefix are ignored):

- ours: ``stages.0.patch_embed.proj.weight``;
- timm ``pvt_v2_*``: ``patch_embed.`` (first stage), ``stages.{i}.downsample.`` (later ones),
  otherwise our names;
- the original repo (whai362/PVT, classification and detection): ``patch_embed{n}.``,
  ``block{n}.{j}.``, ``norm{n}.`` (1-based stages), ``mlp.dwconv.dwconv.``;
- Hugging Face ``PvtV2Model`` / ``PvtV2Backbone`` (``encoder.layers.{i}.``; under ``pvt_v2.``
  in ``PvtV2ForImageClassification``): ``patch_embedding.layer_norm``, ``layer_norm_{1,2}``,
  ``attention.{query,key,value,proj,spatial_reduction,layer_norm}``, ``mlp.dense{1,2}``;
  separate key / value projections are fused into ``kv``.

Classifier heads are ignored. Refused with :class:`CheckpointError`, naming the argument to
set: other blocks per stage; another spatial reduction (linear attention, ``linear=True``,
or other ``sr_ratios``, read from the ``sr`` convs' kernels); qkv biases the model lacks
(:data:`_HINTS`); a ``config.json`` stating other heads, reduction, norm eps or activation
(:data:`_HF_CONFIG`). Other sizes fail on the shape check of
:func:`~visionfm.weights.load_converted`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from visionfm.layers import act_name
from visionfm.weights import (
    ArchHint,
    CheckpointError,
    ConfigEntry,
    ConvertedCheckpoint,
    check_hf_config,
    hf_act,
    locate_model_keys,
    stage_depths,
)

__all__ = ["convert_pvt_v2_checkpoint"]

_ANCHORS = {
    "stages.0.patch_embed.proj.weight": "visionfm",
    "stages.1.downsample.proj.weight": "timm",
    "patch_embed1.proj.weight": "PVT v2 (original repo)",
    "encoder.layers.0.patch_embedding.proj.weight": "Hugging Face PvtV2",
}
_IGNORED = re.compile(r"^(head|classifier|head_drop)(\.|$)")

_ORIGINAL = [  # (pattern, replacement), applied in order
    (r"^patch_embed(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.patch_embed."),
    (r"^block(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks."),
    (r"^norm(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.norm."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
]
_TIMM = [
    (r"^patch_embed\.", "stages.0.patch_embed."),
    (r"^stages\.(\d+)\.downsample\.", r"stages.\1.patch_embed."),
]
_HF = [
    (r"^encoder\.layers\.", "stages."),
    (r"\.patch_embedding\.layer_norm\.", ".patch_embed.norm."),
    (r"\.patch_embedding\.", ".patch_embed."),
    (r"\.layer_norm_1\.", ".norm1."),
    (r"\.layer_norm_2\.", ".norm2."),
    (r"\.attention\.query\.", ".attn.q."),
    (r"\.attention\.key\.", ".attn.k."),
    (r"\.attention\.value\.", ".attn.v."),
    (r"\.attention\.spatial_reduction\.", ".attn.sr."),
    (r"\.attention\.layer_norm\.", ".attn.norm."),
    (r"\.attention\.proj\.", ".attn.proj."),
    (r"\.mlp\.dense1\.", ".mlp.fc1."),
    (r"\.mlp\.dense2\.", ".mlp.fc2."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
    (r"^(stages\.\d+)\.layer_norm\.", r"\1.norm."),
]
_RULES = {"timm": _TIMM, "PVT v2 (original repo)": _ORIGINAL, "Hugging Face PvtV2": _HF}

# optional parts, by their names in our layout (see weights.ArchHint); absent biases are zeros
_HINTS = (ArchHint(r"\.attn\.(q|kv)\.bias$", "qkv biases", "qkv_bias=True"),)


def _attn(model, get) -> list:
    """``get(attention of the first block of stage i)`` for every stage."""
    return [get(stage.blocks[0].attn) for stage in model.stages]


def _eps(norm_layer: str):  # HF PvtV2 uses config.layer_norm_eps for every LayerNorm
    return lambda m: (
        (
            m.stages[0].blocks[0].norm1
            if norm_layer == "norm_layer"
            else m.stages[0].patch_embed.norm
        ).eps
    )


_HF_CONFIG = {
    "pvt_v2": [
        ConfigEntry("num_attention_heads", lambda c: list(c.get("num_attention_heads", (1, 2, 5, 8))),
                    lambda m: _attn(m, lambda a: a.num_heads), lambda v: f"num_heads={tuple(v)}"),
        ConfigEntry("linear_attention", lambda c: bool(c.get("linear_attention", False)),
                    lambda m: m.linear, lambda v: f"linear={v}"),
        ConfigEntry("sr_ratios", lambda c: [1] * 4 if c.get("linear_attention") else list(c.get("sr_ratios", (8, 4, 2, 1))),
                    lambda m: _attn(m, lambda a: a.sr_ratio), lambda v: f"sr_ratios={tuple(v)}"),
        ConfigEntry("layer_norm_eps", lambda c: c.get("layer_norm_eps", 1e-6), _eps("norm_layer"),
                    lambda v: f"norm_layer='LN_{v}'"),
        ConfigEntry("layer_norm_eps (patch embeddings, reductions)",
                    lambda c: c.get("layer_norm_eps", 1e-6), _eps("embed_norm_layer"),
                    lambda v: f"embed_norm_layer='LN_{v}'"),
        ConfigEntry("hidden_act", hf_act, lambda m: act_name(m.stages[0].blocks[0].mlp.act),
                    lambda v: f"act_layer='{v}'"),
    ]
}  # fmt: skip


def _rename(sd: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in sd.items():
        for pattern, repl in rules:
            name = re.sub(pattern, repl, name)
        out[name] = t
    return out


def _fuse_kv(sd: dict[str, torch.Tensor]) -> None:
    """In place: ``attn.k`` + ``attn.v`` -> ``attn.kv`` (rows [k; v])."""
    for name in [n for n in sd if ".attn.k." in n]:
        value = name.replace(".attn.k.", ".attn.v.")
        if value not in sd:
            raise CheckpointError(f"{name} has no value projection {value} to fuse with")
        sd[name.replace(".attn.k.", ".attn.kv.")] = torch.cat([sd.pop(name), sd.pop(value)], 0)


def _check_reduction(sd: dict[str, torch.Tensor], model, fmt: str) -> None:
    """Refuse another spatial reduction: linear attention has a 1x1 ``sr`` conv in every stage,
    spatial reduction an ``r x r`` one where ``sr_ratio = r > 1`` (none where it is 1)."""
    kernels = []
    for i in range(len(model.stages)):
        sr = sd.get(f"stages.{i}.blocks.0.attn.sr.weight")
        kernels.append(None if sr is None else sr.shape[-1])
    linear = all(k == 1 for k in kernels)
    if linear != model.linear:
        raise CheckpointError(
            f"this {fmt} checkpoint has "
            + (
                "linear spatial-reduction attention (a 1x1 sr conv in every stage, as "
                "pvt_v2_b2_li): set linear=True"
                if linear
                else "strided spatial-reduction attention, not the linear one: set linear=False"
            )
        )
    ratios = tuple(k or 1 for k in kernels)
    if not linear and ratios != tuple(_attn(model, lambda a: a.sr_ratio)):
        raise CheckpointError(
            f"this {fmt} checkpoint reduces keys / values by {ratios} per stage (its sr "
            f"kernels), the model by {tuple(_attn(model, lambda a: a.sr_ratio))}: set "
            f"sr_ratios={ratios}"
        )


def convert_pvt_v2_checkpoint(
    sd: dict[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """Convert a timm / original / Hugging Face PVT v2 state dict (see module doc) for ``model``.

    ``config``: the Hugging Face ``config.json`` beside the checkpoint (or None). Raises
    :class:`CheckpointError` when no PVT v2 format is recognised, or when the checkpoint or
    its config states another architecture than the model's (naming the argument to set).
    """
    prefix, fmt = locate_model_keys(
        sd, _ANCHORS, "PVT v2", "visionfm / timm / original repo / Hugging Face"
    )
    notes = check_hf_config(config, model, _HF_CONFIG)
    ignored = [k for k in sd if not k.startswith(prefix)]
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    ignored += [prefix + k for k in sd if _IGNORED.match(k)]
    sd = {k: v for k, v in sd.items() if not _IGNORED.match(k)}
    sd = _rename(sd, _RULES.get(fmt, []))
    _fuse_kv(sd)
    depths = stage_depths(sd)
    if depths != tuple(model.depths):
        raise CheckpointError(
            f"this {fmt} checkpoint has {depths} blocks per stage, the model "
            f"{tuple(model.depths)}: set depths={depths} (another PVT v2 size? presets: b0/b1 "
            "(2, 2, 2, 2), b2/b2_li (3, 4, 6, 3), b3 (3, 4, 18, 3), b4 (3, 8, 27, 3), "
            "b5 (3, 6, 40, 3))"
        )
    _check_reduction(sd, model, fmt)
    if prefix:
        notes.append(f"keys taken from under the prefix {prefix!r}")
    return ConvertedCheckpoint(sd, fmt, ignored=ignored, notes=notes, hints=_HINTS)
