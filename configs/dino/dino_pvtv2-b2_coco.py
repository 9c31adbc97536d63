# DINO-4scale with a PVT v2-b2 (timm, HF or the official repo) backbone on COCO 2017, 12 epochs:
# backbone levels at strides 8-32 plus one extra stride-64 level made by the head's input
# projection; backbone lr x0.1 as in the DINO paper. Initialise the backbone with
#   --cfg-options model.backbone.pretrained=PATH   (.pth / .bin / .safetensors / HF folder)
_base_ = ["./dino_vitdet-b_coco.py"]

model = dict(
    backbone=dict(_delete_=True, type="pvt_v2_b2", out_indices=(1, 2, 3), drop_path_rate=0.2),
    neck=None,
    head=dict(
        in_channels=dict(_delete_=True, p3=128, p4=320, p5=512),
        strides=dict(_delete_=True, p3=8, p4=16, p5=32),
        num_feature_levels=4,
    ),
)
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-4, weight_decay=1e-4, fused=True),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),
)
