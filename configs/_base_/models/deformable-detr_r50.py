# Deformable DETR R50 (Zhu et al., ICLR 2021), the architecture of the published
# SenseTime/deformable-detr (HF) and r50_deformable_detr-checkpoint.pth
# (fundamentalvision/Deformable-DETR): ResNet-50 levels p3-p5 (frozen batch norms, stem +
# layer1 frozen) + one stride-64 level made by the input projection (biased 1x1 / 3x3 convs +
# GroupNorm), 256 wide, 6 + 6 post-norm layers, 8 heads, 4 points, FFN 1024, dropout 0.1,
# 300 learned queries with 2-d reference points, no decoder norm, sine positions with the
# pixel-centre offset -0.5, 91 classes indexed by COCO category id (HF's id2label).
# The same model as visionfm.heads.detr.deformable_detr_config.deformable_detr_model() builds;
# box refinement / two-stage: see configs/deformable_detr/*_refine_* / *_two-stage_*.
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
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=1024, dropout=0.1)

model = dict(
    type="Detector",
    data_preprocessor=dict(type="DataPreprocessor"),  # ImageNet mean / std, RGB
    backbone=dict(
        type="TimmBackbone",
        model_name="resnet50",
        out_indices=(2, 3, 4),
        frozen_bn=True,
        frozen_stages=1,
    ),
    neck=None,
    head=dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=300,
        in_channels=dict(p3=512, p4=1024, p5=2048),
        strides=dict(p3=8, p4=16, p5=32),
        num_feature_levels=num_levels,
        input_bias=True,
        mask_padded_inputs=False,  # as the original and HF: padded batches give their outputs
        positional_encoding=dict(
            type="SinePositionalEncoding", num_feats=embed_dims // 2, offset=-0.5
        ),
        encoder=dict(
            type="DetrEncoder",
            num_layers=6,
            layer=dict(type="DetrEncoderLayer", self_attn=_deform, ffn=_ffn, dropout=0.1),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=6,
            norm_layer=None,
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(
                    type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8, dropout=0.1
                ),
                cross_attn=_deform,
                ffn=_ffn,
                dropout=0.1,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        two_stage=False,
        with_box_refine=False,
        select_invalid_proposals=False,
        class_agnostic_proposals=False,
        loss_cls=2.0,
        loss_bbox=5.0,
        loss_giou=2.0,
        test_cfg=dict(max_per_img=100),
    ),
)
