# Mask2Former Swin-T on COCO panoptic 2017 (80 things + 53 stuff), the published model's
# architecture (_base_/models/mask2former_swin-t.py) and class names (its config.json
# id2label: things then stuff, COCO panoptic's label order). Evaluate the published weights:
#   tools/test.py configs/mask2former/mask2former_swin-t_coco-panoptic.py \
#       models/mask2former-swin-tiny-coco-panoptic
# (paper: PQ 53.2 with the original inference, test_cfg.postprocess='detectron2'); fine-tune
# from them with load_from=models/mask2former-swin-tiny-coco-panoptic. Training from an
# ImageNet Swin-T: model.backbone.pretrained=PATH; the paper's schedule: AdamW 1e-4, 50
# epochs, batch 16, backbone lr x 0.1.
_base_ = [
    "../_base_/models/mask2former_swin-t.py",
    "../_base_/datasets/coco_panoptic.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

thing_classes = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip
stuff_classes = (
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door-stuff",
    "floor-wood", "flower", "fruit", "gravel", "house", "light", "mirror-stuff", "net",
    "pillow", "platform", "playingfield", "railroad", "river", "road", "roof", "sand", "sea",
    "shelf", "snow", "stairs", "tent", "towel", "wall-brick", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "window-blind", "window-other", "tree-merged", "fence-merged",
    "ceiling-merged", "sky-other-merged", "cabinet-merged", "table-merged",
    "floor-other-merged", "pavement-merged", "mountain-merged", "grass-merged",
    "dirt-merged", "paper-merged", "food-other-merged", "building-other-merged",
    "rock-merged", "wall-other-merged", "rug-merged",
)  # fmt: skip
metainfo = dict(classes=thing_classes + stuff_classes)

train_dataloader = dict(dataset=dict(metainfo=metainfo))
val_dataloader = dict(dataset=dict(metainfo=metainfo))
test_dataloader = val_dataloader

max_epochs = 50
train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(
    optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),
)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="coco_panoptic/PQ", rule="greater")
)
