# Fine-tune / train the demo DINO on YOUR data: any COCO-format json + image folder.
#
#   1. copy this file anywhere (its _base_ is found in visionfm's configs/ folder) and set
#      num_classes below to the number of categories in your json
#   2. python tools/train.py my_config.py --cfg-options data_root=/path/to/mydata/
#
# expects  data_root/annotations/train.json, data_root/annotations/val.json,
#          data_root/images/train/..., data_root/images/val/...
# The class names come from the json's categories (in id order). The head's num_classes
# must equal their number: training refuses to start otherwise, naming both.
# --cfg-options num_classes=N works too: the head's two num_classes follow the variable.
_base_ = ["../dino/dino_vit-t_synthetic.py"]

data_root = "data/custom/"
num_classes = 5  # set to the number of categories in your json

model = dict(head=dict(num_classes=num_classes, denoising=dict(num_classes=num_classes)))
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file="annotations/train.json",
        data_prefix=dict(img="images/train/"),
    )
)
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file="annotations/val.json",
        data_prefix=dict(img="images/val/"),
    )
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + "annotations/val.json")
test_evaluator = val_evaluator
