# DPT with a ViT-B/16 on NYU Depth v2 (metric depth up to 10 m, SILog loss), 24 epochs.
# Initialise from a published checkpoint, e.g. a Hugging Face DPT folder for both parts:
#   --cfg-options model.backbone.pretrained=PATH model.head.pretrained=PATH
# or an ImageNet ViT-B/16 (timm / HF) for the backbone alone.
_base_ = [
    "../_base_/models/dpt_vit.py",
    "../_base_/datasets/nyu.py",
    "../_base_/schedules/depth_adamw.py",
    "../_base_/default_runtime.py",
]

model = dict(head=dict(max_depth=10.0))
# the pretrained ViT learns 10x slower than the randomly initialised decoder
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),
)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="depth/abs_rel", rule="less")
)
