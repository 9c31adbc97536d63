# ADE20K scene parsing (Zhou et al., CVPR 2017; ADEChallengeData2016) at real scale: 150
# classes, label 0 = "other" ignored (reduce_zero_label), random rescale of (2048, 512) by
# 0.5-2.0, 512 x 512 crops; tested at (2048, 512) with sliding 512 x 512 windows (the
# model's test_cfg, see configs/upernet/upernet_vit-b_ade20k.py).
#   data/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/
dataset_type = "SegFolderDataset"
data_root = "data/ade/ADEChallengeData2016/"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out missing files and malformed annotation entries (logged, counted) and
# skip training samples whose files fail to load (visionfm/data/datasets/bad_samples.py).
on_error = "raise"
crop_size = (512, 512)
# fmt: off
classes = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
    "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
    "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
    "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
    "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole",
    "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van",
    "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball",
    "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower",
    "radiator", "glass", "clock", "flag",
)
# fmt: on

train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_seg=True),
    dict(
        type="RandomChoiceResize",
        scales=[(int(2048 * r), int(512 * r)) for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)],
        keep_ratio=True,
    ),
    dict(type="RandomCrop", crop_size=crop_size, allow_negative_crop=True),
    dict(type="RandomFlip", prob=0.5, flip_pairs=None),
    dict(type="PhotoMetricDistortion"),
    dict(type="PackInputs"),
]
# annotations after Resize: evaluated at the original size
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="Resize", scale=(2048, 512), keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_seg=True),
    dict(type="PackInputs"),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        data_prefix=dict(img="images/training/", seg="annotations/training/"),
        img_suffix=".jpg",
        seg_map_suffix=".png",
        reduce_zero_label=True,
        metainfo=dict(classes=classes),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        on_error=on_error,
        data_prefix=dict(img="images/validation/", seg="annotations/validation/"),
        img_suffix=".jpg",
        seg_map_suffix=".png",
        reduce_zero_label=True,
        metainfo=dict(classes=classes),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="IoUMetric", classwise=True)
test_evaluator = val_evaluator
