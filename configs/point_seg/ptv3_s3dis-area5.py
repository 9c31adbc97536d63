# Point Transformer V3 on S3DIS, Area 5 held out (13 classes), Pointcept's published recipe
# (configs/s3dis/semseg-pt-v3m1-0-base.py): the ptv3_base backbone (46.2M parameters,
# 2-cm voxels, patches of 1024, drop path 0.3), a linear head on its 64-wide per-point output;
# AdamW 0.006 (blocks 0.0006), weight decay 0.05, 5 % warm-up from 1/10 then cosine (their
# OneCycleLR), 3000 passes over the training rooms, validated every 30; batch 12 (over all
# GPUs). Data: Pointcept's processed folders, data/s3dis/Area_{1..6}/<room>/ with
# coord / color / normal / segment .npy; Areas 1-4 and 6 train (read by PointSceneDataset).
# Differences from Pointcept, by what this project has: coordinates feed the stem as well
# (in_channels 9 = xyz + colour + normal; Pointcept feeds colour + normal), no Lovasz loss
# (cross-entropy only), no chromatic auto-contrast / translation / jitter and no mix3d;
# xCPE is the pure-PyTorch hashed sparse conv (same arithmetic as spconv's). Train with
# --amp on GPUs, as Pointcept does.
_base_ = ["../_base_/default_runtime.py"]

num_classes = 13
grid_size = 0.02
dataset_type = "PointSceneDataset"
data_root = "data/s3dis/"
features = ("color", "normal")

train_pipeline = [
    dict(type="CentreShift", apply_z=True),
    dict(type="PointRandomDropout", ratio=0.2, prob=0.2),
    dict(type="PointRandomRotate", axis="z", angle=(-180, 180), prob=0.5),
    dict(type="PointRandomRotate", axis="x", angle=(-180 / 64, 180 / 64)),
    dict(type="PointRandomRotate", axis="y", angle=(-180 / 64, 180 / 64)),
    dict(type="PointRandomScale", scale=(0.9, 1.1)),
    dict(type="PointRandomFlip", axis="x", prob=0.5),
    dict(type="PointRandomFlip", axis="y", prob=0.5),
    dict(type="PointRandomJitter", sigma=0.005, clip=0.02),
    dict(type="ElasticDistortion", params=((0.2, 0.4), (0.8, 1.6))),
    dict(type="PointGridSample", grid_size=grid_size, mode="train"),
    dict(type="SphereCrop", max_points=204800, mode="random"),
    dict(type="CentreShift", apply_z=False),
    dict(type="NormalizeColor"),
    dict(type="PackPointInputs", features=features),
]
test_pipeline = [
    dict(type="CentreShift", apply_z=True),
    dict(type="PointGridSample", grid_size=grid_size, mode="test", fragments=True),
    dict(type="CentreShift", apply_z=False),
    dict(type="NormalizeColor"),
    dict(type="PackPointInputs", features=features),
]

train_dataloader = dict(
    batch_size=12,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type="ConcatDataset",
        datasets=[
            dict(
                type=dataset_type,
                data_root=data_root,
                split=f"Area_{area}",
                num_classes=num_classes,
                pipeline=train_pipeline,
            )
            for area in (1, 2, 3, 4, 6)
        ],
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split="Area_5",
        num_classes=num_classes,
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="PointSegMetric", num_classes=num_classes)
test_evaluator = val_evaluator

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
