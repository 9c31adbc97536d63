# DINO-4scale R50 on COCO 2017 detection, 12 epochs (IDEA-Research/DINO's DINO_4scale.py
# schedule: AdamW lr 1e-4, backbone and sampling offsets x0.1, weight decay 1e-4, gradient
# clip 0.1, lr x0.1 after epoch 11, batch 16; multi-scale training 480-800 px short side, max
# 1333 (DINO's extra random-crop branch is left out); test at 800 / 1333).
# The 80 COCO categories as CocoDataset numbers them: the published 91-row checkpoint (COCO
# category ids) loads into them by the categories' rows, so it evaluates as it is:
#   python tools/test.py configs/dino/dino_r50_4scale_coco.py checkpoint0011_4scale.pth
# (published COCO val box AP, IDEA-Research/DINO README: 49.0 at 12 epochs, 50.4 at 24, 50.9
# at 36). Train from an ImageNet ResNet-50:
#   --cfg-options model.backbone.checkpoint=resnet50.tv_in1k.safetensors
_base_ = [
    "../_base_/models/dino_r50.py",
    "../_base_/datasets/coco_detection_detr.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

num_classes = 80
model = dict(
    head=dict(num_classes=num_classes, denoising=dict(num_classes=num_classes)),
)

train_dataloader = dict(batch_size=2)

lr = 1e-4
optim_wrapper = dict(
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(
        custom_keys={"backbone": dict(lr_mult=0.1), "sampling_offsets": dict(lr_mult=0.1)}
    ),
)
param_scheduler = [dict(type="MultiStepLR", by_epoch=True, milestones=[11], gamma=0.1)]
train_cfg = dict(max_epochs=12)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="coco/bbox_mAP"))
