# DETR (Carion et al., 2020): a plain transformer encoder-decoder over one stride-16 map,
# learned queries; trained with focal + L1 + GIoU Hungarian losses like the rest of the family.
# DETR starts slowly (500 epochs on COCO): after these 5 epochs (7 min on one CPU core) bbox
# mAP is still 0.000, every query predicting the same box; lr 1e-4 (DETR's own) is no better.
# For a detector trained on a budget use the Deformable DETR or DINO configs.
# Data, schedule, lr and EMA are those of the DINO demo (configs/dino/dino_vit-t_synthetic.py).
_base_ = [
    "../_base_/models/detr_vit_sfp.py",
    "../_base_/datasets/synthetic_detection_128px.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]


num_queries = 50
model = dict(
    backbone=dict(embed_layer="conv"),
    head=dict(num_queries=num_queries, test_cfg=dict(max_per_img=num_queries)),
)
optim_wrapper = dict(optimizer=dict(lr=7e-4))
max_epochs = 5
train_cfg = dict(max_epochs=max_epochs)

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="coco/bbox_mAP"))
custom_hooks = [
    dict(type="EMAHook", ema_type="MomentumAnnealingEMA", momentum=0.004, gamma=10, priority=49)
]
