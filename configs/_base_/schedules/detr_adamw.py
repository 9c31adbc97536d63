# AdamW with gradient clipping, linear warm-up then cosine decay, validation every epoch.
max_epochs = 12
lr = 4e-4

optim_wrapper = dict(
    type="OptimWrapper",
    # fused: one kernel for all parameters (on CPU twice as fast as the per-tensor loop)
    optimizer=dict(type="AdamW", lr=lr, weight_decay=1e-4, fused=True),
    clip_grad=dict(max_norm=0.1, norm_type=2),
)
# The cosine phase has no `end`: the runner sets it to train_cfg.max_epochs, so a
# --cfg-options train_cfg.max_epochs=N override reshapes the schedule too.
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(
        type="CosineAnnealingLR",
        by_epoch=True,
        begin=0,
        eta_min_ratio=0.05,
        convert_to_iter_based=True,  # decays every iteration, not in steps per epoch
    ),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
