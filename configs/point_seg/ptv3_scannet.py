# Point Transformer V3 on ScanNet v2 (20 classes), Pointcept's published recipe
# (configs/scannet/semseg-pt-v3m1-0-base.py; model and optimizer in
# configs/_base_/models/ptv3_base.py): 5 % warm-up from 1/10 then cosine (their OneCycleLR),
# 800 passes over the training scenes, validated every 8; batch 12 (over all GPUs). Data
# (configs/_base_/datasets/scannet.py): Pointcept's processed folders,
# data/scannet/{train,val}/sceneXXXX_XX/ with coord / color / normal / segment20 .npy; no
# chromatic auto-contrast / translation / jitter and no mix3d yet.
_base_ = [
    "../_base_/models/ptv3_base.py",
    "../_base_/datasets/scannet.py",
    "../_base_/default_runtime.py",
]

num_classes = 20
model = dict(head=dict(num_classes=num_classes))
# batch 12 as Pointcept (over all GPUs; the dataset base has 2)
train_dataloader = dict(batch_size=12)

max_epochs = 800
param_scheduler = [
    dict(
        type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=40,
        convert_to_iter_based=True,
    ),
    dict(
        type="CosineAnnealingLR", by_epoch=True, begin=40, eta_min=0.006 / 1e4,
        convert_to_iter_based=True,
    ),
]  # fmt: skip
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=8)
default_hooks = dict(checkpoint=dict(interval=8, max_keep_ckpts=2, save_best="seg/mIoU"))
