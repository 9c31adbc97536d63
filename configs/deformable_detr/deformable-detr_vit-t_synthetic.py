# Deformable DETR (Zhu et al., 2021) with iterative box refinement and two-stage proposals,
# on the same small ViT + feature pyramid, data, schedule, lr and EMA as the DINO demo
# (configs/dino/dino_vit-t_synthetic.py): only the head differs.
_base_ = [
    "../_base_/models/deformable_detr_vit_sfp.py",
    "../_base_/datasets/synthetic_detection_128px.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

model = dict(backbone=dict(embed_layer="conv"))
optim_wrapper = dict(optimizer=dict(lr=7e-4))
max_epochs = 5
train_cfg = dict(max_epochs=max_epochs)

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="coco/bbox_mAP"))
custom_hooks = [
    dict(type="EMAHook", ema_type="MomentumAnnealingEMA", momentum=0.004, gamma=10, priority=49)
]
