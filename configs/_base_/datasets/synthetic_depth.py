# Depth of the synthetic world written by tools/make_synthetic.py: RGB images paired with
# 16-bit depth PNGs in millimetres (images/{split}/NNNNNN.jpg + depth/{split}/NNNNNN.png).
# Objects are plates at 0.8-3 m in front of a background plane at 3.2-5 m.
dataset_type = "DepthFolderDataset"
data_root = "data/synthetic/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"
image_scale = (128, 128)  # long side 128 px

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_depth=True),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion", prob=0.5),
    dict(type="PackInputs"),
]
# No LoadAnnotations: DepthMetric reads the ground truth at the original size from
# depth_path, and the demo runs the same pipeline on images without depth.
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="PackInputs"),
]
_depth = dict(depth_scale=1000.0, min_depth=1e-3, max_depth=10.0)

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        data_prefix=dict(img="images/train/", depth="depth/train/"),
        pipeline=train_pipeline,
        **_depth,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        data_prefix=dict(img="images/val/", depth="depth/val/"),
        test_mode=True,
        pipeline=test_pipeline,
        **_depth,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="DepthMetric")  # range and crop from the dataset's metainfo
test_evaluator = val_evaluator
