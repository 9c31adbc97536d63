# SegFormer's all-MLP decoder on the demo ViT (conv stem) + simple feature pyramid, trained
# from scratch on the synthetic world at a long side of 128 px on CPU. Data, schedule, lr,
# EMA and CE + Dice are those of the UperNet demo (configs/upernet/upernet_vit-t_synthetic.py).
_base_ = [
    "../_base_/models/segformer_vit_sfp.py",
    "../_base_/datasets/synthetic_semantic.py",
    "../_base_/schedules/seg_adamw.py",
    "../_base_/default_runtime.py",
]

model = dict(backbone=dict(embed_layer="conv"), head=dict(loss_dice=1.0))

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="seg/mIoU"))
optim_wrapper = dict(optimizer=dict(lr=3e-3))
train_cfg = dict(max_epochs=9)
custom_hooks = [
    dict(type="EMAHook", ema_type="MomentumAnnealingEMA", momentum=0.004, gamma=10, priority=49)
]
