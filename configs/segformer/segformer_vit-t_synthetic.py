# SegFormer's all-MLP decoder on the demo ViT (conv stem) + simple feature pyramid, trained
# from scratch on the synthetic world at a long side of 128 px on CPU. Everything else (data,
# schedule, lr, EMA, CE + Dice) is configs/upernet/upernet_vit-t_synthetic.py's.
_base_ = ["../upernet/upernet_vit-t_synthetic.py"]

channels = 64
model = dict(
    head=dict(
        _delete_=True,
        type="SegFormerHead",
        num_classes=6,
        in_channels=dict(p2=channels, p3=channels, p4=channels),
        channels=channels,
        loss_dice=1.0,
    ),
)
