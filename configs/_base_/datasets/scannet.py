# ScanNet v2 semantic segmentation (20 classes), Pointcept's processed layout under
# data/scannet: {train,val}/<scene>/{coord,color,normal,segment20}.npy. Pointcept's PTv3
# recipe: 2 cm grid, elastic distortion, up to 102,400 points a crop, inputs coordinates +
# colour + normal; its chromatic augmentations are not here. Evaluation votes over every
# fragment of the 2 cm grid sampling, on every original point.
dataset_type = "PointSceneDataset"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out clouds whose files fail to load or hold labels out of range
# (logged, counted; visionfm/data/datasets/bad_samples.py).
on_error = "raise"
data_root = "data/scannet/"
classes = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
           "bookshelf", "picture", "counter", "desk", "curtain", "refridgerator",
           "shower curtain", "toilet", "sink", "bathtub", "otherfurniture")  # fmt: skip
grid_size = 0.02

train_pipeline = [
    dict(type="CentreShift", apply_z=True),
    dict(type="PointRandomDropout", ratio=0.2, prob=0.2),
    dict(type="PointRandomRotate", axis="z", angle=(-180, 180), prob=0.5),
    dict(type="PointRandomRotate", axis="x", angle=(-2.8125, 2.8125), prob=0.5),
    dict(type="PointRandomRotate", axis="y", angle=(-2.8125, 2.8125), prob=0.5),
    dict(type="PointRandomScale", scale=(0.9, 1.1)),
    dict(type="PointRandomFlip", axis="x", prob=0.5),
    dict(type="PointRandomJitter", sigma=0.005, clip=0.02),
    dict(type="ElasticDistortion"),
    dict(type="PointGridSample", grid_size=grid_size, mode="train"),
    dict(type="SphereCrop", max_points=102400, mode="random"),
    dict(type="CentreShift", apply_z=False),
    dict(type="NormalizeColor"),
    dict(type="PackPointInputs", features=("color", "normal")),
]
test_pipeline = [
    dict(type="CentreShift", apply_z=True),
    dict(type="PointGridSample", grid_size=grid_size, mode="test", fragments=True),
    dict(type="CentreShift", apply_z=False),
    dict(type="NormalizeColor"),
    dict(type="PackPointInputs", features=("color", "normal")),
]

train_dataloader = dict(
    batch_size=2,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        on_error=on_error,
        type=dataset_type,
        data_root=data_root,
        split="train",
        num_classes=len(classes),
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
        on_error=on_error,
        type=dataset_type,
        data_root=data_root,
        split="val",
        num_classes=len(classes),
        metainfo=dict(classes=classes),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="PointSegMetric", classwise=True)
test_evaluator = val_evaluator
