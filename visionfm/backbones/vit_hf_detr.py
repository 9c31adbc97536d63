"""The ViT backbones of Hugging Face RF-DETR and LW-DETR, as :class:`~.vit.ViT` arguments.

- ``rf_detr_dinov2`` (``RfDetrDinov2Backbone``): DINOv2 with layer scale and a class token,
  the grid split into ``num_windows`` x ``num_windows`` windows, each with a copy of the
  class token; the blocks right after an output are global (RF-DETR derives
  ``window_block_indexes`` from ``out_indices``); the final LayerNorm on every output
  (``apply_layernorm``); the position embedding resized antialiased.
- ``lw_detr_vit`` (``LwDetrViTBackbone``): a CAE ViT without class token (its position
  embedding keeps an unused class entry), layer scale ``gamma_1 / gamma_2``, no key bias,
  ``num_windows`` windows in all (``sqrt(num_windows)`` per side), windowed blocks listed in
  ``window_block_indices``, no final norm, position embedding resized plain bicubic.

Hugging Face ``out_indices`` count stages with the patch embedding as stage 0, so stage
``s`` is our block ``s - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch.nn as nn

from visionfm.weights import CheckpointError, ConfigEntry, hf_act

__all__ = ["DETR_VIT_PRESETS", "vit_kwargs_from_hf_config", "window_entries"]

DETR_VIT_TYPES = ("rf_detr_dinov2", "lw_detr_vit")


def _out_blocks(c: Mapping) -> list[int]:
    """Our ``out_indices`` (0-based blocks) for a config's stage ``out_indices``."""
    stages = c.get("out_indices") or [c.get("num_hidden_layers", 12)]  # HF: the last stage
    if min(stages) < 1:
        raise CheckpointError(
            f"{c.get('_file', 'config.json')}: out_indices {list(stages)} include stage 0 (the "
            "patch embedding), which the ViT backbone does not return"
        )
    return [s - 1 for s in stages]


def _num_windows(c: Mapping) -> int:
    """Windows per side: RF-DETR's ``num_windows``, the square root of LW-DETR's."""
    if c.get("model_type") == "lw_detr_vit":
        return math.isqrt(c.get("num_windows", 16))
    return c.get("num_windows", 4)


def _window_blocks(c: Mapping) -> list[int]:
    """The windowed blocks that run (up to the last output); none without windows."""
    last = max(_out_blocks(c))
    if _num_windows(c) == 1:
        return []
    if c.get("model_type") == "lw_detr_vit":
        listed = c.get("window_block_indices", ())
    else:  # RfDetrDinov2Config: every block up to the last output stage but the output stages
        listed = c.get("window_block_indexes")
        if listed is None:
            listed = set(range(last + 2)) - set(c.get("out_indices") or [last + 1])
    return sorted(i for i in listed if i <= last)


def window_entries(final_norm: bool) -> list[ConfigEntry]:
    """The config rows for windows and outputs (and ``apply_layernorm`` with ``final_norm``)."""
    rows = [
        ConfigEntry("num_windows", _num_windows, lambda m: m.num_windows,
                    lambda v: f"num_windows={v}"),
        ConfigEntry("out_indices (stage s is block s - 1)", _out_blocks,
                    lambda m: list(m.out_indices), lambda v: f"out_indices={v}"),
        ConfigEntry(
            "window_block_indices / window_block_indexes (up to the last output)",
            _window_blocks,
            lambda m: [i for i in m.window_block_indices if i <= m.out_indices[-1]]
            if m.num_windows > 1 else [],
            lambda v: f"window_block_indices={v}",
        ),
    ]  # fmt: skip
    if final_norm:
        rows.append(
            ConfigEntry(
                "apply_layernorm",
                lambda c: bool(c.get("apply_layernorm", True)),
                lambda m: not isinstance(m.norm, nn.Identity),
                lambda v: f"final_norm={v}",
            )
        )
    return rows


def _mlp(c: Mapping) -> dict:
    hidden = int(c.get("hidden_size", 768) * c.get("mlp_ratio", 4))
    if c.get("use_swiglu_ffn"):
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        return dict(mlp_ratio=hidden / c.get("hidden_size", 768), mlp_layer="gated",
                    act_layer="silu")  # fmt: skip
    return dict(mlp_ratio=hidden / c.get("hidden_size", 768), act_layer=hf_act(c))


