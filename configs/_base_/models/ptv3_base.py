# Point Transformer V3 (Wu et al., CVPR 2024) as Pointcept trains it for indoor semantic
# segmentation (configs/{scannet,s3dis}/semseg-pt-v3m1-0-base.py): the ptv3_base backbone
# (46.2M parameters, 2-cm voxels, patches of 1024, drop path 0.3) and a linear head on its
# 64-wide per-point output; AdamW 0.006 with the attention blocks at 0.0006, weight decay
# 0.05. A config on top sets num_classes, the schedule and the data. Differences from
# Pointcept, by what this project has: coordinates feed the stem as well (in_channels 9 =
# xyz + colour + normal; Pointcept feeds colour + normal), no Lovasz loss (cross-entropy
# only); xCPE is the pure-PyTorch hashed sparse conv (same arithmetic as spconv's). Train
# with --amp on GPUs, as Pointcept does.
model = dict(
    type="PointModel",
    backbone=dict(type="ptv3_base", in_channels=3 + 6),
    head=dict(type="PointSegHead", num_classes=20, in_channels=64, hidden_dims=(), dropout=0.0),
    data_preprocessor=dict(type="PointDataPreprocessor"),
)
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=0.006, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={"blocks": dict(lr_mult=0.1)}),
)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
