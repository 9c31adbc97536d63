"""The published DINO architecture (Zhang et al., 2022, "DINO: DETR with Improved DeNoising
Anchor Boxes for End-to-End Object Detection"; IDEA-Research/DINO, detrex) as our ``model=``
config: ``TaskModel(TimmBackbone ResNet, DETRHead)`` with contrastive denoising and mixed
query selection. :func:`~.convert_dino.dino_model_config` fills its arguments from a
checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["dino_model"]


def dino_model(
    num_classes: int = 91,
    embed_dims: int = 256,
    backbone: Mapping | None = None,
    in_channels: Mapping[str, int] | None = None,
    strides: Mapping[str, int] | None = None,
    num_feature_levels: int = 4,
    encoder_layers: int = 6,
    decoder_layers: int = 6,
    ffn_dims: int = 2048,
    num_heads: int = 8,
    num_points: int = 4,
    num_queries: int = 900,
    num_dn_queries: int = 100,
    box_noise_scale: float = 0.4,
    share_pred_heads: bool = True,
    temperature: float = 20,
    offset: float = 0.0,
) -> dict:
    """Our ``model=`` dict of the published DINO architecture (defaults: IDEA-Research's
    DINO-4scale R50, ``configs/_base_/models/dino_r50.py``); ``backbone``: TimmBackbone
    arguments (default ResNet-50 levels p3-p5, frozen batch norms, stem + layer1 frozen)."""
    deform = dict(type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=num_heads,
                  num_levels=num_feature_levels, num_points=num_points)  # fmt: skip
    ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=ffn_dims)
    backbone = dict(backbone or dict(model_name="resnet50", out_indices=(2, 3, 4)))
    backbone = dict(dict(type="TimmBackbone", frozen_bn=True, frozen_stages=1), **backbone)
    head = dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=num_queries,
        in_channels=dict(in_channels or dict(p3=512, p4=1024, p5=2048)),
        strides=dict(strides or dict(p3=8, p4=16, p5=32)),
        num_feature_levels=num_feature_levels,
        input_bias=True,
        mask_padded_inputs=False,
        positional_encoding=dict(
            type="SinePositionalEncoding",
            num_feats=embed_dims // 2,
            temperature=temperature,
            offset=offset,
        ),  # fmt: skip
        encoder=dict(
            type="DetrEncoder",
            num_layers=encoder_layers,
            layer=dict(type="DetrEncoderLayer", self_attn=deform, ffn=ffn),
        ),  # fmt: skip
        decoder=dict(
            type="DetrDecoder",
            num_layers=decoder_layers,
            refine_from="raw",
            logit_eps=1e-3,
            query_pos_frame="padded",
            ref_point_head=dict(
                type="DetrMLP",
                in_dims=2 * embed_dims,
                hidden_dims=embed_dims,
                out_dims=embed_dims,
                num_layers=2,
            ),  # fmt: skip
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(
                    type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=num_heads
                ),  # fmt: skip
                cross_attn=deform,
                ffn=ffn,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        two_stage=True,
        with_box_refine=True,
        mixed_query_selection=True,
        look_forward_twice=True,
        share_pred_heads=share_pred_heads,
        select_invalid_proposals=True,
        denoising=dict(
            type="CdnQueryGenerator",
            num_classes=num_classes,
            embed_dims=embed_dims,
            num_dn_queries=num_dn_queries,
            box_noise_scale=box_noise_scale,
        ),
        test_cfg=dict(max_per_img=300),
    )
    return dict(
        type="TaskModel",
        data_preprocessor=dict(type="DataPreprocessor"),
        backbone=backbone,
        neck=None,
        head=head,
    )
