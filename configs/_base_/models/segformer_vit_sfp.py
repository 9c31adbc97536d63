# SegFormer's all-MLP decoder (Xie et al., 2021) on a plain ViT with ViTDet's simple feature
# pyramid (strides 4, 8, 16 from a patch-8 ViT).
# Sizes here are the small demo model; real-scale configs override backbone / widths.
num_classes = 6
channels = 64

model = dict(
    type="Segmentor",
    data_preprocessor=dict(type="DataPreprocessor", size_divisor=32),
    backbone=dict(
        type="ViT",
        img_size=128,
        patch_size=8,
        embed_dim=96,
        depth=4,
        num_heads=4,
        class_token=False,
    ),
    neck=dict(
        type="SimpleFeaturePyramid",
        in_channels=96,
        out_channels=channels,
        scale_factors=(2.0, 1.0, 0.5),
        in_stride=8,
    ),
    head=dict(
        type="SegFormerHead",
        num_classes=num_classes,
        in_channels=dict(p2=channels, p3=channels, p4=channels),
        channels=channels,
    ),
    test_cfg=dict(mode="whole"),
)
