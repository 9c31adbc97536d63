# Synthetic shape classification: the clouds tools/make_synthetic.py --points writes to
# data/synthetic/points/modelnet in the ModelNet40 layout (6 classes, sphere .. pyramid, in
# random 3-D poses), read by the real ModelNet40 reader. 1024 points per shape (FPS), coords
# only. Shapes lie in any orientation, so training rotates them about all three axes.
dataset_type = "ModelNetDataset"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out clouds whose files fail to load or hold labels out of range
# (logged, counted; visionfm/data/datasets/bad_samples.py).
on_error = "raise"
data_root = "data/synthetic/"
num_points = 1024

train_pipeline = [
    dict(type="NormalizeCoord"),
    dict(type="PointRandomRotate", axis="x", angle=(-180, 180)),
    dict(type="PointRandomRotate", axis="y", angle=(-180, 180)),
    dict(type="PointRandomRotate", axis="z", angle=(-180, 180)),
    dict(type="PointRandomScale", scale=(2 / 3, 3 / 2), anisotropic=True),
    dict(type="PointRandomJitter", sigma=0.01, clip=0.05),
    dict(type="PackPointInputs"),
]
test_pipeline = [dict(type="NormalizeCoord"), dict(type="PackPointInputs")]

train_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        on_error=on_error,
        type=dataset_type,
        data_root=data_root + "points/modelnet/",
        split="train",
        num_points=num_points,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        on_error=on_error,
        type=dataset_type,
        data_root=data_root + "points/modelnet/",
        split="test",
        num_points=num_points,
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="PointClsMetric")
test_evaluator = val_evaluator
