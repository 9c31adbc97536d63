# ViTPose-B (Xu et al., 2022): a plain ViT-B on 256x192 person crops (16x12 patches, no class
# token, patch projection padded by 2 px) and the classic decoder (two 4x4 stride-2
# deconvolutions of 256 channels -> 64x48 heatmaps), UDP Gaussian targets (sigma 2), flip test.
num_keypoints = 17

model = dict(
    type="TopDownPoseEstimator",
    data_preprocessor=dict(type="DataPreprocessor"),
    backbone=dict(
        type="ViT",
        img_size=(256, 192),
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        class_token=False,
        embed_layer="patch_pad2",
        drop_path_rate=0.3,
    ),
    head=dict(
        type="TopDownHeatmapHead",
        decoder=dict(
            type="ClassicDecoder",
            in_channels=768,
            out_channels=num_keypoints,
            deconv_channels=(256, 256),
            deconv_kernels=(4, 4),
        ),
        sigma=2.0,
        flip_test=True,
    ),
)
