# DETR-DC5 R50 on COCO 2017 detection: configs/detr/detr_r50_coco.py with the last ResNet stage
# dilated (output stride 16: the transformer reads the stride-16 map)
# (facebook/detr-resnet-50-dc5, detr-r50-dc5-f0fb7ef5.pth; published COCO val5k box AP 43.3
# at 500 epochs: facebookresearch/detr README model zoo, which trained and evaluated DC5
# models with 1 image per GPU: more images per batch pad more and lower AP there).
_base_ = ["./detr_r50_coco.py"]

model = dict(
    backbone=dict(output_stride=16),
    head=dict(in_channels=dict(_delete_=True, p4=2048), strides=dict(_delete_=True, p4=16)),
)
train_dataloader = dict(batch_size=1)
auto_scale_lr = dict(base_batch_size=8)
