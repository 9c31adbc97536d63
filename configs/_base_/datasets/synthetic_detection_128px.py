# The synthetic world as a box-detection dataset at long side 128 px, for the small detectors
# trained on CPU (the DINO demo, DETR, Deformable DETR): boxes only, resize, flips, and
# single-worker loaders (the model, not the data, takes the cores).
_base_ = ["./synthetic_instances.py"]

image_scale = (128, 128)
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="PackInputs"),
]
train_dataloader = dict(batch_size=4, num_workers=1, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, num_workers=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
