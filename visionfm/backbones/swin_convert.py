"""Published Swin V1 / V2 checkpoints -> the layout of :mod:`visionfm.backbones.swin`.

Recognised by anchor keys, under any prefix (``backbone.``, ``swin.``, ``swinv2.``,
``encoder.`` ...; keys outside the prefix are ignored):

- timm ``SwinTransformer`` / ``SwinTransformerV2`` (``patch_embed.proj.weight``,
  ``layers.N.blocks.M.attn.qkv``, ``relative_position_bias_table`` or ``q_bias`` /
  ``v_bias`` / ``logit_scale`` / ``cpb_mlp``, patch merging at the START of stage N >= 1,
  final ``norm``);
- the official Microsoft repos (Swin-Transformer, Swin-Transformer-Object-Detection): the
  timm names, but patch merging at the END of stage N (``layers.0.downsample`` exists),
  persistent ``relative_position_index`` / ``relative_coords_table`` / ``attn_mask``
  buffers (dropped), per-output norms ``norm0 .. norm3`` in detection checkpoints;
- Hugging Face ``SwinModel`` / ``Swinv2Model`` / ``SwinBackbone`` / ``Swinv2Backbone``
  under their published names (``embeddings.patch_embeddings.projection``,
  ``encoder.layers.N.blocks.M.attention.self.query``, ``intermediate.dense``, ``layernorm``)
  and the names transformers >= 5 uses in memory (``attention.q_proj``,
  ``attention.relative_position_bias.relative_position_bias_table``); ``SwinBackbone``'s
  ``hidden_states_norms.stageK`` become the output norms. Separate q / k / v are fused.

A V1 checkpoint for a V2 model (or the reverse) and absolute position embeddings
(``ape=True`` models) are refused, as are a checkpoint with other blocks per stage, qkv
biases the model lacks (:data:`_HINTS`) and a ``config.json`` stating other heads, windows,
norm eps, activation, MLP ratio or V2 pretrained windows (:data:`_HF_CONFIG`), each naming
the argument to set. V1 bias tables of another window are resized bicubically when every
stage's table is for the same window (as the official repo does when fine-tuning at 384 px);
a table for a smaller window than the checkpoint's other stages is refused: timm shrinks a
stage's window to its feature map when built at a small ``img_size``, and resizing that
table would change the stage's outputs. V2 needs no resizing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F

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

__all__ = ["convert_swin_checkpoint"]

_ANCHORS = {
    "embeddings.patch_embeddings.projection.weight": "Hugging Face",
    "patch_embed.proj.weight": "timm",
}
_IGNORED = re.compile(r"^(head|classifier|pooler|avgpool|mask_token|embeddings\.mask_token)(\.|$)")
_BUFFERS = re.compile(r"\.(relative_position_index|relative_coords_table|attn_mask|k_bias)$")
_HF_NORMS = re.compile(r"^(?:.*\.)?hidden_states_norms\.stage(\d+)\.(weight|bias)$")

# optional parts, by their names in our layout (see weights.ArchHint); absent biases are zeros
_HINTS = (ArchHint(r"\.attn\.(qkv\.bias|[qv]_bias)$", "qkv biases", "qkv_bias=True"),)


def _per_block(model, get) -> list:
    """``get(first block of stage i)`` for every stage."""
    return [get(stage.blocks[0]) for stage in model.stages]


_SWIN_CONFIG = [
    ConfigEntry(
        "num_heads",
        lambda c: list(c.get("num_heads", (3, 6, 12, 24))),
        lambda m: _per_block(m, lambda b: b.attn.num_heads),
        lambda v: f"num_heads={tuple(v)}",
    ),
    ConfigEntry(
        "window_size",
        lambda c: [c.get("window_size", 7)] * len(c.get("depths", "1234")),
        lambda m: [stage.window_size for stage in m.stages],
        lambda v: f"window_size={v[0]}",
    ),
    ConfigEntry(
        "layer_norm_eps",
        lambda c: c.get("layer_norm_eps", 1e-5),
        lambda m: m.stages[0].blocks[0].norm1.eps,
        lambda v: f"norm_layer='LN_{v}'",
    ),
    ConfigEntry(
        "hidden_act",
        hf_act,
        lambda m: act_name(m.stages[0].blocks[0].mlp.act),
        lambda v: f"act_layer='{v}'",
    ),
    ConfigEntry(
        "mlp_ratio",
        lambda c: c.get("mlp_ratio", 4.0),
        lambda m: m.stages[0].blocks[0].mlp.fc1.out_features / m.widths[0],
        lambda v: f"mlp_ratio={v}",
    ),
]
_HF_CONFIG = {
    "swin": _SWIN_CONFIG,
    "swinv2": _SWIN_CONFIG + [
        ConfigEntry("pretrained_window_sizes",
                    lambda c: list(c.get("pretrained_window_sizes", (0, 0, 0, 0))),
                    lambda m: _per_block(m, lambda b: b.attn.pretrained_window_size),
                    lambda v: f"pretrained_window_sizes={tuple(v)}"),
    ],
}  # fmt: skip

# Hugging Face names inside a block -> timm's ("attn.q/k/v" are fused afterwards).
_HF_BLOCK = [
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
    ("attention.self.query.", "attn.q."),
    ("attention.self.key.", "attn.k."),
    ("attention.self.value.", "attn.v."),
    ("attention.q_proj.", "attn.q."),
    ("attention.k_proj.", "attn.k."),
    ("attention.v_proj.", "attn.v."),
    ("attention.output.dense.", "attn.proj."),
    ("attention.o_proj.", "attn.proj."),
    ("attention.self.relative_position_bias_table", "attn.relative_position_bias_table"),
    ("attention.relative_position_bias.", "attn."),
    ("attention.self.continuous_position_bias_mlp.", "attn.cpb_mlp."),
    ("attention.self.", "attn."),  # logit_scale and buffers
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
]
_HF_TOP = [
    ("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("embeddings.norm.", "patch_embed.norm."),
    ("embeddings.position_embeddings", "absolute_pos_embed"),
    ("layernorm.", "norm."),
]


def _rename(name: str, table: list[tuple[str, str]]) -> str:
    for old, new in table:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def _from_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face names -> timm / official names (merging stays at the end of a stage)."""
    out = {}
    for name, t in sd.items():
        hit = re.match(r"^encoder\.layers\.(\d+)\.blocks\.(\d+)\.", name)
        if hit:
            name = f"layers.{hit[1]}.blocks.{hit[2]}." + _rename(name[hit.end() :], _HF_BLOCK)
        else:
            name = _rename(re.sub(r"^encoder\.layers\.", "layers.", name), _HF_TOP)
        out[name] = t
    return out


