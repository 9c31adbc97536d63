# Grounding DINO Swin-T pre-training on ODVG json lines (Objects365 detection lines with
# class prompts + GoldG grounding lines, the layout of GroundingDINO / mm-grounding-dino),
# 12 epochs, AdamW 4e-4 (backbone and text encoder x0.1); evaluated as open-vocabulary
# detection on COCO val2017 with all 80 class names as the prompt.
_base_ = [
    "../_base_/models/grounding_dino_swin-t.py",
    "../_base_/default_runtime.py",
]
data_root = "data/"
on_error = "raise"
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", prob=0.5),  # swaps "left" / "right" in grounding captions
    dict(
        type="RandomChoiceResize",
        scales=[(1333, s) for s in (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)],
        keep_ratio=True,
    ),
    dict(type="PackInputs"),
]
# ground truth loaded after Resize: the metrics compare it with predictions at original size
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackInputs"),
]
_odvg = dict(type="ODVGDataset", data_root=data_root, on_error=on_error, pipeline=train_pipeline)
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type="ConcatDataset",
        datasets=[
            dict(
                **_odvg,
                ann_file="objects365v1/o365v1_train_odvg.json",
                label_map_file="objects365v1/o365v1_label_map.json",
                data_prefix=dict(img="objects365v1/train/"),
            ),
            dict(
                **_odvg,
                ann_file="flickr30k_entities/final_flickr_separateGT_train_vg.json",
                data_prefix=dict(img="flickr30k_entities/flickr30k_images/"),
            ),
            dict(
                **_odvg,
                ann_file="gqa/final_mixed_train_no_coco_vg.json",
                data_prefix=dict(img="gqa/images/"),
            ),
        ],
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="CocoGroundingDataset",
        data_root=data_root,
        on_error=on_error,
        ann_file="coco/annotations/instances_val2017.json",
        data_prefix=dict(img="coco/val2017/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(
    type="CocoMetric", ann_file=data_root + "coco/annotations/instances_val2017.json"
)
test_evaluator = val_evaluator

max_epochs = 12
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=4e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={"backbone": dict(lr_mult=0.1), "text_encoder.model": dict(lr_mult=0.1)}
    ),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type="MultiStepLR", by_epoch=True, begin=0, end=max_epochs, milestones=[11], gamma=0.1),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=64)
