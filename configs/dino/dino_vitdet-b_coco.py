# DINO with a ViTDet-B backbone (windowed attention + 4 global blocks, relative position
# bias) and the simple feature pyramid on COCO 2017, layer-wise lr decay 0.7, 12 epochs.
# Initialise the backbone from a published ViT-B checkpoint (timm / HF / MAE format):
#   --cfg-options model.backbone.pretrained=PATH   (.pth / .bin / .safetensors; see README)
_base_ = [
    "../_base_/models/dino_vit_sfp.py",
    "../_base_/datasets/coco_detection.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

num_classes = 80
embed_dims = 256
backbone_dims = 768
_deform = dict(
    type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=8, num_levels=4, num_points=4
)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=2048)

model = dict(
    backbone=dict(_delete_=True, type="vitdet_base_patch16", img_size=1024),
    neck=dict(
        in_channels=backbone_dims,
        out_channels=embed_dims,
        scale_factors=(2.0, 1.0, 0.5),
        in_stride=16,
        top_block=True,
    ),
    head=dict(
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=900,
        in_channels=dict(p3=embed_dims, p4=embed_dims, p5=embed_dims, p6=embed_dims),
        strides=dict(p3=8, p4=16, p5=32, p6=64),
        num_feature_levels=4,
        positional_encoding=dict(type="SinePositionalEncoding", num_feats=128, temperature=20),
        encoder=dict(num_layers=6, layer=dict(self_attn=_deform, ffn=_ffn)),
        decoder=dict(
            num_layers=6,
            ref_point_head=dict(
                in_dims=2 * embed_dims, hidden_dims=embed_dims, out_dims=embed_dims
            ),
            layer=dict(
                self_attn=dict(embed_dims=embed_dims, num_heads=8), cross_attn=_deform, ffn=_ffn
            ),
        ),
        denoising=dict(num_classes=num_classes, embed_dims=embed_dims, num_dn_queries=100),
        test_cfg=dict(max_per_img=300),
    ),
)

lr = 1e-4
optim_wrapper = dict(
    optimizer=dict(type="AdamW", lr=lr, weight_decay=0.05),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(decay_rate=0.7, backbone="backbone"),
)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="coco/bbox_mAP"))
