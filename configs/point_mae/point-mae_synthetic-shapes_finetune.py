# Fine-tune the synthetic-shapes classifier (configs/point_cls/point-mae_synthetic-shapes.py:
# the same backbone as the pre-training config, plus a class token and Point-MAE's
# classifier) from the Point-MAE pre-training checkpoint:
#
#   python tools/train.py configs/point_mae/point-mae_synthetic-shapes_pretrain.py
#   python tools/train.py configs/point_mae/point-mae_synthetic-shapes_finetune.py
#
# load_from takes the encoder (backbone.*); the log lists what it leaves (the decoder,
# mask token, decoder position MLP and prediction layer) and what keeps its initial weights
# (the class token and its position, the classifier). Point-MAE fine-tunes at lr 5e-4.
_base_ = ["../point_cls/point-mae_synthetic-shapes.py"]

load_from = "work_dirs/point-mae_synthetic-shapes_pretrain/epoch_10.pth"
optim_wrapper = dict(optimizer=dict(lr=5e-4))
