# Deformable DETR (Zhu et al., 2021) with iterative box refinement and two-stage proposals,
# on a plain ViT with ViTDet's simple feature pyramid. Sizes here are the small demo model;
# real-scale configs override backbone / widths.
num_classes = 5
embed_dims = 128
_deform = dict(
    type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=8, num_levels=3, num_points=4
)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=4 * embed_dims)

model = dict(
    type="Detector",
    data_preprocessor=dict(type="DataPreprocessor", size_divisor=32),
    backbone=dict(
        type="ViT",
        img_size=224,
        patch_size=8,
        embed_dim=96,
        depth=4,
        num_heads=4,
        class_token=False,
    ),
    neck=dict(
        type="SimpleFeaturePyramid",
        in_channels=96,
        out_channels=embed_dims,
        scale_factors=(1.0, 0.5),
        in_stride=8,
    ),
    head=dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=100,
        in_channels=dict(p3=embed_dims, p4=embed_dims),
        strides=dict(p3=8, p4=16),
        num_feature_levels=3,
        positional_encoding=dict(
            type="SinePositionalEncoding", num_feats=embed_dims // 2, offset=-0.5
        ),
        encoder=dict(
            type="DetrEncoder",
            num_layers=2,
            layer=dict(type="DetrEncoderLayer", self_attn=_deform, ffn=_ffn),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=3,
            norm_layer=None,
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8),
                cross_attn=_deform,
                ffn=_ffn,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        two_stage=True,
        with_box_refine=True,
        loss_cls=2.0,
        loss_bbox=5.0,
        loss_giou=2.0,
        test_cfg=dict(max_per_img=100),
    ),
)
