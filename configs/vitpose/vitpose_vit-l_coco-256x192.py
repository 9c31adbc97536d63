# ViTPose-L on COCO 2017 person keypoints at 256x192 (Xu et al., 2022: 78.3 AP on val2017 with
# the AP-56 person detections): ViT-L (24 blocks, width 1024), drop path 0.5 and layer-wise lr
# decay 0.8 (ViTPose's values for L; B uses 0.3 / 0.75), otherwise as ViTPose-B.
# Backbone init from MAE: --cfg-options model.backbone.pretrained=PATH
_base_ = [
    "../_base_/models/vitpose_vit.py",
    "../_base_/datasets/coco_keypoints.py",
    "../_base_/schedules/vitpose_adamw.py",
    "../_base_/default_runtime.py",
]

embed_dim = 1024
model = dict(
    backbone=dict(embed_dim=embed_dim, depth=24, num_heads=16, drop_path_rate=0.5),
    head=dict(decoder=dict(in_channels=embed_dim)),
)
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.8))
default_hooks = dict(
    checkpoint=dict(interval=10, max_keep_ckpts=3, save_best="coco/kpt_AP", rule="greater")
)
