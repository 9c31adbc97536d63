# Point Transformer V3 on S3DIS, Area 5 held out (13 classes), Pointcept's published recipe
# (configs/s3dis/semseg-pt-v3m1-0-base.py): the ptv3_base backbone (46.2M parameters,
# 2-cm voxels, patches of 1024, drop path 0.3), a linear head on its 64-wide per-point output;
# AdamW 0.006 (blocks 0.0006), weight decay 0.05, 5 % warm-up from 1/10 then cosine (their
# OneCycleLR), 3000 passes over the training rooms, validated every 30; batch 12 (over all
# GPUs). Data (configs/_base_/datasets/s3dis.py): Pointcept's processed folders,
# data/s3dis/Area_{1..6}/<room>/ with coord / color / normal / segment .npy; Areas 1-4 and 6
# train, Area 5 validates.
# Differences from Pointcept, by what this project has: coordinates feed the stem as well
# (in_channels 9 = xyz + colour + normal; Pointcept feeds colour + normal), no Lovasz loss
# (cross-entropy only), no chromatic auto-contrast / translation / jitter and no mix3d;
# xCPE is the pure-PyTorch hashed sparse conv (same arithmetic as spconv's). Train with
# --amp on GPUs, as Pointcept does.
_base_ = ["../_base_/datasets/s3dis.py", "../_base_/default_runtime.py"]

num_classes = 13
# batch 12 as Pointcept (over all GPUs; the dataset base has 2)
train_dataloader = dict(batch_size=12)

model = dict(
    type="PointModel",
    backbone=dict(type="ptv3_base", in_channels=3 + 6),
    head=dict(
        type="PointSegHead", num_classes=num_classes, in_channels=64, hidden_dims=(), dropout=0.0
    ),
    data_preprocessor=dict(type="PointDataPreprocessor"),
)

max_epochs = 3000
lr = 0.006
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=lr, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={"blocks": dict(lr_mult=0.1)}),
)
param_scheduler = [
    dict(
        type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=150,
        convert_to_iter_based=True,
    ),
    dict(
        type="CosineAnnealingLR", by_epoch=True, begin=150, eta_min=lr / 1e4,
        convert_to_iter_based=True,
    ),
]  # fmt: skip
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=30)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(checkpoint=dict(interval=30, max_keep_ckpts=2, save_best="seg/mIoU"))
