"""Published plain-ViT checkpoints -> the layout of :class:`visionfm.backbones.vit.ViT`.

Recognised by anchor keys, under any prefix (``vit.``, ``dinov2.``, ``backbone.``,
``image_encoder.`` ...; keys outside the prefix are ignored):

- timm ``VisionTransformer`` (ViT, DeiT, DINOv2 / reg4 as timm stores them) and
  ``VisionTransformerSAM``: ``patch_embed.proj.weight``, ``blocks.N.attn.qkv.weight``,
  ``cls_token``, ``reg_token``, ``pos_embed`` as ``(1, prefix + h*w, C)`` or
  ``(1, h, w, C)``, ``blocks.N.ls1.gamma``, ``blocks.N.attn.rel_pos_h``;
- the original DINOv2 repo: ``register_tokens``, ``mask_token``, ``mlp.w12`` / ``mlp.w3``,
  chunked ``blocks.C.N.``; BEiT-style split ``attn.q_bias`` / ``attn.v_bias``;
- Hugging Face ``ViTModel``, ``Dinov2Model``, ``Dinov2WithRegistersModel`` under their
  published names (``embeddings.patch_embeddings.projection.weight``,
  ``encoder.layer.N.attention.attention.query.weight``, ``layernorm``) and the names
  transformers >= 5 uses in memory (``layers.N.attention.q_proj``); separate q / k / v
  projections are fused;
- Hugging Face ``DINOv3ViTModel`` (``embeddings.patch_embeddings.weight``,
  ``layer.N.attention.q_proj``, no key bias);
- the backbones of Hugging Face RF-DETR (``RfDetrDinov2Backbone``: DINOv2 names with
  ``norm1`` / ``mlp.fc1`` / ``layer_scale1``) and LW-DETR (``LwDetrViTBackbone``:
  ``embeddings.projection``, ``gamma_1``, ``intermediate.fc1``, no key bias), their
  ``config.json`` windows and outputs checked too (see :mod:`.vit_hf_detr`); the original
  roboflow/rf-detr checkpoints' backbone (a windowed Dinov2WithRegisters under
  ``backbone.0.encoder.encoder.``) reads as the Hugging Face DINOv2 names.

Position-embedding entries of prefix tokens are added to those tokens (a class entry
without a class token, as LW-DETR's, is dropped); the patch grid is
resized to the model's; relative-position tables of global blocks are resized to the
model's lengths (those of windowed blocks must be for the model's window).

What the checkpoint says about the architecture must match the model, else the load is
refused with the argument to set: optional parts by their tensors (:data:`_HINTS`: layer
scale, registers, qk norm, rel-pos tables ...), the number of blocks, the MLP (gated or not,
hidden width), RoPE for DINOv3, and a Hugging Face folder's ``config.json``
(:data:`_HF_CONFIG`: heads, norm eps, activation, MLP, registers, RoPE base). Knowingly
dropped: classifier heads, mask tokens, and the class token / final norm of a model built
with ``class_token=False`` / ``final_norm=False`` (the MAE -> ViTDet / ViTPose recipes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from visionfm.layers import GatedMlp, act_name, grid_from_length, resize_pos_embed
from visionfm.weights import (
    ArchHint,
    CheckpointError,
    ConfigEntry,
    ConvertedCheckpoint,
    check_hf_config,
    hf_act,
    locate_model_keys,
)

from .vit_attention import resize_rel_pos
from .vit_hf_detr import window_entries

__all__ = ["convert_vit_checkpoint"]

_ANCHORS = {
    "embeddings.patch_embeddings.projection.weight": "Hugging Face ViT/DINOv2",
    "embeddings.patch_embeddings.weight": "Hugging Face DINOv3",
    "embeddings.projection.weight": "Hugging Face LW-DETR ViT",
    "patch_embed.proj.weight": "timm",
}
_IGNORED = re.compile(
    r"^(head|fc_norm|pooler|neck|attn_pool|classifier|mask_token|embeddings\.mask_token)(\.|$)"
)

# Hugging Face names inside one layer -> ours ("q"/"k"/"v"/"gate"/"up" are fused later).
_HF_BLOCK = [
    ("attention.attention.query.", "attn.q."),
    ("attention.attention.key.", "attn.k."),
    ("attention.attention.value.", "attn.v."),
    ("attention.q_proj.", "attn.q."),
    ("attention.k_proj.", "attn.k."),
    ("attention.v_proj.", "attn.v."),
    ("attention.output.dense.", "attn.proj."),
    ("attention.o_proj.", "attn.proj."),
    ("layernorm_before.", "norm1."),
    ("layernorm_after.", "norm2."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
    ("mlp.weights_in.", "mlp.fc1."),
    ("mlp.weights_out.", "mlp.fc2."),
    ("mlp.gate_proj.", "mlp.gate."),
    ("mlp.up_proj.", "mlp.up."),
    ("mlp.down_proj.", "mlp.fc2."),
    ("layer_scale1.lambda1", "ls1.gamma"),
    ("layer_scale2.lambda1", "ls2.gamma"),
    ("gamma_1", "ls1.gamma"),
    ("gamma_2", "ls2.gamma"),
    ("intermediate.fc1.", "mlp.fc1."),
    ("intermediate.fc2.", "mlp.fc2."),
]
_HF_TOP = [
    ("embeddings.cls_token", "cls_token"),
    ("embeddings.register_tokens", "reg_tokens"),
    ("embeddings.position_embeddings", "pos_embed"),
    ("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("embeddings.patch_embeddings.", "patch_embed.proj."),
    ("embeddings.projection.", "patch_embed.proj."),
    ("layernorm.", "norm."),
]
_HF_LAYER = re.compile(r"^(?:encoder\.layer|layers|model\.layer|layer)\.(\d+)\.")

# optional parts, by their names in our layout (see weights.ArchHint)
_HINTS = (
    ArchHint(r"\.ls[12]\.gamma$", "layer scale",
             "init_values=1e-5 (any value; the checkpoint's gamma replaces it)",
             "init_values=None"),
    ArchHint(r"^reg_tokens$", "register tokens", lambda s: f"reg_tokens={s['reg_tokens'][1]}",
             "reg_tokens=0"),
    ArchHint(r"^cls_token$", "a class token", "class_token=True", "class_token=False"),
    ArchHint(r"^pos_embed$", "absolute position embeddings", "abs_pos_embed=True",
             "abs_pos_embed=False"),
    ArchHint(r"\.attn\.[qk]_norm\.", "qk norm", "qk_norm=True", "qk_norm=False"),
    ArchHint(r"\.attn\.rel_pos_[hw]$", "relative position tables",
             "use_rel_pos=True (with class_token=False)"),  # absent: zero tables, as ViTDet
    ArchHint(r"\.attn\.qkv\.bias$", "qkv biases", "qkv_bias=True"),  # absent: zeros
    ArchHint(r"^norm\.", "a final norm", "final_norm=True", "final_norm=False"),
)  # fmt: skip

# Hugging Face config.json -> the model, per model_type (see weights.check_hf_config)


def _dinov2_hidden(c) -> int:
    hidden = int(c.get("hidden_size", 768) * c.get("mlp_ratio", 4))
    return (int(hidden * 2 / 3) + 7) // 8 * 8 if c.get("use_swiglu_ffn") else hidden


def _entries(
    eps: float,
    hidden,
    act,
    gated: str | None = None,
    registers: int | None = None,
    rope: bool = False,
    resize: tuple[str, bool, float] | None = None,
) -> list[ConfigEntry]:
    """The rows for one model_type: ``hidden``/``act`` read the MLP width / activation from a
    config; ``gated``: the key saying the MLP is gated; ``registers``: default register count;
    ``resize``: how that model_type's HF code resizes the position embedding to another input
    size, as our ``(pos_embed_mode, pos_embed_antialias, pos_embed_offset)`` (the file does not
    say it, the model_type's implementation does)."""
    rows = [
        ConfigEntry(
            "num_attention_heads",
            lambda c: c.get("num_attention_heads", 12),
            lambda m: m.blocks[0].attn.num_heads,
            lambda v: f"num_heads={v}",
        ),
        ConfigEntry(
            "layer_norm_eps",
            lambda c: c.get("layer_norm_eps", eps),
            lambda m: m.blocks[0].norm1.eps,
            lambda v: f"norm_layer='LN_{v}'",
        ),
        ConfigEntry(
            "hidden_act",
            act,
            lambda m: act_name(m.blocks[0].mlp.act),
            lambda v: f"act_layer='{v}'",
        ),
        ConfigEntry(
            "intermediate_size / mlp_ratio",
            lambda c: hidden(c) / c["hidden_size"],
            lambda m: m.blocks[0].mlp.fc2.in_features / m.embed_dim,
            lambda v: f"mlp_ratio={v}",
        ),
    ]
    if gated:
        rows.append(
            ConfigEntry(
                gated,
                lambda c: bool(c.get(gated)),
                lambda m: isinstance(m.blocks[0].mlp, GatedMlp),
                lambda v: "mlp_layer='gated'" if v else "mlp_layer='mlp'",
            )
        )
    if registers is not None:
        rows.append(
            ConfigEntry(
                "num_register_tokens",
                lambda c: c.get("num_register_tokens", registers),
                lambda m: 0 if m.reg_tokens is None else m.reg_tokens.shape[1],
                lambda v: f"reg_tokens={v}",
            )
        )
    if resize is not None:
        rows.append(
            ConfigEntry(
                "position-embedding resize (mode, antialias, offset)",
                lambda c: resize,
                lambda m: (m.pos_embed_mode, m.pos_embed_antialias, m.pos_embed_offset),
                lambda v: (
                    f"pos_embed_mode='{v[0]}', pos_embed_antialias={v[1]}, pos_embed_offset={v[2]}"
                ),
            )
        )
    if rope:
        rows.append(
            ConfigEntry(
                "rope_theta",
                lambda c: c.get("rope_theta", 100.0),
                lambda m: None if m.rope is None else m.rope.base,
                lambda v: f"rope_base={v}, abs_pos_embed=False",
            )
        )
    return rows


def _dinov2_act(c) -> str:  # HF's SwiGLU is SiLU whatever hidden_act says
    return "silu" if c.get("use_swiglu_ffn") else hf_act(c)


def _intermediate(c) -> int:
    return c.get("intermediate_size", 3072)


_BICUBIC = ("bicubic", False, 0.0)  # HF ViT / Dinov2: bicubic to the new grid size
_HF_CONFIG = {
    "vit": _entries(1e-12, _intermediate, hf_act, resize=_BICUBIC),
    "dpt": _entries(1e-12, _intermediate, hf_act, resize=("bilinear", False, 0.0)),
    "dinov2": _entries(1e-6, _dinov2_hidden, _dinov2_act, gated="use_swiglu_ffn", resize=_BICUBIC),
    "dinov2_with_registers": _entries(
        1e-6, _dinov2_hidden, _dinov2_act, gated="use_swiglu_ffn", registers=4,
        resize=("bicubic", True, 0.0),
    ),
    "dinov3_vit": _entries(
        1e-5, lambda c: c.get("intermediate_size", 1536), hf_act, gated="use_gated_mlp",
        registers=0, rope=True,
    ),
    "rf_detr_dinov2": _entries(
        1e-6, _dinov2_hidden, _dinov2_act, gated="use_swiglu_ffn", resize=("bicubic", True, 0.0),
    ) + window_entries(final_norm=True),
    "lw_detr_vit": _entries(
        1e-6, _dinov2_hidden, hf_act, resize=_BICUBIC
    ) + window_entries(final_norm=False),
}  # fmt: skip


def _rename(name: str, table: list[tuple[str, str]]) -> str:
    """Replace the first matching leading part of ``name`` from ``table``."""
    for old, new in table:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def _from_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in sd.items():
        m = _HF_LAYER.match(name)
        if m:
            rest = _rename(name[m.end() :], _HF_BLOCK)
            out[f"blocks.{m.group(1)}.{rest}"] = t
        else:
            out[_rename(name, _HF_TOP)] = t
    return out


def _from_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in sd.items():
        name = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", name)  # DINOv2 block chunks
        name = re.sub(r"^(reg_token|register_tokens)$", "reg_tokens", name)
        name = re.sub(r"\.(ls[12])\.scale_factor$", r".\1.gamma", name)
        name = name.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
        name = name.replace(".attn.q_bias", ".attn.q.bias").replace(".attn.v_bias", ".attn.v.bias")
        out[name] = t
    return out


def _fuse(sd: dict[str, torch.Tensor]) -> None:
    """In place: ``attn.{q,k,v}`` -> ``attn.qkv`` (absent biases are zeros); ``mlp.{gate,up}``
    -> ``mlp.fc1`` packed [gate; up], or ``mlp.up`` alone -> ``mlp.fc1``."""
    blocks = sorted({int(hit[1]) for k in sd if (hit := re.match(r"blocks\.(\d+)\.", k))})
    for i in blocks:
        a, m = f"blocks.{i}.attn.", f"blocks.{i}.mlp."
        ws = [sd.pop(f"{a}{p}.weight", None) for p in "qkv"]
        if any(w is not None for w in ws):
            if any(w is None for w in ws):
                raise CheckpointError(f"block {i} has only some of the q / k / v projections")
            sd[f"{a}qkv.weight"] = torch.cat(ws, dim=0)
        bs = [sd.pop(f"{a}{p}.bias", None) for p in "qkv"]
        if any(b is not None for b in bs):
            ref = next(b for b in bs if b is not None)
            bs = [torch.zeros_like(ref) if b is None else b for b in bs]
            sd[f"{a}qkv.bias"] = torch.cat(bs, dim=0)
        for suffix in ("weight", "bias"):
            gate, up = sd.pop(f"{m}gate.{suffix}", None), sd.pop(f"{m}up.{suffix}", None)
            if gate is not None and up is not None:
                sd[f"{m}fc1.{suffix}"] = torch.cat([gate, up], dim=0)
            elif up is not None:
                sd[f"{m}fc1.{suffix}"] = up


def _split_pos_embed(
    pos: torch.Tensor, num_prefix: int, model_grid: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, L, C) or (1, h, w, C) -> (prefix entries (1, P, C), patch grid (1, h, w, C))."""
    if pos.dim() == 4:
        return pos[:, :0, 0], pos
    length = pos.shape[1]
    candidates = sorted({0, 1, num_prefix})  # 1: a class entry without class token (LW-DETR)
    if model_grid is not None:  # prefer the split giving the model's own grid
        for p in candidates:
            if length - p == model_grid[0] * model_grid[1]:
                return pos[:, :p], pos[:, p:].reshape(1, *model_grid, -1)
    for p in candidates:
        grid = grid_from_length(length - p)
        if grid is not None:
            return pos[:, :p], pos[:, p:].reshape(1, *grid, -1)
    raise CheckpointError(
        f"pos_embed of shape {tuple(pos.shape)} is no square grid after removing "
        f"{candidates} prefix entries, and does not match the model's grid {model_grid}"
    )


def _fit_positions(sd: dict[str, torch.Tensor], model, notes: list[str]) -> None:
    """In place: fold prefix position entries into the tokens; resize grid and rel-pos tables."""
    tokens = [k for k in ("cls_token", "reg_tokens") if k in sd]
    if "reg_tokens" in sd and sd["reg_tokens"].shape[1] == 0:
        del sd["reg_tokens"]
        tokens.remove("reg_tokens")
    if "pos_embed" in sd:
        num_prefix = sum(sd[k].shape[1] for k in tokens)
        model_grid = tuple(model.pos_embed.shape[1:3]) if model.pos_embed is not None else None
        prefix_pos, grid = _split_pos_embed(sd["pos_embed"], num_prefix, model_grid)
        start = 0
        for k in tokens:
            n = min(sd[k].shape[1], prefix_pos.shape[1] - start)
            if n > 0:
                sd[k] = sd[k].clone()
                sd[k][:, :n] += prefix_pos[:, start : start + n]
                start += n
        if start < prefix_pos.shape[1]:
            notes.append(
                f"pos_embed's first {prefix_pos.shape[1] - start} entries have no token in the "
                "checkpoint (a class entry of a model without class token): dropped"
            )
        if model_grid is not None and tuple(grid.shape[1:3]) != model_grid:
            notes.append(f"pos_embed resized from grid {tuple(grid.shape[1:3])} to {model_grid}")
            grid = resize_pos_embed(
                grid,
                model_grid,
                model.pos_embed_antialias,
                model.pos_embed_offset,
                getattr(model, "pos_embed_mode", "bicubic"),
            )
        sd["pos_embed"] = grid
    own = model.state_dict()
    for name in [k for k in sd if k.endswith((".rel_pos_h", ".rel_pos_w"))]:
        if name in own and sd[name].shape[0] != own[name].shape[0]:
            window = model.blocks[int(name.split(".")[1])].attn.window_size
            if window:  # a window's table is not resized: the window would differ
                raise CheckpointError(
                    f"{name} has {sd[name].shape[0]} entries, a table for windows of "
                    f"{(sd[name].shape[0] + 1) // 2}, but the model's block attends in windows "
                    f"of {window}: set window_size={(sd[name].shape[0] + 1) // 2} (and "
                    "window_block_indices to the checkpoint's windowed blocks)"
                )
            notes.append(f"{name} resized from {sd[name].shape[0]} to {own[name].shape[0]}")
            sd[name] = resize_rel_pos(sd[name], own[name].shape[0])


def _check_structure(sd: dict[str, torch.Tensor], model, fmt: str) -> None:
    """Refuse, with the argument to set, what shapes alone would report less clearly: the
    number of blocks, the MLP's kind and width (for the model's width; other widths are left
    to the shape check), and DINOv3's RoPE."""
    problems = []
    depth = 1 + max((int(h[1]) for k in sd if (h := re.match(r"blocks\.(\d+)\.", k))), default=-1)
    if depth and depth != model.depth:
        problems.append(
            f"the checkpoint has {depth} blocks, the model {model.depth}: set depth={depth}"
        )
    fc1, fc2 = sd.get("blocks.0.mlp.fc1.weight"), sd.get("blocks.0.mlp.fc2.weight")
    if fc1 is not None and fc2 is not None and fc2.shape[0] == model.embed_dim:
        hidden, mlp = fc2.shape[1], model.blocks[0].mlp
        gated = fc1.shape[0] == 2 * hidden  # packed [gate; value]
        if gated != isinstance(mlp, GatedMlp):
            problems.append(
                "the checkpoint's MLP is gated (SwiGLU: fc1 gives twice fc2's inputs): set "
                "mlp_layer='gated', act_layer='silu'"
                if gated
                else "the checkpoint's MLP is not gated: set mlp_layer='mlp'"
            )
        if hidden != mlp.fc2.in_features:
            problems.append(
                f"the checkpoint's MLP is {hidden} wide, the model's {mlp.fc2.in_features}: "
                f"set mlp_ratio={hidden / model.embed_dim}"
            )
    if fmt == "Hugging Face DINOv3" and model.rope is None:
        problems.append("DINOv3 has rotary position embeddings: set rope_base=100.0")
    if problems:
        raise CheckpointError(
            f"this {fmt} checkpoint does not fit the model:\n- " + "\n- ".join(problems)
        )


