# Deformable DETR R50 on COCO 2017 detection, 50 epochs (fundamentalvision/Deformable-DETR's
# main.py defaults: AdamW lr 2e-4, backbone 2e-5, reference points and sampling offsets x0.1,
# weight decay 1e-4, gradient clip 0.1, lr x0.1 after epoch 40, total batch 32; multi-scale
# training 480-800 px short side, max 1333 (the original's extra random-crop branch is left
# out); test at 800 / 1333).
# The 80 COCO categories as CocoDataset numbers them: the published 91-row weights (COCO
# category ids) load into them by the categories' rows, so they evaluate as they are:
#   python tools/test.py configs/deformable_detr/deformable-detr_r50_coco.py \
#       checkpoints/deformable-detr/           (SenseTime/deformable-detr, save_pretrained)
#   (or r50_deformable_detr-checkpoint.pth of the original repo)
# Published COCO val box AP of the released checkpoint (fundamentalvision/Deformable-DETR
# README, Main Results): 44.5.
# Variants: deformable-detr_r50_refine_coco.py (46.2), deformable-detr_r50_two-stage_coco.py
# (46.9). Train from an ImageNet ResNet-50:
#   --cfg-options model.backbone.checkpoint=resnet50.tv_in1k.safetensors
_base_ = [
    "../_base_/models/deformable-detr_r50.py",
    "../_base_/datasets/coco_detection_detr.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

num_classes = 80
model = dict(head=dict(num_classes=num_classes))

train_dataloader = dict(batch_size=4)

lr = 2e-4
optim_wrapper = dict(
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(
        custom_keys={
            "backbone": dict(lr_mult=0.1),
            "sampling_offsets": dict(lr_mult=0.1),
            "queries.point_head": dict(lr_mult=0.1),
        }
    ),
)
param_scheduler = [dict(type="MultiStepLR", by_epoch=True, milestones=[40], gamma=0.1)]
train_cfg = dict(max_epochs=50)
auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="coco/bbox_mAP"))
