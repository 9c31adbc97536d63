# ModelNet40 classification, modelnet40_normal_resampled layout (modelnet40_shape_names.txt,
# modelnet40_{train,test}.txt, <class>/<shape>.txt with x, y, z, nx, ny, nz per line) under
# data/modelnet40_normal_resampled. As Point-MAE's fine-tuning: 1024 points per shape by
# farthest point sampling, coordinates only, normalised to the unit sphere; training scales
# each axis by 2/3 .. 3/2 (Point-MAE's PointcloudScaleAndTranslate, without its +-0.2 shift).
dataset_type = "ModelNetDataset"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out clouds whose files fail to load or hold labels out of range
# (logged, counted; visionfm/data/datasets/bad_samples.py).
on_error = "raise"
data_root = "data/modelnet40_normal_resampled/"
num_points = 1024

train_pipeline = [
    dict(type="NormalizeCoord"),
    dict(type="PointRandomScale", scale=(2 / 3, 3 / 2), anisotropic=True),
    dict(type="PackPointInputs"),
]
test_pipeline = [dict(type="NormalizeCoord"), dict(type="PackPointInputs")]

train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        on_error=on_error,
        type=dataset_type,
        data_root=data_root,
        split="train",
        num_points=num_points,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        on_error=on_error,
        type=dataset_type,
        data_root=data_root,
        split="test",
        num_points=num_points,
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="PointClsMetric")
test_evaluator = val_evaluator
