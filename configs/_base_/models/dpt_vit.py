# DPT (Ranftl et al., ICCV 2021) on a ViT-B/16: the outputs of blocks 3, 6, 9, 12 with their
# class tokens ('project' readout), reassembled to strides 4-32 and fused; metric depth
# (sigmoid x max_depth) trained with the SILog loss. DPT reads the blocks without the final
# norm. Load a published Hugging Face DPT checkpoint into both parts with
#   --cfg-options model.backbone.pretrained=PATH model.head.pretrained=PATH
# (or only the backbone from an ImageNet ViT-B checkpoint).
embed_dim = 768
patch_size = 16

model = dict(
    type="TaskModel",
    data_preprocessor=dict(type="DataPreprocessor", size_divisor=32),
    backbone=dict(
        type="ViT",
        img_size=384,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=12,
        num_heads=12,
        drop_path_rate=0.1,
        out_indices=(2, 5, 8, 11),
        final_norm=False,
        return_class_token=True,
        pos_embed_mode="bilinear",  # as the published DPT models
    ),
    head=dict(
        type="DPTDepthHead",
        decoder=dict(
            type="DPTDecoder",
            in_channels=[embed_dim] * 4,
            in_strides=[patch_size] * 4,
            neck_channels=(96, 192, 384, 768),
            channels=256,
            readout="project",
        ),
        mode="metric",
        max_depth=10.0,
        loss=dict(type="SILogLoss", variance_focus=0.85, scale=10.0),
    ),
)
