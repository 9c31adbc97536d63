# DETR (Carion et al., 2020) on a plain ViT: a transformer encoder-decoder with global
# attention over one stride-16 map (ViTDet's simple feature pyramid, one level) and learned
# queries. Sizes here are the small demo model; real-scale configs override backbone / widths.
num_classes = 5
embed_dims = 128

_attn = dict(type="GlobalMemoryAttention", embed_dims=embed_dims, num_heads=8, dropout=0.1)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=4 * embed_dims, dropout=0.1)

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
        scale_factors=(0.5,),  # the stride-8 ViT map -> one stride-16 level
        in_stride=8,
    ),
    head=dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=100,
        in_channels=dict(p4=embed_dims),
        strides=dict(p4=16),
        input_norm=None,
        positional_encoding=dict(type="SinePositionalEncoding", num_feats=embed_dims // 2),
        encoder=dict(
            type="DetrEncoder",
            num_layers=2,
            layer=dict(type="DetrEncoderLayer", self_attn=_attn, ffn=_ffn, dropout=0.1),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=3,
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(
                    type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8, dropout=0.1
                ),
                cross_attn=_attn,
                ffn=_ffn,
                dropout=0.1,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        loss_cls=2.0,
        test_cfg=dict(max_per_img=100),
    ),
)
