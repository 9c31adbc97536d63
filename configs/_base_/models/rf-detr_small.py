# RF-DETR-S (Robinson et al., 2025; roboflow/rf-detr RFDETRSmallConfig, HF
# RfDetrForObjectDetection): a windowed DINOv2-S ViT (patch 16, 384 wide, 12 blocks, 2 x 2
# windows in every block but the ones after an output, final LayerNorm on the outputs of
# blocks 2 / 5 / 8 / 11), a projector fusing them into one stride-16 level (C2f, 3 blocks,
# channels-first LayerNorm, SiLU), no transformer encoder, a 3-layer deformable decoder (8
# self-attention heads, 16 cross-attention heads, 2 points, FFN 2048, dropout 0.1), 300
# queries from two-stage mixed query selection whose references are the top-k proposals moved
# by learned 4-d deltas, bbox_reparam boxes, references kept over the layers ("lite"
# refinement), 13 query groups in training (Group DETR), IoU-aware BCE; 91 classes indexed by
# COCO category id as HF's id2label. 32.1 M parameters, as the published model; its native
# resolution is 512 x 512. The same model as lw_detr_model_config() builds from the published
# config.json; the published folder loads with --cfg-options load_from=<folder> (strictly).
num_classes = 91
embed_dims = 256

model = dict(
    type="TaskModel",
    data_preprocessor=dict(type="DataPreprocessor"),  # ImageNet mean / std, RGB
    backbone=dict(
        type="ViT",
        img_size=512,  # the grid the position embedding is stored for (32 x 32)
        patch_size=16,
        embed_dim=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        qkv_bias=True,
        norm_layer="LN_1e-06",
        act_layer="gelu",
        init_values=1.0,
        num_windows=2,
        window_block_indices=[0, 1, 2, 4, 5, 7, 8, 10, 11],
        out_indices=[2, 5, 8, 11],
        pos_embed_antialias=True,
        final_norm=True,
    ),
    neck=dict(
        type="MultiScaleProjector",
        in_channels=dict(block2=384, block5=384, block8=384, block11=384),
        strides=dict(block2=16, block5=16, block8=16, block11=16),
        out_channels=embed_dims,
        scale_factors=[1.0],
        num_blocks=3,
        expansion=0.5,
        norm_layer="LN2d_1e-05",
        act_layer="silu",
        reduce_wide=False,
    ),
    head=dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=300,
        num_groups=13,
        in_channels=dict(p4=embed_dims),
        strides=dict(p4=16),
        encoder=None,
        project_inputs=False,
        decoder=dict(
            type="DetrDecoder",
            num_layers=3,
            box_param="reparam",
            query_pos_frame="padded",  # HF's frame: the same outputs on padded batches too
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
                cross_attn=dict(
                    type="DeformableMemoryAttention",
                    embed_dims=embed_dims,
                    num_heads=16,
                    num_levels=1,
                    num_points=2,
                ),
                ffn=dict(
                    type="DetrFFN",
                    embed_dims=embed_dims,
                    feedforward_dims=2048,
                    dropout=0.1,
                    act_layer="relu",
                ),
                dropout=0.1,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        two_stage=True,
        mixed_query_selection=True,
        anchor_deltas=True,
        cls_loss="iou_aware",
        loss_cls=1.0,
        loss_bbox=5.0,
        loss_giou=2.0,
        test_cfg=dict(max_per_img=300),  # RfDetrImageProcessor's top-k: num_queries
    ),
)
