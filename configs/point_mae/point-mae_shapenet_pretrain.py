# Point-MAE's published pre-training recipe (Point-MAE cfgs/pretrain.yaml, ShapeNet-55):
# 1024 points, 64 groups of 32, encoder width 384, 12 blocks of 6 heads, drop path 0.1,
# decoder 4 blocks of 6 heads, 60 % of the groups masked at random, Chamfer-L2; AdamW lr
# 1e-3, weight decay 0.05, 10 warm-up epochs then cosine to 300 epochs, batch 128; training
# augmentation: random anisotropic scale 2/3 .. 3/2 (Point-MAE's PointcloudScaleAndTranslate
# also shifts by up to 0.2; there is no translation transform here yet).
#
# There is no ShapeNet-55 reader: lay the clouds out in the ModelNet40 layout under
# data/ShapeNet55/ (shapenet55_shape_names.txt, shapenet55_train.txt listing
# <class>_<index> names, <class>/<class>_<index>.txt with "x,y,z" rows; convert
# ShapeNet55-34/shapenet_pc/*.npy with one np.savetxt per file), read by ModelNetDataset
# with prefix "shapenet55". Any ModelNet40-layout folder (e.g. ModelNet40 itself) works the
# same way: set data_root and prefix. Fine-tune the encoder with
# configs/point_cls/point-mae_modelnet40.py and load_from=<this run's last checkpoint>.
_base_ = ["../_base_/default_runtime.py"]

data_root = "data/ShapeNet55/"
model = dict(
    type="PointMAE",
    backbone=dict(
        type="PointPatchTransformer",
        num_groups=64,
        group_size=32,
        embed_dim=384,
        depth=12,
        num_heads=6,
        drop_path_rate=0.1,
        class_token=False,
    ),
    decoder_depth=4,
    decoder_num_heads=6,
    mask_ratio=0.6,
    mask_type="rand",
    loss="l2",
    drop_path_rate=0.1,
    data_preprocessor=dict(type="PointDataPreprocessor"),
)

train_pipeline = [
    dict(type="NormalizeCoord"),
    dict(type="PointRandomScale", scale=(2 / 3, 3 / 2), anisotropic=True),
    dict(type="PackPointInputs"),
]
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type="ModelNetDataset",
        data_root=data_root,
        split="train",
        num_points=1024,
        sampling="fps",
        prefix="shapenet55",
        pipeline=train_pipeline,
    ),
)
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None

optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05))
param_scheduler = [
    dict(
        type="LinearLR", start_factor=1e-3, by_epoch=True, begin=0, end=10,
        convert_to_iter_based=True,
    ),
    dict(
        type="CosineAnnealingLR", by_epoch=True, begin=10, end=300, eta_min=1e-6,
        convert_to_iter_based=True,
    ),
]  # fmt: skip
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=300)
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=2))
