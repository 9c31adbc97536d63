# COCO 2017 person keypoints, top-down at 256x192 (w x h = 192 x 256): training crops around
# the ground-truth persons with flip, half-body, shift / scale / rotation augmentation;
# validation on the person detections ViTPose reports with (human AP 56 on val2017). For
# ground-truth boxes instead: --cfg-options val_dataloader.dataset.bbox_file=None
dataset_type = "CocoKeypointDataset"
data_root = "data/coco/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"
input_size = (192, 256)  # (w, h)

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True, with_keypoints=True),
    dict(type="GetBBoxCenterScale", padding=1.25),
    dict(type="TopDownRandomFlip", prob=0.5),
    dict(type="RandomHalfBody", min_total_keypoints=8, prob=0.3),
    dict(type="RandomBBoxTransform", scale_factor=(0.5, 1.5), rotate_factor=40.0),
    dict(type="TopDownAffine", input_size=input_size),
    dict(type="PackPoseInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="GetBBoxCenterScale", padding=1.25),
    dict(type="TopDownAffine", input_size=input_size),
    dict(type="PackPoseInputs"),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="annotations/person_keypoints_train2017.json",
        data_prefix=dict(img="train2017/"),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        ann_file="annotations/person_keypoints_val2017.json",
        data_prefix=dict(img="val2017/"),
        bbox_file="person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(
    type="CocoKeypointMetric", ann_file=data_root + "annotations/person_keypoints_val2017.json"
)
test_evaluator = val_evaluator
