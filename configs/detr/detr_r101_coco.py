# DETR R101 on COCO 2017 detection: configs/detr/detr_r50_coco.py with a ResNet-101
# (facebook/detr-resnet-101, detr-r101-2c7b67e5.pth; published COCO val5k box AP 43.5 at 500
# epochs: facebookresearch/detr README model zoo).
_base_ = ["./detr_r50_coco.py"]

model = dict(backbone=dict(model_name="resnet101"))
