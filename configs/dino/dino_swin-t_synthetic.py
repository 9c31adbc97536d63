# The demo DINO (dino_vit-t_synthetic.py: data, schedule, head sizes) on a Swin-T backbone.
# A hierarchical backbone needs no neck: the head's input projection maps its stride 8-32
# levels to the head's width (the DINO-3scale setting of the paper).
_base_ = ["./dino_vit-t_synthetic.py"]

model = dict(
    backbone=dict(_delete_=True, type="swin_tiny", out_indices=(1, 2, 3), drop_path_rate=0.1),
    neck=None,
    head=dict(
        in_channels=dict(_delete_=True, p3=192, p4=384, p5=768),
        strides=dict(_delete_=True, p3=8, p4=16, p5=32),
        num_feature_levels=3,
    ),
)
