# DETR R50 on COCO 2017 detection (facebookresearch/detr's recipe: AdamW lr 1e-4, backbone
# x0.1, weight decay 1e-4, gradient clip 0.1, 2 images per GPU on 8 GPUs (its README), 500
# epochs with lr x0.1 after 400 (the published models; the repo's default is 300 / 200);
# multi-scale training 480-800 px short side, max 1333 (DETR's extra random-crop branch is
# left out); test at 800 / 1333).
# The 80 COCO categories as CocoDataset numbers them: the published 92-row checkpoint (91 COCO
# category ids + no object) loads into them by the categories' rows, so it evaluates as it is:
#   python tools/test.py configs/detr/detr_r50_coco.py <facebook/detr-resnet-50 folder>
# (published COCO val5k box AP 42.0 at 500 epochs: facebookresearch/detr README model zoo;
# R50-DC5 43.3, R101 43.5, R101-DC5 44.9. The 80-category softmax leaves out the 11 unused
# ids' logits: scores are renormalised over the categories). Fine-tune from it with
# --cfg-options load_from=<folder> (a dataset of other classes re-initialises the class head).
_base_ = [
    "../_base_/models/detr_r50.py",
    "../_base_/datasets/coco_detection_detr.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

num_classes = 80
model = dict(head=dict(num_classes=num_classes))

train_dataloader = dict(batch_size=2)

lr = 1e-4
optim_wrapper = dict(
    optimizer=dict(lr=lr),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),
)
max_epochs = 500
param_scheduler = [dict(type="MultiStepLR", by_epoch=True, milestones=[400], gamma=0.1)]
train_cfg = dict(max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="coco/bbox_mAP"))
