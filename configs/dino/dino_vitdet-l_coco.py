# DINO with ViTDet-L (24 blocks, 1024 wide) on COCO 2017; layer-wise lr decay 0.8.
_base_ = ["./dino_vitdet-b_coco.py"]

model = dict(
    backbone=dict(_delete_=True, type="vitdet_large_patch16", img_size=1024),
    neck=dict(in_channels=1024),
)
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8))
