# The demo DINO on a PVT v2-b2 backbone; see dino_swin-t_synthetic.py.
_base_ = ["./dino_vit-t_synthetic.py"]

model = dict(
    backbone=dict(_delete_=True, type="pvt_v2_b2", out_indices=(1, 2, 3), drop_path_rate=0.1),
    neck=None,
    head=dict(
        in_channels=dict(_delete_=True, p3=128, p4=320, p5=512),
        strides=dict(_delete_=True, p3=8, p4=16, p5=32),
        num_feature_levels=3,
    ),
)
