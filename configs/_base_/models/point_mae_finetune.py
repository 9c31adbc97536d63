# Point-MAE fine-tuning (Pang et al., ECCV 2022; cfgs/finetune_*.yaml): the base patch
# transformer (64 groups of 32 points, width 384, 12 blocks, 6 heads, drop path 0.1), the
# classifier on [class token, max over tokens], batch 32, AdamW 5e-4, weight decay 0.05,
# 10 warm-up epochs then cosine over 300, gradient norm clipped at 10. A config on top sets
# num_classes, the grouping and the data.
model = dict(
    type="PointModel",
    backbone=dict(type="point_mae_base", drop_path_rate=0.1),
    head=dict(type="PointClsHead", num_classes=40, in_channels=2 * 384),
    data_preprocessor=dict(type="PointDataPreprocessor"),
    test_cfg=dict(votes=1),
)

max_epochs = 300
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=5e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2),
)
param_scheduler = [
    dict(
        type="LinearLR",
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True,
    ),
    dict(
        type="CosineAnnealingLR", by_epoch=True, begin=10, eta_min=1e-6, convert_to_iter_based=True
    ),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
