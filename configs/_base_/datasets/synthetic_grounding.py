# The synthetic world's referring expressions and detections (tools/make_synthetic.py writes
# them): train on annotations/odvg_train.jsonl (expressions naming a green triangle held
# out), validate
# Acc@0.5 (refexp/P@1) on refcoco_val.json, with the held-out expressions scored apart
# (refexp/held_out_P@1). Images at long side 128 px and single-worker loaders, for small
# models trained on CPU. Point data_root at a folder of MDETR refcoco json to reuse it.
data_root = "data/synthetic/"
# Bad data, for every dataset here at once (--cfg-options on_error=skip): 'raise', or 'skip' =
# leave out malformed entries (logged, counted) and skip training samples whose files fail to
# load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"
image_scale = (128, 128)

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),  # swaps "left" / "right" in the expressions
    dict(type="PackInputs"),
]
# annotations loaded after Resize: the metrics compare them with predictions at the original size
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackInputs"),
]

# Training: the ODVG json lines of the same world: one detection line per image (a class
# prompt "circle . person . ..." with sampled negatives, every box) and one grounding line per
# train expression (caption, one region). refcoco_train_dataset: the expressions alone.
odvg_train_dataset = dict(
    type="ODVGDataset",
    data_root=data_root,
    on_error=on_error,
    ann_file="annotations/odvg_train.jsonl",
    label_map_file="annotations/label_map.json",
    data_prefix=dict(img="images/train/"),
    max_tokens=256,
    pipeline=train_pipeline,
)
refcoco_train_dataset = dict(
    type="RefCOCODataset",
    data_root=data_root,
    on_error=on_error,
    ann_file="annotations/refcoco_train.json",
    data_prefix=dict(img="images/train/"),
    split="train",
    pipeline=train_pipeline,
)
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=odvg_train_dataset,
)
val_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="RefCOCODataset",
        data_root=data_root,
        on_error=on_error,
        ann_file="annotations/refcoco_val.json",
        data_prefix=dict(img="images/val/"),
        split="val",
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="RefExpMetric", topk=(1, 5, 10), iou_thr=0.5)
test_evaluator = val_evaluator

# Open-vocabulary detection with a prompt of all class names ("circle . square . ..."): swap
# in as test_dataloader / test_evaluator to get COCO box AP of the same model.
class_prompt_test_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="CocoGroundingDataset",
        data_root=data_root,
        on_error=on_error,
        ann_file="annotations/instances_val.json",
        data_prefix=dict(img="images/val/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
class_prompt_test_evaluator = dict(
    type="CocoMetric", ann_file=data_root + "annotations/instances_val.json", metric="bbox"
)
