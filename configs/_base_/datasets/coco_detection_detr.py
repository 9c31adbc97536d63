# COCO 2017 detection with the DETR family's augmentation (facebookresearch/detr,
# fundamentalvision/Deformable-DETR, IDEA-Research/DINO): random flip, multi-scale training
# at short side 480-800 px (step 32), long side at most 1333 (their extra random-crop branch
# is left out); test at 800 / 1333, resized as HF's image processors round.
_base_ = ["./coco_detection.py"]

_resize = dict(rounding="transformers", keep_ratio=True)
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", prob=0.5),
    dict(
        type="RandomChoiceResize",
        scales=[(1333, s) for s in range(480, 801, 32)],
        keep_ratio=True,
    ),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=(1333, 800), **_resize),
    dict(type="PackInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
