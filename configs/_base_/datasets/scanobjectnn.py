# ScanObjectNN classification (15 classes), the hardest variant PB_T50_RS
# (*_augmentedrot_scale75.h5) of h5_files/main_split under data/ScanObjectNN. For OBJ_BG use
# ann_file='training_objectdataset.h5' / 'test_objectdataset.h5' here; for OBJ_ONLY also
# data_root='data/ScanObjectNN/h5_files/main_split_nobg/'. As Point-MAE: all 2048 points,
# coordinates only; training scales each axis by 2/3 .. 3/2 (its PointcloudScaleAndTranslate,
# without the +-0.2 shift).
dataset_type = "ScanObjectNNDataset"
# Bad data, for the train / val / test datasets at once (--cfg-options on_error=skip): 'raise',
# or 'skip' = leave out clouds whose files fail to load or hold labels out of range
# (logged, counted; visionfm/data/datasets/bad_samples.py).
on_error = "raise"
data_root = "data/ScanObjectNN/h5_files/main_split/"
classes = ("bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
           "bed", "pillow", "sink", "sofa", "toilet")  # fmt: skip

train_pipeline = [
    dict(type="PointRandomScale", scale=(2 / 3, 3 / 2), anisotropic=True),
    dict(type="PackPointInputs"),
]
test_pipeline = [dict(type="PackPointInputs")]

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
        ann_file="training_objectdataset_augmentedrot_scale75.h5",
        num_classes=15,
        metainfo=dict(classes=classes),
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
        ann_file="test_objectdataset_augmentedrot_scale75.h5",
        num_classes=15,
        metainfo=dict(classes=classes),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(type="PointClsMetric")
test_evaluator = val_evaluator
