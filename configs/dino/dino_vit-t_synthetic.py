# The demo config: a small DINO on a patch-8 ViT, trained from scratch on the synthetic
# world (tools/make_synthetic.py) on CPU. `make demo` trains and evaluates it.
_base_ = [
    "../_base_/models/dino_vit_sfp.py",
    "../_base_/datasets/synthetic_detection_128px.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]


# From scratch on CPU: a convolutional stem trains the ViT much faster than the strided
# patch projection (bbox mAP 0.127 vs 0.061 after one epoch), and the synthetic images hold
# at most 6 objects, so 30 queries suffice.
num_queries = 30
model = dict(
    backbone=dict(embed_layer="conv"),
    head=dict(
        num_queries=num_queries,
        denoising=dict(num_dn_queries=30),
        test_cfg=dict(max_per_img=num_queries),
    ),
)
# `make demo` trains 2 gloo DDP processes of one thread each, batch 4 each: 8 images per
# step (both cores busy; one process of 2 threads trains 0.8x the images per second). lr 1e-3
# is for those 8 (the schedule's default 4e-4 learns much slower on this short budget with
# the EMA below); auto_scale_lr scales it by the total batch: 5e-4 in one process of 4.
# Warm-up 100 iterations, then a cosine over 9 epochs: about 14 minutes on 2 CPU cores.
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
auto_scale_lr = dict(base_batch_size=8, enable=True)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(
        type="CosineAnnealingLR",
        by_epoch=True,
        begin=0,
        eta_min_ratio=0.05,
        convert_to_iter_based=True,
    ),
]
max_epochs = 9
train_cfg = dict(max_epochs=max_epochs)

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="coco/bbox_mAP"))

# An exponential moving average of the weights is what is validated and saved as
# `state_dict` (the raw weights are kept as `ema_state_dict`). Its momentum anneals as
# max(0.004, 10 / (10 + iteration)): a horizon of 1 + iteration / 10 iterations, at most 250,
# so the average never lags far behind early on and smooths batch-4 noise later.
custom_hooks = [
    dict(type="EMAHook", ema_type="MomentumAnnealingEMA", momentum=0.004, gamma=10, priority=49)
]
