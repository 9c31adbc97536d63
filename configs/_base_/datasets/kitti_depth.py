# KITTI depth, Eigen split (Eigen et al., NeurIPS 2014) with the improved ground truth of
# Uhrig et al. (3DV 2017): 16-bit PNGs of metres * 256, sparse (0 = no LiDAR return), read
# from BTS-style split files ("<rgb> <depth> <focal>"; frames without ground truth list
# depth "None" and are skipped). Inputs are cut to the 352 x 1216 benchmark window
# (KBCrop); training adds random 352 x 704 crops. Evaluation: full frames, Garg crop,
# 1e-3..80 m.
dataset_type = "KittiDepthDataset"
data_root = "data/kitti/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_depth=True),
    dict(type="KBCrop", height=352, width=1216),
    dict(type="RandomCrop", crop_size=(704, 352)),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion", prob=0.5),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="KBCrop", height=352, width=1216),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="eigen_train_files_with_gt.txt",
        data_prefix=dict(img="raw/", depth="gt_depth/"),
        pipeline=train_pipeline,
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
        ann_file="eigen_test_files_with_gt.txt",
        data_prefix=dict(img="raw/", depth="gt_depth/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="DepthMetric")  # Garg crop, 80 m and depth_scale 256 from the dataset
test_evaluator = val_evaluator