def _fuse_qkv(sd: dict[str, torch.Tensor], v2: bool) -> None:
    """In place: ``attn.{q,k,v}`` -> ``attn.qkv.weight`` and the bias (V1: fused, absent parts
    zero; V2: ``attn.q_bias`` / ``attn.v_bias``, the k projection has none)."""
    for prefix in sorted({k[: -len("q.weight")] for k in sd if k.endswith(".attn.q.weight")}):
        weights = [sd.pop(f"{prefix}{p}.weight", None) for p in "qkv"]
        if any(w is None for w in weights):
            raise CheckpointError(f"{prefix[:-1]} has only some of the q / k / v projections")
        sd[f"{prefix}qkv.weight"] = torch.cat(weights, dim=0)
        biases = [sd.pop(f"{prefix}{p}.bias", None) for p in "qkv"]
        if v2:
            for p, b in zip("qv", (biases[0], biases[2])):
                if b is not None:
                    sd[f"{prefix}{p}_bias"] = b
        elif any(b is not None for b in biases):
            ref = next(b for b in biases if b is not None)
            sd[f"{prefix}qkv.bias"] = torch.cat(
                [torch.zeros_like(ref) if b is None else b for b in biases]
            )


def _version(sd: dict[str, torch.Tensor]) -> int | None:
    if any(k.endswith((".logit_scale", ".cpb_mlp.0.weight")) for k in sd):
        return 2
    if any(k.endswith(".relative_position_bias_table") for k in sd):
        return 1
    return None


def _to_ours(sd: dict[str, torch.Tensor], model, merge_at_end: bool) -> dict:
    """timm / official names -> ours (stages, patch_norm, rel_pos_*, per-level norms)."""
    last = len(model.stages) - 1
    out = {}
    for name, t in sd.items():
        hit = re.match(r"^layers\.(\d+)\.downsample\.", name)
        if hit:
            stage = int(hit[1]) + (1 if merge_at_end else 0)
            name = f"stages.{stage}.downsample." + name[hit.end() :]
        name = re.sub(r"^layers\.(\d+)\.blocks\.", r"stages.\1.blocks.", name)
        name = name.replace(".attn.relative_position_bias_table", ".attn.rel_pos_table")
        name = name.replace(".attn.cpb_mlp.", ".attn.rel_pos_mlp.")
        if name.endswith(".attn.logit_scale"):
            t = t.reshape(-1)  # (heads, 1, 1) -> (heads,)
        name = re.sub(r"^patch_embed\.norm\.", "patch_norm.", name)
        hit = re.match(r"^norm(\d*)\.", name)  # final norm, or per-output norm{i}
        if hit:
            name = f"norms.{model.level_name(int(hit[1] or last))}." + name[hit.end() :]
        out[name] = t
    return out


def _table_window(length: int) -> int | None:
    """Window side of a square V1 table of ``length = (2w - 1) ** 2`` rows, or None."""
    side = math.isqrt(length)
    return (side + 1) // 2 if side * side == length else None


