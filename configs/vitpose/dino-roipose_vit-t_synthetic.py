# One model, two tasks (DINO-X style): a small DINO detection head and a RoI pose head share
# one ViT + simple-feature-pyramid pass over the synthetic images. The pose head RoI-aligns
# each person box on the stride-8 map (ground-truth boxes in training, the detection head's at
# test time, so 'det' comes before 'pose') and decodes ViTPose-style heatmaps.
_base_ = [
    "../_base_/models/dino_vit_sfp.py",
    "../_base_/datasets/synthetic_instances.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

person_label = 4  # 'person' is the 5th synthetic class (COCO id 5)
image_scale = (128, 128)
# The base model's DINO head (read from mmengine's `_base_`) becomes the 'det' head, with 30
# queries as in configs/dino/dino_vit-t_synthetic.py (the synthetic images hold at most 6 objects).
num_queries = 30

model = dict(
    # from scratch on CPU a convolutional stem trains much faster than a patch projection
    backbone=dict(embed_layer="conv"),
    head=dict(
        _delete_=True,
        det=dict(
            _base_.model.head,
            num_queries=num_queries,
            denoising=dict(_base_.model.head.denoising, num_dn_queries=30),
            test_cfg=dict(max_per_img=num_queries),
        ),
        pose=dict(
            type="RoIPoseHead",
            person_label=person_label,
            in_key="p3",
            roi_size=(16, 12),
            decoder=dict(
                type="ClassicDecoder",
                in_channels=_base_.embed_dims,
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