def vit_kwargs_from_hf_config(config: Mapping) -> dict:
    """``dict(type='ViT', ...)`` building the backbone an ``rf_detr_dinov2`` / ``lw_detr_vit``
    config (a ``backbone_config`` of an RF-DETR / LW-DETR ``config.json``) describes.

    The model's ``img_size`` is the grid its position embedding was stored for, so that a
    load does not resize it (HF resizes it at run time, from that grid).
    """
    c = config
    kind = c.get("model_type")
    if kind not in DETR_VIT_TYPES:
        raise CheckpointError(
            f"{c.get('_file', 'config.json')}: model_type {kind!r} is not an RF-DETR / LW-DETR "
            f"ViT ({', '.join(DETR_VIT_TYPES)})"
        )
    common = dict(
        type="ViT",
        patch_size=c.get("patch_size", 14 if kind == "rf_detr_dinov2" else 16),
        embed_dim=c.get("hidden_size", 768),
        depth=c.get("num_hidden_layers", 12),
        num_heads=c.get("num_attention_heads", 12),
        qkv_bias=c.get("qkv_bias", True),
        norm_layer=f"LN_{c.get('layer_norm_eps', 1e-6)}",
        num_windows=_num_windows(c),
        window_block_indices=_window_blocks(c),
        out_indices=_out_blocks(c),
        **_mlp(c),
    )
    if kind == "rf_detr_dinov2":
        return dict(
            common,
            img_size=c.get("image_size", 224),
            init_values=c.get("layerscale_value", 1.0),
            pos_embed_antialias=True,
            final_norm=bool(c.get("apply_layernorm", True)),
        )
    return dict(
        common,
        img_size=c.get("pretrain_image_size", 224),
        class_token=False,
        abs_pos_embed=c.get("use_absolute_position_embeddings", True),
        init_values=c.get("cae_init_values", 0.1),
        final_norm=False,
    )


# -- the published backbones as ViT presets (registered with the others in vit.py) ----------
# RF-DETR: windowed DINOv2-S; outputs after the blocks before the global ones (base: patch 14,
# 518 px position grid, 4 x 4 windows; nano / small / medium / large: patch 16, 2 x 2 windows,
# position grid of 384 / 512 / 576 / 704 px: set img_size)
_RF_DETR = dict(init_values=1.0, pos_embed_antialias=True)
_RF_DETR_BASE = dict(
    patch_size=14, img_size=518, num_windows=4, out_indices=(1, 4, 7, 10),
    window_block_indices=(0, 1, 3, 4, 6, 7, 9, 10), **_RF_DETR,
)  # fmt: skip
_RF_DETR_16 = dict(
    patch_size=16, img_size=512, num_windows=2, out_indices=(2, 5, 8, 11),
    window_block_indices=(0, 1, 2, 4, 5, 7, 8, 10, 11), **_RF_DETR,
)  # fmt: skip
# LW-DETR: CAE ViT, 12 heads, 4 x 4 windows, no class token or final norm (small .. xlarge:
# 10 blocks; tiny: depth=6, window_block_indices=(0, 2, 4), out_indices=(1, 3, 5))
_LW_DETR = dict(
    img_size=224, num_heads=12, class_token=False, init_values=0.1, final_norm=False,
    num_windows=4, window_block_indices=(0, 1, 3, 6, 7, 9), out_indices=(2, 4, 5, 9),
)  # fmt: skip
DETR_VIT_PRESETS: dict[str, dict] = {
    "vit_small_patch14_rf_detr": dict(embed_dim=384, depth=12, num_heads=6, **_RF_DETR_BASE),
    "vit_small_patch16_rf_detr": dict(embed_dim=384, depth=12, num_heads=6, **_RF_DETR_16),
    "vit_tiny_patch16_lw_detr": dict(embed_dim=192, depth=10, **_LW_DETR),
    "vit_small_patch16_lw_detr": dict(embed_dim=384, depth=10, **_LW_DETR),
    "vit_base_patch16_lw_detr": dict(embed_dim=768, depth=10, **_LW_DETR),
}
