# DINO-4scale R50 (Zhang et al., ICLR 2023), the architecture of IDEA-Research/DINO's published
# R50 4-scale checkpoints (checkpoint0011_4scale.pth: 12 epochs, checkpoint0033_4scale.pth: 36;
# config/DINO/DINO_4scale.py): ResNet-50 levels p3-p5 + one stride-64 level made by the input
# projection (biased 1x1 / 3x3 convs + GroupNorm), 256 wide, 6 + 6 layers, 8 heads, 4 points,
# 900 queries from two-stage mixed query selection (border / padding tokens selectable, as the
# original code), one class / box head shared by the decoder layers, box refinement from the
# raw decoder output with look-forward-twice, references' logits clamped at 1e-3, padding
# handled as the original code (query positions on level 0's padded map, backbone values kept
# on padded pixels), sine positions at temperature 20, 100 denoising queries, 91 classes
# indexed by COCO category id.
# The same model as visionfm.heads.detr.dino_config.dino_model() builds; load the published
# file with --cfg-options load_from=checkpoint0011_4scale.pth (converted on load, strictly).
# detrex's dino_r50_4scale_12ep.pth differs in: num_classes=80, share_pred_heads=False,
# positional_encoding temperature=10000 with offset=-0.5, denoising box_noise_scale=1.0 and
# the backbone's stem only frozen (frozen_stages=0); tools/convert_checkpoint.py writes it.
num_classes = 91
embed_dims = 256
num_levels = 4

_deform = dict(
    type="DeformableMemoryAttention",
    embed_dims=embed_dims,
    num_heads=8,
    num_levels=num_levels,
    num_points=4,
)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=2048)

model = dict(
    type="TaskModel",
    data_preprocessor=dict(type="DataPreprocessor"),  # ImageNet mean / std, RGB
    backbone=dict(
        type="TimmBackbone",
        model_name="resnet50",
        out_indices=(2, 3, 4),
        frozen_bn=True,  # DINO's FrozenBatchNorm2d
        frozen_stages=1,  # stem + layer1 frozen, as DINO trains layer2-4 only
    ),
    neck=None,
    head=dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=900,
        in_channels=dict(p3=512, p4=1024, p5=2048),
        strides=dict(p3=8, p4=16, p5=32),
        num_feature_levels=num_levels,
        input_bias=True,
        mask_padded_inputs=False,  # padded batches as the original code
        positional_encoding=dict(  # DINO's PositionEmbeddingSineHW: no offset
            type="SinePositionalEncoding", num_feats=embed_dims // 2, temperature=20, offset=0.0
        ),
        encoder=dict(
            type="DetrEncoder",
            num_layers=6,
            layer=dict(type="DetrEncoderLayer", self_attn=_deform, ffn=_ffn),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=6,
            refine_from="raw",
            logit_eps=1e-3,
            query_pos_frame="padded",
            ref_point_head=dict(
                type="DetrMLP",
                in_dims=2 * embed_dims,
                hidden_dims=embed_dims,
                out_dims=embed_dims,
                num_layers=2,
            ),
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
        mixed_query_selection=True,
        look_forward_twice=True,
        share_pred_heads=True,
        select_invalid_proposals=True,
        denoising=dict(
            type="CdnQueryGenerator",
            num_classes=num_classes,
            embed_dims=embed_dims,
            num_dn_queries=100,
            box_noise_scale=0.4,
        ),
        test_cfg=dict(max_per_img=300),
    ),
)
