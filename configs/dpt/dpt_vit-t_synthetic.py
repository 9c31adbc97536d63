# The depth demo config: DPT on a small ViT (4 blocks, width 96, convolutional stem) trained
# from scratch on the synthetic world (tools/make_synthetic.py) at 128 px on CPU, metric
# depth up to 10 m with the SILog loss.
_base_ = [
    "../_base_/models/dpt_vit.py",
    "../_base_/datasets/synthetic_depth.py",
    "../_base_/schedules/depth_adamw.py",
    "../_base_/default_runtime.py",
]

embed_dim = 96
patch_size = 16
model = dict(
    backbone=dict(
        img_size=128,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=4,
        num_heads=4,
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        return_class_token=False,
        pos_embed_mode="bicubic",
        # from scratch on CPU a convolutional stem trains much faster than patch projection
        embed_layer="conv",
    ),
    head=dict(
        decoder=dict(
            in_channels=[embed_dim] * 4,
            in_strides=[patch_size] * 4,
            neck_channels=(32, 64, 96, 96),
            channels=64,
            readout="ignore",
        ),
    ),
)

# About 250 iterations per epoch of the 2000 images `make demo` writes; an epoch takes
# about 1.6 minutes on one CPU core (validation included), so 9 epochs fit in 15 minutes.
lr = 1e-3
max_epochs = 9
optim_wrapper = dict(optimizer=dict(lr=lr))
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="depth/abs_rel", rule="less"),
)
