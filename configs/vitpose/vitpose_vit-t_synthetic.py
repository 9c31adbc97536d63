# The pose demo config: a small ViTPose (4 blocks of width 128 on the 8x6 patches of a 64x48
# crop, convolutional stem, two deconvolutions -> 32x24 heatmaps) trained from scratch on the
# synthetic persons (tools/make_synthetic.py) with ground-truth boxes, on CPU. Learning check
# (one busy CPU thread, about 1 s per batch of 32): val keypoint AP 0.40 after 100 s of
# training; 20 epochs are about 15 minutes there.
_base_ = [
    "../_base_/models/vitpose_vit.py",
    "../_base_/datasets/synthetic_keypoints.py",
    "../_base_/schedules/vitpose_adamw.py",
    "../_base_/default_runtime.py",
]

embed_dim = 128
model = dict(
    backbone=dict(
        img_size=(64, 48),
        patch_size=8,
        embed_dim=embed_dim,
        depth=4,
        num_heads=4,
        drop_path_rate=0.0,
        # from scratch on CPU a convolutional stem trains much faster than a patch projection
        embed_layer="conv",
    ),
    head=dict(
        decoder=dict(in_channels=embed_dim, deconv_channels=(64, 64), deconv_kernels=(4, 4)),
        sigma=1.5,
    ),
)

# From scratch: plain AdamW (no layer decay), short warm-up, cosine decay per iteration.
lr = 2e-3
max_epochs = 20
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=lr, weight_decay=0.01, fused=True),
    clip_grad=dict(max_norm=1.0, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type="CosineAnnealingLR",
        by_epoch=True,
        begin=0,
        eta_min_ratio=0.01,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=2, max_keep_ckpts=2, save_best="coco/kpt_AP", rule="greater"),
)
