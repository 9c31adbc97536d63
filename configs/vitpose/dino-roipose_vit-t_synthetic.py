# One model, two tasks (DINO-X style): a small DINO detection head and a RoI pose head share
# one ViT + simple-feature-pyramid pass over the synthetic images. The pose head RoI-aligns
# each person box on the stride-8 map (ground-truth boxes in training, the detection head's at
# test time, so 'det' comes before 'pose') and decodes ViTPose-style heatmaps.
_base_ = [
    "../_base_/datasets/synthetic_instances.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

num_classes = 5
person_label = 4  # 'person' is the 5th synthetic class (COCO id 5)
embed_dims = 128
image_scale = (128, 128)
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
        embed_layer="conv",
    ),
    neck=dict(
        type="SimpleFeaturePyramid",
        in_channels=96,
        out_channels=embed_dims,
        scale_factors=(1.0, 0.5),
        in_stride=8,
    ),
    head=dict(
        det=dict(
            type="DETRHead",
            num_classes=num_classes,
            embed_dims=embed_dims,
            num_queries=30,
            in_channels=dict(p3=embed_dims, p4=embed_dims),
            strides=dict(p3=8, p4=16),
            num_feature_levels=3,
            encoder=dict(
                type="DetrEncoder",
                num_layers=2,
                layer=dict(type="DetrEncoderLayer", self_attn=_deform, ffn=_ffn),
            ),
            decoder=dict(
                type="DetrDecoder",
                num_layers=3,
                ref_point_head=dict(
                    type="DetrMLP",
                    in_dims=2 * embed_dims,
                    hidden_dims=embed_dims,
                    out_dims=embed_dims,
                    num_layers=2,
                ),
                layer=dict(
                    type="DetrDecoderLayer",
                    self_attn=dict(
                        type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8
                    ),
                    cross_attn=_deform,
                    ffn=_ffn,
                ),
            ),
            matcher=dict(type="HungarianMatcher"),
            two_stage=True,
            with_box_refine=True,
            mixed_query_selection=True,
            look_forward_twice=True,
            denoising=dict(
                type="CdnQueryGenerator",
                num_classes=num_classes,
                embed_dims=embed_dims,
                num_dn_queries=30,
            ),
            test_cfg=dict(max_per_img=30),
        ),
        pose=dict(
            type="RoIPoseHead",
            person_label=person_label,
            in_key="p3",
            roi_size=(16, 12),
            decoder=dict(
                type="ClassicDecoder",
                in_channels=embed_dims,
                out_channels=17,
                deconv_channels=(64,),
                deconv_kernels=(4,),
            ),
            sigma=1.5,
        ),
    ),
)

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True, with_keypoints=True),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="PackInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# keypoint AP of the person instances (boxes from the detection head, scores rescored by the
# keypoint confidences) on the base's instances_val.json; list a CocoMetric too for box AP
val_evaluator = dict(type="CocoKeypointMetric")
test_evaluator = val_evaluator
max_epochs = 5
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="coco/kpt_AP", rule="greater")
)
