# ViTPose-B on COCO 2017 person keypoints at 256x192 (Xu et al., 2022: 75.8 AP on val2017 with
# the AP-56 person detections and flip test): classic decoder, UDP targets, layer-wise lr
# decay 0.75, 210 epochs at batch 512 (8 GPUs x 64).
# Initialise the backbone from MAE ImageNet-1k weights (timm / HF / original MAE format):
#   --cfg-options model.backbone.pretrained=PATH
# Published ViTPose weights (Hugging Face usyd-community/vitpose-base or the original repo's
# .pth) load into the whole model with visionfm.heads.pose.load_vitpose_checkpoint; match the
# checkpoint's LayerNorm eps (this config: 1e-6 as the original repo; HF configs name theirs
# layer_norm_eps, e.g. model.backbone.norm_layer=LN_1e-12 for HF's default).
_base_ = [
    "../_base_/models/vitpose_vit.py",
    "../_base_/datasets/coco_keypoints.py",
    "../_base_/schedules/vitpose_adamw.py",
    "../_base_/default_runtime.py",
]

default_hooks = dict(
    checkpoint=dict(interval=10, max_keep_ckpts=3, save_best="coco/kpt_AP", rule="greater")
)
