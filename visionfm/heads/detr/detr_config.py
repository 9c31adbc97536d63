"""The published DETR architecture (Carion et al., 2020, "End-to-End Object Detection with
Transformers"; facebookresearch/detr, HF ``DetrForObjectDetection``) as our ``model=`` config:
``Detector(TimmBackbone ResNet, DETRHead)``. :func:`~.convert_detr.detr_model_config` fills
its arguments from a checkpoint.
"""

from __future__ import annotations

__all__ = ["detr_model"]


def detr_model(
    num_classes: int = 91,
    embed_dims: int = 256,
    backbone: str = "resnet50",
    dilation: bool = False,
    backbone_channels: int = 2048,
    num_queries: int = 100,
    encoder_layers: int = 6,
    decoder_layers: int = 6,
    encoder_ffn_dims: int = 2048,
    decoder_ffn_dims: int = 2048,
    encoder_heads: int = 8,
    decoder_heads: int = 8,
    act_layer: str = "relu",
    dropout: float = 0.1,
    attention_dropout: float = 0.1,
    activation_dropout: float = 0.1,
    no_object_weight: float = 0.1,
    costs: tuple[float, float, float] = (1.0, 5.0, 2.0),
    loss_weights: tuple[float, float] = (5.0, 2.0),
) -> dict:
    """Our ``model=`` dict of the published DETR architecture (defaults: DETR-R50 as the
    paper trains it; ``configs/_base_/models/detr_r50.py`` writes the same out).

    ``costs``: the matcher's class / L1 / GIoU weights; ``loss_weights``: L1 / GIoU (the
    cross-entropy weighs 1); ``dilation``: DC5 (the last stage at stride 16)."""
    level, stride = ("p4", 16) if dilation else ("p5", 32)

    def ffn(dims: int) -> dict:
        return dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=dims,
                    dropout=activation_dropout, act_layer=act_layer)  # fmt: skip

    def attn(kind: str, heads: int) -> dict:
        return dict(type=kind, embed_dims=embed_dims, num_heads=heads, dropout=attention_dropout)

    backbone_cfg = dict(type="TimmBackbone", model_name=backbone, out_indices=(4,),
                        frozen_bn=True, frozen_stages=1)  # fmt: skip
    if dilation:
        backbone_cfg["output_stride"] = 16
    head = dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=num_queries,
        in_channels={level: backbone_channels},
        strides={level: stride},
        input_norm=None,
        positional_encoding=dict(type="SinePositionalEncoding", num_feats=embed_dims // 2),
        encoder=dict(
            type="DetrEncoder",
            num_layers=encoder_layers,
            layer=dict(
                type="DetrEncoderLayer",
                self_attn=attn("GlobalMemoryAttention", encoder_heads),
                ffn=ffn(encoder_ffn_dims),
                dropout=dropout,
            ),
        ),  # fmt: skip
        decoder=dict(
            type="DetrDecoder",
            num_layers=decoder_layers,
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=attn("DetrMultiheadAttention", decoder_heads),
                cross_attn=attn("GlobalMemoryAttention", decoder_heads),
                ffn=ffn(decoder_ffn_dims),
                dropout=dropout,
            ),
        ),  # fmt: skip
        matcher=dict(
            type="HungarianMatcher",
            cost_class=costs[0],
            cost_bbox=costs[1],
            cost_giou=costs[2],
            classification="softmax",
        ),  # fmt: skip
        classification="softmax",
        no_object_weight=no_object_weight,
        loss_cls=1.0,
        loss_bbox=loss_weights[0],
        loss_giou=loss_weights[1],
        test_cfg=dict(max_per_img=num_queries),
    )
    return dict(
        type="Detector",
        data_preprocessor=dict(type="DataPreprocessor"),
        backbone=backbone_cfg,
        neck=None,
        head=head,
    )
