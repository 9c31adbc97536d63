# Point-MAE's patch transformer classifying the synthetic shapes from random weights on
# 2 CPU cores (600 train / 240 val clouds of 1024 points, 6 classes, random poses; tools/
# make_synthetic.py --points): 32 groups of 32 points, width 96, 4 blocks (the backbone of
# configs/point_mae/point-mae_synthetic-shapes_pretrain.py, so its checkpoint fine-tunes here
# with load_from), Point-MAE's classifier on [class token, max over tokens] (dropout 0.2),
# AdamW 2e-3, wd 0.05, warm-up then cosine over 8 epochs (300 steps); validation every epoch.
# Measured (tools/train.py, 2026-12-07, one thread while another training job used the other
# core): val overall accuracy 0.700 / 0.858 / 0.867 / 0.929 / 0.946 after epochs 2 / 3 / 6 /
# 7 / 8 (2.2 / 3.3 / 7.4 / 9.2 / 11.1 min); 0.996 with 10 test votes (model.test_cfg.votes=10).
_base_ = ["../_base_/datasets/synthetic_shapes.py", "../_base_/default_runtime.py"]

num_classes = 6
model = dict(
    type="PointModel",
    backbone=dict(
        type="PointPatchTransformer",
        num_groups=32,
        group_size=32,
        embed_dim=96,
        depth=4,
        num_heads=4,
        drop_path_rate=0.1,
    ),
    head=dict(type="PointClsHead", num_classes=num_classes, in_channels=2 * 96, dropout=0.2),
    data_preprocessor=dict(type="PointDataPreprocessor"),
)

max_epochs = 8
optim_wrapper = dict(
    type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.05, fused=True)
)
# the cosine phase's end is train_cfg.max_epochs (the runner sets it), so a --cfg-options
# override of max_epochs reshapes it too
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(
        type="CosineAnnealingLR", by_epoch=True, begin=0, eta_min=1e-6, convert_to_iter_based=True
    ),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="cls/acc"), logger=dict(interval=4)
)
