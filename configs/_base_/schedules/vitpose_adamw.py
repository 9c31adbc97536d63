# ViTPose's schedule: AdamW (lr 5e-4 at batch 512, weight decay 0.1), layer-wise lr decay
# 0.75 over the backbone, gradient clipping 1.0, 500 iterations of linear warm-up, lr x0.1
# at epochs 170 and 200 of 210.
max_epochs = 210
lr = 5e-4

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=lr, betas=(0.9, 0.999), weight_decay=0.1),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(decay_rate=0.75, backbone="backbone"),
    clip_grad=dict(max_norm=1.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", by_epoch=True, milestones=[170, 200], gamma=0.1),
]
auto_scale_lr = dict(base_batch_size=512)
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=10)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
