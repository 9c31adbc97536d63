# Deformable DETR (Zhu et al., 2021) with iterative box refinement and two-stage proposals,
# on the same small ViT + feature pyramid and data as the DINO demo: only the head differs.
_base_ = ["../dino/dino_vit-t_synthetic.py"]

embed_dims = 128
_deform = dict(
    type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=8, num_levels=3, num_points=4
)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=4 * embed_dims)

model = dict(
    head=dict(
        _delete_=True,
        type="DETRHead",
        num_classes=5,
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
    )
)
