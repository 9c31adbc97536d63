# Mask2Former with a ViTDet-B backbone (windowed attention + 4 global blocks, relative
# position bias) and the simple feature pyramid (strides 4-32) on COCO panoptic 2017
# (80 things + 53 stuff): PQ, and box / mask AP of the instance predictions. The paper's
# losses and matching (12544 points), 6 pixel-decoder encoder layers, 9 decoder layers,
# 100 queries; AdamW 1e-4 with layer-wise lr decay, 50 epochs.
# Initialise the backbone from a published ViT-B checkpoint (timm / HF / MAE format):
#   --cfg-options model.backbone.pretrained=PATH
_base_ = [
    "../_base_/models/mask2former_vit_sfp.py",
    "../_base_/datasets/coco_panoptic.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

num_things_classes = 80
num_stuff_classes = 53
embed_dims = 256
backbone_dims = 768
num_queries = 100
_deform = dict(
    type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=8, num_levels=3, num_points=4
)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=1024)
_ffn_decoder = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=2048)
_attn = dict(type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8)

model = dict(
    backbone=dict(_delete_=True, type="vitdet_base_patch16", img_size=1024),
    neck=dict(
        in_channels=backbone_dims,
        out_channels=embed_dims,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        in_stride=16,
        top_block=False,
    ),
    head=dict(
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries=num_queries,
        num_points=12544,
        pixel_decoder=dict(
            in_channels=dict(p2=embed_dims, p3=embed_dims, p4=embed_dims, p5=embed_dims),
            embed_dims=embed_dims,
            mask_dims=embed_dims,
            encoder=dict(num_layers=6, layer=dict(self_attn=_deform, ffn=_ffn)),
        ),
        transformer_decoder=dict(
            num_layers=9,
            layer=dict(cross_attn=_attn, self_attn=_attn, ffn=_ffn_decoder),
        ),
        matcher=dict(num_points=12544),
        test_cfg=dict(max_per_image=100),
    ),
)

max_epochs = 50
train_cfg = dict(max_epochs=max_epochs)
lr = 1e-4
optim_wrapper = dict(
    optimizer=dict(type="AdamW", lr=lr, weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(decay_rate=0.7, backbone="backbone"),
)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="coco_panoptic/PQ", rule="greater")
)
