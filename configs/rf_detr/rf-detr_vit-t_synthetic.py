# A small RF-DETR-style detector trained from scratch on the synthetic world on CPU
# (tools/make_synthetic.py): a patch-8 ViT (96 wide, 4 blocks, convolutional stem as the DINO
# demo, 2 x 2 windows in the blocks before each output), the projector fusing blocks 1 and 3
# into one stride-8 level, the LW-DETR / RF-DETR head (no encoder, learned reference deltas on
# the top-k proposals, bbox_reparam, IoU-aware BCE) with 4 query groups in training.
_base_ = [
    "../_base_/models/rf-detr_small.py",
    "../_base_/datasets/synthetic_detection_128px.py",
    "../_base_/schedules/detr_adamw.py",
    "../_base_/default_runtime.py",
]

num_classes = 5
embed_dims = 128
num_queries = 30
model = dict(
    data_preprocessor=dict(size_divisor=16),  # whole 2 x 2 windows of 8 px patches
    backbone=dict(
        _delete_=True,
        type="ViT",
        img_size=128,
        patch_size=8,
        embed_dim=96,
        depth=4,
        num_heads=4,
        class_token=False,
        embed_layer="conv",
        num_windows=2,
        window_block_indices=[0, 2],
        out_indices=[1, 3],
    ),
    neck=dict(
        in_channels=dict(_delete_=True, block1=96, block3=96),
        strides=dict(_delete_=True, block1=8, block3=8),
        out_channels=embed_dims,
        num_blocks=1,
    ),
    head=dict(
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=num_queries,
        num_groups=4,
        in_channels=dict(_delete_=True, p3=embed_dims),
        strides=dict(_delete_=True, p3=8),
        decoder=dict(
            ref_point_head=dict(
                in_dims=2 * embed_dims, hidden_dims=embed_dims, out_dims=embed_dims
            ),
            layer=dict(
                self_attn=dict(embed_dims=embed_dims, num_heads=4),
                cross_attn=dict(embed_dims=embed_dims, num_heads=8, num_points=4),
                ffn=dict(embed_dims=embed_dims, feedforward_dims=4 * embed_dims, dropout=0.0),
                dropout=0.0,
            ),
        ),
        test_cfg=dict(max_per_img=num_queries),
    ),
)
optim_wrapper = dict(optimizer=dict(lr=7e-4))
max_epochs = 5
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2, save_best="coco/bbox_mAP"))
custom_hooks = [
    dict(type="EMAHook", ema_type="MomentumAnnealingEMA", momentum=0.004, gamma=10, priority=49)
]
