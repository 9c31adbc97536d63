# The demo DINO on a Swin V2-T backbone (window 8); see dino_swin-t_synthetic.py.
_base_ = ["./dino_vit-t_synthetic.py"]

model = dict(
    backbone=dict(_delete_=True, type="swinv2_tiny", out_indices=(1, 2, 3), drop_path_rate=0.1),
    neck=None,
    head=dict(
        in_channels=dict(_delete_=True, p3=192, p4=384, p5=768),
        strides=dict(_delete_=True, p3=8, p4=16, p5=32),
        num_feature_levels=3,
    ),
)
