# The HF Deformable DETR baseline's recipe (benchmarks/hf_deformable_detr.py) built from
# visionfm's own Deformable DETR: a second implementation of the same recipe on the same
# data, to check that baseline (bench_time_to_accuracy.py --which visionfm-deformable).
# Random-init timm ResNet-18 with trainable BatchNorm, strides 8 / 16 / 32 + one stride-64
# level, d 128, 3 + 3 layers, FFN 512, 100 queries, two-stage (class-agnostic encoder
# proposals, trained) + box refinement, class 2 / L1 5 / GIoU 2, AdamW 2e-4 constant,
# weight decay 1e-4, sampling offsets x 0.1, clip 0.1, batch 8, long side 128, flips.
_base_ = [
    "../../configs/_base_/models/deformable-detr_r50.py",
    "../../configs/_base_/datasets/synthetic_detection_128px.py",
    "../../configs/_base_/schedules/detr_adamw.py",
    "../../configs/_base_/default_runtime.py",
]

embed_dims = 128
_deform = dict(embed_dims=embed_dims, num_levels=4)
_ffn = dict(embed_dims=embed_dims, feedforward_dims=512)
model = dict(
    backbone=dict(model_name="resnet18", frozen_bn=False, frozen_stages=-1),
    head=dict(
        num_classes=5,
        embed_dims=embed_dims,
        num_queries=100,
        in_channels=dict(p3=128, p4=256, p5=512),
        positional_encoding=dict(num_feats=embed_dims // 2),
        encoder=dict(num_layers=3, layer=dict(self_attn=_deform, ffn=_ffn)),
        decoder=dict(
            num_layers=3,
            layer=dict(self_attn=dict(embed_dims=embed_dims), cross_attn=_deform, ffn=_ffn),
        ),
        two_stage=True,
        with_box_refine=True,
        select_invalid_proposals=True,
        class_agnostic_proposals=True,
    ),
)
train_dataloader = dict(batch_size=8)
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(custom_keys={"sampling_offsets": dict(lr_mult=0.1)}),
)
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False, begin=0, end=1)]
train_cfg = dict(max_epochs=6)
