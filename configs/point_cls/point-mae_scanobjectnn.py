# Point-MAE fine-tuning on ScanObjectNN PB_T50_RS (Pang et al., ECCV 2022;
# cfgs/finetune_scan_hardest.yaml): the base patch transformer (128 groups of 32 points,
# width 384, 12 blocks, 6 heads, drop path 0.1), the classifier on [class token, max over
# tokens], all 2048 points, batch 32, AdamW 5e-4, weight decay 0.05, 10 warm-up epochs then
# cosine over 300, gradient norm clipped at 10.
# Fine-tune from a visionfm PointMAE pre-training with --cfg-options load_from=<its .pth>
# (the encoder is saved under backbone.*); Point-MAE's released pretrain.pth loads into the
# backbone through PointPatchTransformer.load_pretrained (its MAE_encoder.* converted).
# Point-MAE reports 85.18 % on PB_T50_RS (no voting).
_base_ = [
    "../_base_/models/point_mae_finetune.py",
    "../_base_/datasets/scanobjectnn.py",
    "../_base_/default_runtime.py",
]

num_classes = 15
model = dict(backbone=dict(num_groups=128), head=dict(num_classes=num_classes))
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=2, save_best="cls/acc"))
