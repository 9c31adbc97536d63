# DPT with a ViT-B/16 on KITTI (Eigen split, metric depth up to 80 m, SILog loss),
# 24 epochs on 352 x 704 crops of the benchmark window. Pretrained weights as in
# dpt_vit-b_nyu.py.
_base_ = [
    "../_base_/models/dpt_vit.py",
    "../_base_/datasets/kitti_depth.py",
    "../_base_/schedules/depth_adamw.py",
    "../_base_/default_runtime.py",
]

model = dict(head=dict(max_depth=80.0))
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1)}),
)
auto_scale_lr = dict(base_batch_size=16)
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=3, save_best="depth/abs_rel", rule="less")
)
