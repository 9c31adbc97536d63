"""Our ``model=`` config of a published Mask2Former on Swin (the ``model_config`` of the
``'mask2former'`` published family, see :mod:`.convert`), from its Hugging Face
``config.json`` or, for an original (facebookresearch) checkpoint, from its tensors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = ["COCO_PANOPTIC_THINGS", "mask2former_model_config"]

# HF's prefixes (shared with .convert)
_BACKBONE = "model.pixel_level_module.encoder."
_PIXEL = "model.pixel_level_module.decoder."
_TRANSFORMER = "model.transformer_module."

COCO_PANOPTIC_THINGS = 80  # HF's 133 COCO panoptic labels: 80 things, then 53 stuff


def mask2former_model_config(sd: Mapping[str, torch.Tensor], config: Mapping | None) -> dict:
    """Our ``model=`` dict for a published Mask2Former on Swin, from its ``config.json``
    (HF) or, for an original checkpoint without one, from the tensors' names and shapes
    (heads from the deformable attention's offsets at the repo's 4 points; ReLU).

    Classes: 133 labels are COCO panoptic (80 things + 53 stuff); any other count is taken as
    all things (instance or semantic models, whose outputs do not depend on the split).
    """
    from .convert import is_original_mask2former_checkpoint, original_to_hf

    if config is None and is_original_mask2former_checkpoint(sd):
        hf, official, _ = original_to_hf(sd)
        sd = {**hf, **{_BACKBONE + k: v for k, v in official.items()}}
    c = dict(config or {})
    weight = sd["class_predictor.weight"]
    num_classes = weight.shape[0] - 1
    dims = weight.shape[1]
    feature = sd[_PIXEL + "level_embed"].shape[1]
    mask_dims = sd[_PIXEL + "mask_projection.weight"].shape[0]
    layers = {int(m[1]) for k in sd if (m := re.match(_TRANSFORMER + r"decoder\.layers\.(\d+)", k))}
    enc = {int(m[1]) for k in sd if (m := re.match(_PIXEL + r"encoder\.layers\.(\d+)\.", k))}
    # deformable attention: heads x 3 levels x 4 points x (x, y) offsets (the repo's points)
    heads = c.get(
        "num_attention_heads",
        sd[_PIXEL + "encoder.layers.0.self_attn.sampling_offsets.weight"].shape[0] // 24,
    )
    enc_ffn = sd[_PIXEL + "encoder.layers.0.fc1.weight"].shape[0]
    dec_ffn = sd[_TRANSFORMER + "decoder.layers.0.fc1.weight"].shape[0]
    num_queries = sd[_TRANSFORMER + "queries_features.weight"].shape[0]
    things = COCO_PANOPTIC_THINGS if num_classes == 133 else num_classes
    backbone = _swin_config(sd, c.get("backbone_config") or {})
    widths = [backbone["embed_dim"] * 2**i for i in range(len(backbone["depths"]))]
    names = [f"p{i + 2}" for i in range(len(widths))]
    deform = dict(type="DeformableMemoryAttention", embed_dims=feature, num_heads=heads,
                  num_levels=3, num_points=4)  # fmt: skip
    attn = dict(type="DetrMultiheadAttention", embed_dims=dims, num_heads=heads)
    act = c.get("activation_function", "relu")
    return dict(
        type="TaskModel",
        data_preprocessor=dict(type="DataPreprocessor", size_divisor=32),
        backbone=backbone,
        neck=None,
        head=dict(
            type="Mask2FormerHead",
            num_things_classes=things,
            num_stuff_classes=num_classes - things,
            num_queries=num_queries,
            level_embed_on="feats",
            mask_padding=False,
            pixel_decoder=dict(
                type="MSDeformAttnPixelDecoder",
                in_channels=dict(zip(names, widths)),
                strides=dict(zip(names, (4, 8, 16, 32))),
                embed_dims=feature,
                mask_dims=mask_dims,
                num_encoder_levels=3,
                input_bias=True,
                encoder=dict(
                    type="DetrEncoder",
                    num_layers=len(enc),
                    layer=dict(
                        type="DetrEncoderLayer",
                        self_attn=deform,
                        ffn=dict(type="DetrFFN", embed_dims=feature, feedforward_dims=enc_ffn),
                    ),
                ),  # fmt: skip
            ),
            transformer_decoder=dict(
                type="MaskedAttentionDecoder",
                num_layers=len(layers),
                layer=dict(
                    type="MaskedAttentionDecoderLayer",
                    cross_attn=attn,
                    self_attn=attn,
                    ffn=dict(
                        type="DetrFFN", embed_dims=dims, feedforward_dims=dec_ffn, act_layer=act
                    ),
                ),
            ),  # fmt: skip
            matcher=dict(
                type="MaskHungarianMatcher", cost_class=2.0, cost_mask=5.0, cost_dice=5.0
            ),  # fmt: skip
            test_cfg=dict(max_per_image=num_queries, postprocess="detectron2"),
        ),
    )


def _swin_config(sd: Mapping[str, torch.Tensor], backbone_config: Mapping) -> dict:
    """Our Swin backbone dict from HF's ``backbone_config`` or the tensors' shapes."""
    keys = [k[len(_BACKBONE) :] for k in sd if k.startswith(_BACKBONE)]
    depth: dict[int, int] = {}
    for k in keys:
        if m := re.search(r"layers\.(\d+)\.blocks\.(\d+)\.", k):
            depth[int(m[1])] = max(depth.get(int(m[1]), 0), int(m[2]) + 1)
    depths = backbone_config.get("depths") or [depth[i] for i in sorted(depth)]
    embed = next(
        sd[_BACKBONE + k].shape[0]
        for k in keys
        if k.endswith(("patch_embeddings.projection.weight", "patch_embed.proj.weight"))
    )
    heads = backbone_config.get("num_heads")
    if heads is None:  # from the bias tables: (rows, heads) per block
        tables = {int(m[1]): sd[_BACKBONE + k].shape[1] for k in keys
                  if (m := re.search(r"layers\.(\d+)\.blocks\.0\..*relative_position_bias_table$",
                                     k))}  # fmt: skip
        heads = [tables[i] for i in sorted(tables)]
    rows = next(sd[_BACKBONE + k].shape[0] for k in keys if k.endswith("bias_table"))
    window = backbone_config.get("window_size", (int(rows**0.5) + 1) // 2)
    return dict(
        type="SwinTransformer",
        embed_dim=int(backbone_config.get("embed_dim", embed)),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_size=window,
        mlp_ratio=backbone_config.get("mlp_ratio", 4.0),
        drop_path_rate=backbone_config.get("drop_path_rate", 0.3),
        out_indices=tuple(range(len(depths))),
        always_partition=True,
    )
