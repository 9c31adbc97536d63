# The synthetic world written by tools/make_synthetic.py, read as a folder of images + label
# PNGs (semantic/{split}/NNNNNN.png: 0 = background, k = shape category k). Background is a
# real class here, so reduce_zero_label=False and the classes are background + 5 shapes.
# Images are resized to a long side of 128 px: models on it train on 2 CPU cores.
dataset_type = "SegFolderDataset"
data_root = "data/synthetic/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"
classes = ("background", "circle", "square", "triangle", "star", "person")
image_scale = (128, 128)
# No photometric distortion: the synthetic images have no lighting changes to be robust to,
# and without it the 15-minute UperNet run learns faster (with that config's Dice term: mIoU
# 0.532 vs 0.305 after 3 epochs).

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_seg=True),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5, flip_pairs=None),
    dict(type="PackInputs"),
]
# annotations after Resize: the ground truth keeps the original size, where the metric
# compares it with the predictions
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_seg=True),
    dict(type="PackInputs"),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        data_prefix=dict(img="images/train/", seg="semantic/train/"),
        img_suffix=".jpg",
        seg_map_suffix=".png",
        reduce_zero_label=False,
        metainfo=dict(classes=classes),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        data_prefix=dict(img="images/val/", seg="semantic/val/"),
        img_suffix=".jpg",
        seg_map_suffix=".png",
        reduce_zero_label=False,
        metainfo=dict(classes=classes),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="IoUMetric", classwise=True)
test_evaluator = val_evaluator
