# The synthetic world written by tools/make_synthetic.py, read as a COCO instances dataset
# (boxes, masks, person keypoints). Point data_root at any COCO-style folder to reuse it.
dataset_type = "CocoDataset"
data_root = "data/synthetic/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True, with_keypoints=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion", prob=0.5),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True, with_keypoints=True),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="annotations/instances_train.json",
        data_prefix=dict(img="images/train/"),
        filter_empty_gt=True,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="annotations/instances_val.json",
        data_prefix=dict(img="images/val/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="CocoMetric", ann_file=data_root + "annotations/instances_val.json")
test_evaluator = val_evaluator
