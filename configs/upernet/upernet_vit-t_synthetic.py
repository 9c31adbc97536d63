# The semantic segmentation demo: UperNet on a small patch-8 ViT with the simple feature
# pyramid, trained from scratch on the synthetic world (tools/make_synthetic.py) at a long
# side of 128 px on CPU.
_base_ = [
    "../_base_/models/upernet_vit_sfp.py",
    "../_base_/datasets/synthetic_semantic.py",
    "../_base_/schedules/seg_adamw.py",
    "../_base_/default_runtime.py",
]

# From scratch on CPU: a convolutional stem trains the ViT much faster than the strided
# patch projection (see configs/dino/dino_vit-t_synthetic.py).
# Softmax Dice beside cross-entropy: the shapes are a few percent of the pixels, and the
# Dice term weighs each class's region alike (with the pipeline's lack of photometric
# distortion: mIoU 0.690 after 4 epochs; 0.392 with neither).
model = dict(backbone=dict(embed_layer="conv"), head=dict(loss_dice=1.0))

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="seg/mIoU"))
# As for the demo detector: on a 15-minute CPU budget a higher peak lr with an EMA of the
# weights (validated and saved) learns faster; 9 epochs of 250 iterations fit in 15 minutes
# on one CPU core.
optim_wrapper = dict(optimizer=dict(lr=3e-3))
train_cfg = dict(max_epochs=9)
custom_hooks = [
    dict(type="EMAHook", ema_type="MomentumAnnealingEMA", momentum=0.004, gamma=10, priority=49)
]
