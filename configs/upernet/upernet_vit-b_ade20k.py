# UperNet on ViT-B/16 with the ViTDet simple feature pyramid (strides 4-32 from the last
# block) on ADE20K: 512 x 512 crops, 160k iterations at batch 16, AdamW with layer-wise lr
# decay 0.65 (the BEiT / MAE fine-tuning recipe), sliding-window testing.
# Initialise the backbone from a published ViT-B checkpoint (timm / HF / MAE format):
#   --cfg-options model.backbone.pretrained=PATH
_base_ = [
    "../_base_/models/upernet_vit_sfp.py",
    "../_base_/datasets/ade20k.py",
    "../_base_/schedules/seg_adamw_160k.py",
    "../_base_/default_runtime.py",
]

num_classes = 150
backbone_dims = 768
neck_dims = 256
channels = 512

model = dict(
    backbone=dict(_delete_=True, type="vit_base_patch16", img_size=512, drop_path_rate=0.1),
    neck=dict(
        in_channels=backbone_dims,
        out_channels=neck_dims,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        in_stride=16,
    ),
    head=dict(
        num_classes=num_classes,
        in_channels=dict(p2=neck_dims, p3=neck_dims, p4=neck_dims, p5=neck_dims),
        channels=channels,
        auxiliary=dict(
            num_classes=num_classes,
            in_channels=dict(_delete_=True, p4=neck_dims),
            channels=256,
        ),
    ),
    test_cfg=dict(mode="slide", crop_size=(512, 512), stride=(341, 341)),
)

optim_wrapper = dict(
    constructor="LayerDecayOptimWrapperConstructor",
    paramwise_cfg=dict(decay_rate=0.65, backbone="backbone"),
)
auto_scale_lr = dict(base_batch_size=16)  # 8 processes x batch 2
sync_bn = "torch"  # batch norm of the decoder synchronised across processes

# iteration-based: log / checkpoint by iteration
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=16000, max_keep_ckpts=3, save_best="seg/mIoU"),
)
log_processor = dict(by_epoch=False)
