# SegFormer's all-MLP decoder on the demo ViT (conv stem) + simple feature pyramid, trained
# from scratch on the synthetic world at a long side of 128 px on CPU. Same backbone, data
# and schedule as configs/upernet/upernet_vit-t_synthetic.py; only the head differs.
_base_ = [
    "../_base_/models/upernet_vit_sfp.py",
    "../_base_/datasets/synthetic_semantic.py",
    "../_base_/schedules/seg_adamw.py",
    "../_base_/default_runtime.py",
]

num_classes = 6
channels = 64
model = dict(
    backbone=dict(embed_layer="conv"),
    head=dict(
        _delete_=True,
        type="SegFormerHead",
        num_classes=num_classes,
        in_channels=dict(p2=channels, p3=channels, p4=channels),
        channels=channels,
    ),
)

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="seg/mIoU"))
