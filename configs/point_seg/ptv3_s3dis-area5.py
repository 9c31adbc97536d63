# Point Transformer V3 on S3DIS, Area 5 held out (13 classes), Pointcept's published recipe
# (configs/s3dis/semseg-pt-v3m1-0-base.py; model and optimizer in
# configs/_base_/models/ptv3_base.py): 5 % warm-up from 1/10 then cosine (their OneCycleLR),
# 3000 passes over the training rooms, validated every 30; batch 12 (over all GPUs). Data
# (configs/_base_/datasets/s3dis.py): Pointcept's processed folders,
# data/s3dis/Area_{1..6}/<room>/ with coord / color / normal / segment .npy; Areas 1-4 and 6
# train, Area 5 validates; no colour augmentations yet.
_base_ = [
    "../_base_/models/ptv3_base.py",
    "../_base_/datasets/s3dis.py",
    "../_base_/default_runtime.py",
]

num_classes = 13
model = dict(head=dict(num_classes=num_classes))
# batch 12 as Pointcept (over all GPUs; the dataset base has 2)
train_dataloader = dict(batch_size=12)

max_epochs = 3000
param_scheduler = [
    dict(
        type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=150,
        convert_to_iter_based=True,
    ),
    dict(
        type="CosineAnnealingLR", by_epoch=True, begin=150, eta_min=0.006 / 1e4,
        convert_to_iter_based=True,
    ),
]  # fmt: skip
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=30)
default_hooks = dict(checkpoint=dict(interval=30, max_keep_ckpts=2, save_best="seg/mIoU"))
