# Fine-tune the published COCO Deformable DETR (ResNet-50, SenseTime/deformable-detr) on YOUR
# classes: any COCO-format json + image folder.
#
#   1. get the published weights, either as the Hugging Face folder
#        python -c "from transformers import AutoImageProcessor, DeformableDetrForObjectDetection as M; \
#          M.from_pretrained('SenseTime/deformable-detr').save_pretrained('checkpoints/deformable-detr'); \
#          AutoImageProcessor.from_pretrained('SenseTime/deformable-detr').save_pretrained('checkpoints/deformable-detr')"
#      or converted once: python tools/convert_checkpoint.py checkpoints/deformable-detr --out
#      checkpoints/deformable-detr-converted (then load_from=.../model.pth)
#   2. set num_classes below to the number of categories in your json
#   3. python tools/train.py this_config.py --cfg-options data_root=/path/to/mydata/
#
# load_from keeps every weight of the COCO model except its class layers (91 COCO outputs),
# which are re-initialised for num_classes (the log lists them with both shapes); the same
# checkpoint with another num_classes is refused by tools/test.py / demo / Inferencer.
# expects  data_root/annotations/train.json, data_root/annotations/val.json,
#          data_root/images/train/..., data_root/images/val/...
# The class names come from the json's categories (in id order); training refuses to start
# when their number differs from num_classes, naming both.
_base_ = ["../_base_/schedules/detr_adamw.py", "../_base_/default_runtime.py"]

data_root = "data/custom/"
num_classes = 5  # set to the number of categories in your json
load_from = "checkpoints/deformable-detr/"  # HF folder, or a convert_checkpoint model.pth

# the published architecture (config.json of SenseTime/deformable-detr): ResNet-50 with frozen
# batch norms, 6 + 6 layers of width 256, 8 heads, 4 points, 4 levels, 300 queries
attention = dict(type="DeformableMemoryAttention", embed_dims=256, num_heads=8, num_levels=4,
                 num_points=4)  # fmt: skip
ffn = dict(type="DetrFFN", embed_dims=256, feedforward_dims=1024, dropout=0.1)
model = dict(
    type="Detector",
    data_preprocessor=dict(
        type="DataPreprocessor", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)
    ),
    backbone=dict(
        type="TimmBackbone",
        model_name="resnet50",
        out_indices=(2, 3, 4),
        frozen_bn=True,
        frozen_stages=1,
    ),  # fmt: skip
    neck=None,
    head=dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=256,
        num_queries=300,
        in_channels=dict(p3=512, p4=1024, p5=2048),
        strides=dict(p3=8, p4=16, p5=32),
        num_feature_levels=4,
        input_bias=True,
        mask_padded_inputs=False,  # as HF: padded batches give the published outputs
        positional_encoding=dict(type="SinePositionalEncoding", num_feats=128, offset=-0.5),
        encoder=dict(
            type="DetrEncoder",
            num_layers=6,
            layer=dict(type="DetrEncoderLayer", self_attn=attention, ffn=ffn, dropout=0.1),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=6,
            norm_layer=None,
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(
                    type="DetrMultiheadAttention", embed_dims=256, num_heads=8, dropout=0.1
                ),  # fmt: skip
                cross_attn=attention,
                ffn=ffn,
                dropout=0.1,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        loss_cls=2.0,
        loss_bbox=5.0,
        loss_giou=2.0,
        test_cfg=dict(max_per_img=100),
    ),
)

# the published model's preprocessing (preprocessor_config.json: shortest edge 800, longest
# 1333, as transformers resizes) for testing; the original multi-scale recipe for training
test_resize = dict(type="Resize", scale=(1333, 800), keep_ratio=True, rounding="transformers",
                   backend="torchvision")  # fmt: skip
train_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="RandomChoiceResize", scales=[(1333, s) for s in range(480, 801, 32)]),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    test_resize,
    dict(type="PackInputs"),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type="CocoDataset",
        data_root=data_root,
        ann_file="annotations/train.json",
        data_prefix=dict(img="images/train/"),
        filter_empty_gt=True,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="CocoDataset",
        data_root=data_root,
        ann_file="annotations/val.json",
        data_prefix=dict(img="images/val/"),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoMetric", ann_file=data_root + "annotations/val.json")
test_evaluator = val_evaluator

# fine-tuning: a tenth of the from-scratch learning rate, the backbone slower still
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),
)