def _resize_tables(sd: dict[str, torch.Tensor], model, notes: list[str]) -> None:
    """In place: V1 relative-position tables of another window, bicubically resized, unless
    a stage's table is for a smaller window than the checkpoint's other stages (refused)."""
    own = model.state_dict()
    names = [k for k in sd if k.endswith(".rel_pos_table") and k in own]
    windows = {int(k.split(".")[1]): _table_window(sd[k].shape[0]) for k in names}
    largest = max((w or 0 for w in windows.values()), default=0)
    for name in names:
        src, dst = sd[name], own[name]
        if src.shape == dst.shape or src.shape[1] != dst.shape[1]:
            continue  # heads differ: left to the shape check
        window, stage = windows[int(name.split(".")[1])], int(name.split(".")[1])
        if window is None or window < largest:
            per_stage = tuple(windows.get(i) or s.window_size for i, s in enumerate(model.stages))
            fix = (
                f"build the model with window_size={per_stage} (the checkpoint's windows) to "
                "load it as it is"
                if window is not None
                else "a window that is not square has no equivalent here; load it with "
                "TimmBackbone, or take a checkpoint built at a size where no stage's map is "
                "smaller than the window"
            )
            raise CheckpointError(
                f"{name} has {src.shape[0]} rows: stage {stage}'s window is "
                f"{'not square' if window is None else window} where the checkpoint's other "
                f"stages use {largest}. timm shrinks a stage's window to its feature map when "
                "the model is built at a small img_size; resizing this table to the model's "
                f"window ({model.stages[stage].window_size}) would change the stage's outputs: {fix}"
            )
        d = (math.isqrt(dst.shape[0]) + 1) // 2
        grid = src.t().reshape(1, -1, 2 * window - 1, 2 * window - 1).float()
        grid = F.interpolate(grid, size=(2 * d - 1, 2 * d - 1), mode="bicubic", align_corners=False)
        sd[name] = grid.reshape(-1, dst.shape[0]).t().to(src.dtype)
        notes.append(f"{name} resized from window {window} to {d}")


def _check_depths(sd: dict[str, torch.Tensor], model, fmt: str) -> None:
    """Refuse a checkpoint with other blocks per stage, naming ``depths``."""
    depths = stage_depths(sd)
    if depths and depths != tuple(model.depths):
        raise CheckpointError(
            f"this {fmt} checkpoint has {depths} blocks per stage, the model "
            f"{tuple(model.depths)}: set depths={depths}"
        )


def convert_swin_checkpoint(
    sd: dict[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """Convert a timm / official / Hugging Face Swin V1 or V2 state dict (see module doc).

    ``config``: the Hugging Face ``config.json`` beside the checkpoint (or None). Raises
    :class:`CheckpointError` when no Swin layout is recognised, for a checkpoint of the other
    Swin version, for absolute position embeddings, and when the checkpoint or its config
    states another architecture than the model's (naming the argument to set).
    """
    prefix, fmt = locate_model_keys(sd, _ANCHORS, "Swin", "timm / official / Hugging Face")
    notes = check_hf_config(config, model, _HF_CONFIG)
    hf_norms = {}
    if fmt == "Hugging Face":  # SwinBackbone keeps its output norms outside the 'swin.' prefix
        hf_norms = {k: v for k, v in sd.items() if _HF_NORMS.match(k)}
    ignored = [k for k in sd if not k.startswith(prefix) and k not in hf_norms]
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix) and k not in hf_norms}
    dropped = [k for k in sd if _IGNORED.match(k) or _BUFFERS.search(k)]  # heads, buffers
    ignored += [prefix + k for k in dropped]
    sd = {k: v for k, v in sd.items() if k not in dropped}
    if fmt == "Hugging Face":
        sd = _from_hf(sd)
        for key, t in hf_norms.items():
            stage, kind = _HF_NORMS.match(key).groups()
            sd[f"norm{int(stage) - 1}.{kind}"] = t
    if "absolute_pos_embed" in sd:
        raise CheckpointError(
            "this Swin checkpoint uses absolute position embeddings (ape=True), which "
            "visionfm's Swin does not implement"
        )
    version = _version(sd)
    _fuse_qkv(sd, v2=version == 2)
    if version is not None and version != model.version:
        names = {1: "Swin V1 (relative_position_bias_table)", 2: "Swin V2 (logit_scale, cpb_mlp)"}
        raise CheckpointError(
            f"this is a {names[version]} checkpoint but the model is {type(model).__name__}; "
            f"build {'SwinTransformerV2' if version == 2 else 'SwinTransformer'} (or a "
            f"{'swinv2_*' if version == 2 else 'swin_*'} preset) instead"
        )
    merge_at_end = fmt == "Hugging Face" or "layers.0.downsample.reduction.weight" in sd
    if merge_at_end and fmt == "timm":
        fmt = "official Microsoft"
    sd = _to_ours(sd, model, merge_at_end)
    _check_depths(sd, model, fmt)
    own = model.state_dict()
    unused_norms = [k for k in sd if k.startswith("norms.") and k not in own]
    ignored += unused_norms  # norms of levels the model does not output
    sd = {k: v for k, v in sd.items() if k not in unused_norms}
    _resize_tables(sd, model, notes)
    if prefix:
        notes.append(f"keys taken from under the prefix {prefix!r}")
    fmt = f"{fmt} Swin V{version or model.version}"
    return ConvertedCheckpoint(sd, fmt, ignored, notes, hints=_HINTS)
