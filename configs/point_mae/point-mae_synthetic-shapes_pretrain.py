# Point-MAE masked point modelling on the synthetic shapes (_base_/datasets/synthetic_shapes.py:
# tools/make_synthetic.py --points writes them, ModelNet40 layout), labels unused: a small
# patch transformer (32 groups of 32 points, width 96, 4 blocks) and Point-MAE's decoder
# (here 2 blocks) that pre-train on 2 CPU cores. 60 % of the groups masked at random,
# Chamfer-L2 of the masked groups; AdamW 1e-3, wd 0.05, cosine with warm-up (Point-MAE's
# recipe, shorter). No validation: the training loss is the signal. Fine-tune from the last
# checkpoint with configs/point_mae/point-mae_synthetic-shapes_finetune.py.
_base_ = ["../_base_/datasets/synthetic_shapes.py", "../_base_/default_runtime.py"]

backbone = dict(
    type="PointPatchTransformer",
    num_groups=32,
    group_size=32,
    embed_dim=96,
    depth=4,
    num_heads=4,
    class_token=False,  # Point-MAE pre-trains without one; fine-tuning adds it
)
model = dict(
    type="PointMAE",
    backbone=backbone,
    decoder_depth=2,
    decoder_num_heads=4,
    mask_ratio=0.6,
    mask_type="rand",
    loss="l2",
    drop_path_rate=0.1,
    data_preprocessor=dict(type="PointDataPreprocessor"),
)

# the dataset base's training clouds and augmentation (its labels are not read)
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None

max_epochs = 10
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
    clip_grad=None,
)
# warm-up over the first 20 iterations, then cosine over the epochs (the runner sets its end
# to train_cfg.max_epochs, so a --cfg-options override reshapes it too)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(
        type="CosineAnnealingLR", by_epoch=True, begin=0, eta_min=1e-6, convert_to_iter_based=True
    ),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=1), logger=dict(interval=5))
