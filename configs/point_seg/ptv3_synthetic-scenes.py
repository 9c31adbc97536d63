# Point Transformer V3 segmenting the synthetic rooms on 2 CPU cores, from random weights:
# the rooms tools/make_synthetic.py --points writes (48 train / 12 val, floor, wall and 6
# shape classes, 8192 points each; configs/_base_/datasets/synthetic_scenes.py), coordinates
# and normals in (the rooms' colours would give the classes away). A small PTv3: 4 encoder
# stages 32-128 wide and 3 decoder stages, one block each, patches of 128, xCPE by the hashed
# sparse conv, 5 cm voxels; a linear head on the 32-wide point features. AdamW 2e-3, warm-up
# then cosine over 12 epochs (288 steps); validation fragment-voted on every original point.
# Measured (tools/train.py, 2026-12-07): one thread while another job used the other core:
# mIoU 0.529 / 0.659 / 0.706 / 0.680 after epochs 3 / 6 / 9 / 12 (2.6 / 5.0 / 7.9 / 9.9 min);
# 18 epochs on 2 free threads: 0.697 after 6 (2.9 min), 0.696 after 12, 0.676 after 18.
# Floor, wall, sphere and torus are >= 0.99 IoU; cube (0.05-0.18) and cone (0.10-0.16) are
# confused with the other solids: the target 0.70 is reached at its best epoch, not held.
_base_ = ["../_base_/datasets/synthetic_scenes.py", "../_base_/default_runtime.py"]

num_classes = 8
grid_size = 0.05  # as the dataset base's grid sampling

model = dict(
    type="PointModel",
    backbone=dict(
        type="PointTransformerV3",
        in_channels=3 + 3,  # x, y, z, normal
        grid_size=grid_size,
        enc_depths=(1, 1, 1, 1),
        enc_channels=(32, 64, 96, 128),
        enc_num_heads=(2, 4, 6, 8),
        enc_patch_size=(128,) * 4,
        dec_depths=(1, 1, 1),
        dec_channels=(32, 64, 96),
        dec_num_heads=(2, 4, 6),
        dec_patch_size=(128,) * 3,
        drop_path_rate=0.1,
        pos_embed="sparse_conv",
    ),
    head=dict(
        type="PointSegHead", num_classes=num_classes, in_channels=32, hidden_dims=(), dropout=0.0
    ),
    data_preprocessor=dict(type="PointDataPreprocessor"),
)

max_epochs = 12
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.01))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.05, by_epoch=False, begin=0, end=20),
    dict(
        type="CosineAnnealingLR", by_epoch=True, begin=0, eta_min=1e-5, convert_to_iter_based=True
    ),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=3)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    checkpoint=dict(interval=3, max_keep_ckpts=2, save_best="seg/mIoU"), logger=dict(interval=4)
)
