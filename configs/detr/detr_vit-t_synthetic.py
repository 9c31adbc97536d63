# DETR (Carion et al., 2020): a plain transformer encoder-decoder over one stride-16 map,
# learned queries; trained with focal + L1 + GIoU Hungarian losses like the rest of the family.
# DETR starts slowly (500 epochs on COCO): after these 5 epochs (7 min on one CPU core) bbox
# mAP is still 0.000, every query predicting the same box; lr 1e-4 (DETR's own) is no better.
# For a detector trained on a budget use the Deformable DETR or DINO configs.
_base_ = ["../dino/dino_vit-t_synthetic.py"]

embed_dims = 128
_attn = dict(type="GlobalMemoryAttention", embed_dims=embed_dims, num_heads=8, dropout=0.1)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=4 * embed_dims, dropout=0.1)

model = dict(
    neck=dict(scale_factors=(0.5,)),  # the stride-8 ViT map -> one stride-16 level
    head=dict(
        _delete_=True,
        type="DETRHead",
        num_classes=5,
        embed_dims=embed_dims,
        num_queries=50,
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
        test_cfg=dict(max_per_img=50),
    ),
)