def convert_vit_checkpoint(
    sd: dict[str, torch.Tensor], model, config: Mapping | None = None
) -> ConvertedCheckpoint:
    """Convert a timm / DINOv2 / Hugging Face ViT state dict (see module doc) for ``model``.

    ``config``: the Hugging Face ``config.json`` beside the checkpoint (or None). Raises
    :class:`CheckpointError` when no ViT format is recognised, or when the checkpoint or its
    config states another architecture than the model's (naming the argument to set).
    """
    prefix, fmt = locate_model_keys(sd, _ANCHORS, "ViT", "timm / DINOv2 / Hugging Face")
    notes = check_hf_config(config, model, _HF_CONFIG)
    ignored = [k for k in sd if not k.startswith(prefix)]
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if fmt == "timm" and (
        "register_tokens" in sd or "mask_token" in sd or any(".mlp.w12." in k for k in sd)
    ):
        fmt = "DINOv2 (original repo)"
    ignored += [prefix + k for k in sd if _IGNORED.match(k)]
    sd = {k: v for k, v in sd.items() if not _IGNORED.match(k)}
    sd = _from_hf(sd) if fmt.startswith("Hugging Face") else _from_timm(sd)
    _fuse(sd)
    _check_structure(sd, model, fmt)
    if isinstance(getattr(model, "norm", None), torch.nn.Identity):  # final_norm=False
        dropped = [k for k in sd if k.startswith("norm.")]
        if dropped:
            ignored += [prefix + k for k in dropped]
            sd = {k: v for k, v in sd.items() if k not in dropped}
            notes.append("the model has no final norm (final_norm=False): its weights are unused")
    _fit_positions(sd, model, notes)
    if model.cls_token is None and "cls_token" in sd:  # after its position entry is folded in
        del sd["cls_token"]
        ignored.append(prefix + "cls_token")
        notes.append("the model has no class token (class_token=False): the checkpoint's is unused")
    if prefix:
        notes.append(f"keys taken from under the prefix {prefix!r}")
    return ConvertedCheckpoint(sd, fmt, ignored=ignored, notes=notes, hints=_HINTS)
