# COCO 2017 panoptic segmentation (80 things + 53 stuff) at real scale: LSJ-style training
# (random resize 0.5-1.5 of 1024, crop 1024), shorter side 800 at test time. Evaluated by
# PQ and by box / mask AP of the instance predictions against instances_val2017.json.
dataset_type = "CocoPanopticDataset"
data_root = "data/coco/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"
image_size = 1024

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadPanopticAnnotations"),
    dict(type="RandomFlip", prob=0.5),
    dict(
        type="RandomChoiceResize",
        scales=[(int(image_size * r), int(image_size * r)) for r in (0.5, 0.75, 1.0, 1.25, 1.5)],
        keep_ratio=True,
    ),
    dict(type="RandomCrop", crop_size=(image_size, image_size), recompute_bbox=True),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True),
    dict(type="PackInputs"),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="annotations/panoptic_train2017.json",
        data_prefix=dict(img="train2017/", seg="annotations/panoptic_train2017/"),
        filter_empty_gt=True,
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
        ann_file="annotations/panoptic_val2017.json",
        data_prefix=dict(img="val2017/", seg="annotations/panoptic_val2017/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(
        type="PanopticMetric",
        ann_file=data_root + "annotations/panoptic_val2017.json",
        seg_prefix=data_root + "annotations/panoptic_val2017/",
    ),
    dict(
        type="CocoMetric",
        ann_file=data_root + "annotations/instances_val2017.json",
        metric=["bbox", "segm"],
    ),
]
test_evaluator = val_evaluator
