# The synthetic world written by tools/make_synthetic.py, read as a COCO panoptic dataset
# (5 thing classes + 'background' stuff). Evaluated by PQ (PanopticMetric) and by box / mask
# AP of the instance predictions against the instances json (CocoMetric).
dataset_type = "CocoPanopticDataset"
data_root = "data/synthetic/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadPanopticAnnotations"),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PhotoMetricDistortion", prob=0.5),
    dict(type="PackInputs"),
]
test_pipeline = [  # the metrics read the ground truth from the files
    dict(type="LoadImage"),
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
        ann_file="annotations/panoptic_train.json",
        data_prefix=dict(img="images/train/", seg="panoptic/train/"),
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
        ann_file="annotations/panoptic_val.json",
        data_prefix=dict(img="images/val/", seg="panoptic/val/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = [
    dict(
        type="PanopticMetric",
        ann_file=data_root + "annotations/panoptic_val.json",
        seg_prefix=data_root + "panoptic/val/",
    ),
    dict(
        type="CocoMetric",
        ann_file=data_root + "annotations/instances_val.json",
        metric=["bbox", "segm"],
    ),
]
test_evaluator = val_evaluator
