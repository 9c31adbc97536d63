# RF-DETR-S on COCO 2017 detection at its native 512 x 512 (square resize, as the published
# model is evaluated; published COCO val AP 53.0, AP50 72.1: roboflow/rf-detr README, v1.4.1).
# The 80 COCO categories as CocoDataset numbers them: the published 91-row checkpoint (COCO
# category ids) loads into them by the categories' rows, so it evaluates as it is:
#   python tools/test.py configs/rf_detr/rf-detr_small_coco.py <rf-detr-small HF folder>
# Fine-tune from it with --cfg-options load_from=<folder>. The schedule follows roboflow's
# training defaults where our runner has them: AdamW lr 1e-4 (backbone x1.5), weight decay
# 1e-4, gradient clip 0.1, batch 16, multi-scale square training sizes around 512, an EMA of
# the weights; left out: the ViT's layer-wise lr decay 0.8 and drop path.
_base_ = [
    "../_base_/models/rf-detr_small.py",
    "../_base_/datasets/coco_detection.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

num_classes = 80
model = dict(head=dict(num_classes=num_classes))

image_size = 512
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", prob=0.5),
    dict(
        type="RandomChoiceResize",
        scales=[(s, s) for s in range(image_size - 128, image_size + 129, 32)],
        keep_ratio=False,
    ),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=(image_size, image_size), keep_ratio=False),
    dict(type="PackInputs"),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=1.5)}),
)
max_epochs = 100
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="coco/bbox_mAP"))
custom_hooks = [dict(type="EMAHook", momentum=0.007, priority=49)]  # decay 0.993
