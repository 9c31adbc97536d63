# The synthetic world's stick-figure persons (tools/make_synthetic.py; COCO's 17 keypoints and
# skeleton, so COCO's OKS sigmas) read top-down: one 64x48 crop per person, ground-truth
# boxes for training and validation.
dataset_type = "CocoKeypointDataset"
data_root = "data/synthetic/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"
input_size = (48, 64)  # (w, h)

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True, with_keypoints=True),
    dict(type="GetBBoxCenterScale", padding=1.25),
    dict(type="TopDownRandomFlip", prob=0.5),
    dict(type="RandomHalfBody", min_total_keypoints=8, prob=0.3),
    dict(type="RandomBBoxTransform", scale_factor=(0.75, 1.25), rotate_factor=30.0),
    dict(type="TopDownAffine", input_size=input_size),
    dict(type="PhotoMetricDistortion", prob=0.5),
    dict(type="PackPoseInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="GetBBoxCenterScale", padding=1.25),
    dict(type="TopDownAffine", input_size=input_size),
    dict(type="PackPoseInputs"),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="annotations/instances_train.json",
        data_prefix=dict(img="images/train/"),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=1,
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

val_evaluator = dict(
    type="CocoKeypointMetric", ann_file=data_root + "annotations/instances_val.json"
)
test_evaluator = val_evaluator
