# NYU Depth v2 (Silberman et al., ECCV 2012) as the BTS / AdaBins splits use it: 480 x 640
# RGB frames with 16-bit depth PNGs in millimetres, listed in split files
# ("<rgb> <depth> <focal>" per line; https://github.com/cleinc/bts, train/test file lists).
# Train on random 416 x 544 crops; evaluate at full size in Eigen's crop, 1e-3..10 m.
dataset_type = "DepthFolderDataset"
data_root = "data/nyu/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"
_depth = dict(depth_scale=1000.0, min_depth=1e-3, max_depth=10.0, eval_crop="nyu")

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_depth=True),
    dict(type="RandomCrop", crop_size=(544, 416)),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion", prob=0.5),
    dict(type="PackInputs"),
]
test_pipeline = [dict(type="LoadImage"), dict(type="PackInputs")]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="nyudepthv2_train_files_with_gt.txt",
        data_prefix=dict(img="sync/", depth="sync/"),
        pipeline=train_pipeline,
        **_depth,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="nyudepthv2_test_files_with_gt.txt",
        data_prefix=dict(img="official_splits/test/", depth="official_splits/test/"),
        test_mode=True,
        pipeline=test_pipeline,
        **_depth,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="DepthMetric")  # eval_crop / depth range from the dataset
test_evaluator = val_evaluator
