# Synthetic scene segmentation: the rooms tools/make_synthetic.py --points writes to
# data/synthetic/points/scenes in Pointcept's per-scene layout (coord / color / normal /
# segment .npy), read by the real reader: floor, wall and 6 shapes, about 8k points a room.
# Inputs are coordinates and normals: the rooms' colours are each class's base colour plus
# noise, which would give the answer away (a colour-only model separates them), so the
# geometry has to do the work. Validation runs every fragment of a
# 5 cm grid sampling and votes per point, so every original point is predicted and scored.
dataset_type = "PointSceneDataset"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out clouds whose files fail to load or hold labels out of range
# (logged, counted; visionfm/data/datasets/bad_samples.py).
on_error = "raise"
data_root = "data/synthetic/"
classes = ("floor", "wall", "sphere", "cube", "cylinder", "cone", "torus", "pyramid")
grid_size = 0.05

train_pipeline = [
    dict(type="CentreShift", apply_z=True),
    dict(type="PointRandomRotate", axis="z", angle=(-180, 180)),
    dict(type="PointRandomScale", scale=(0.9, 1.1)),
    dict(type="PointRandomFlip", axis="x", prob=0.5),
    dict(type="PointRandomFlip", axis="y", prob=0.5),
    dict(type="PointRandomJitter", sigma=0.005, clip=0.02),
    dict(type="PointGridSample", grid_size=grid_size, mode="train"),
    dict(type="CentreShift", apply_z=False),
    dict(type="PackPointInputs", features=("normal",)),
]
test_pipeline = [
    dict(type="CentreShift", apply_z=True),
    dict(type="PointGridSample", grid_size=grid_size, mode="test", fragments=True),
    dict(type="CentreShift", apply_z=False),
    dict(type="PackPointInputs", features=("normal",)),
]

train_dataloader = dict(
    batch_size=2,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        on_error=on_error,
        type=dataset_type,
        data_root=data_root + "points/scenes/",
        split="train",
        num_classes=len(classes),
        metainfo=dict(classes=classes),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        on_error=on_error,
        type=dataset_type,
        data_root=data_root + "points/scenes/",
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
