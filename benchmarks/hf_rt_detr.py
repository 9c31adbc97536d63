"""The RT-DETR baseline of the time-to-accuracy benchmark (``bench_time_to_accuracy.py``):
``transformers.RTDetrV2ForObjectDetection`` (RT-DETRv2-S, the smallest published RT-DETRv2)
from random weights, trained on its own loss with its authors' recipe by the plain loop of
``hf_deformable_detr.train_loop``.

Why RT-DETRv2 and not D-FINE: both build and train on CPU at 128 px, but D-FINE's smallest
model (D-FINE-N) reads strides 16 / 32 only, 8 x 8 + 4 x 4 = 80 tokens at 128 px, fewer
than its 300 queries, so its recipe would need rescaling, and its distribution (FGL / DDF)
losses add to every step; RT-DETRv2-S at 128 x 128 has 16 x 16 + 8 x 8 + 4 x 4 = 336
encoder tokens and keeps its 300 queries.

Model (lyuwenyu/RT-DETR ``rtdetrv2_r18vd_120e_coco``): ResNet-18-vd (``RTDetrResNetBackbone``,
deep stem, random init, trainable BatchNorm as the recipe's ``freeze_norm: False``), hybrid
encoder (hidden 256, expansion 0.5, one AIFI layer, FFN 1024), 3 decoder layers, 300
queries, 100 denoising queries (label noise 0.5, box noise 1.0), VFL + L1 x5 + GIoU x2 with
the matcher's class cost 2, class bias prior 0.01. About 20 M parameters.

Recipe (the authors' for r18vd): AdamW lr 1e-4, betas (0.9, 0.999), weight decay 1e-4 but 0
on every norm / BatchNorm parameter, no backbone lr multiplier (r18 has none), gradient
norm clipped at 0.1, linear lr warm-up over ``--rtdetr-warmup`` (2000) iterations, EMA of
the weights (decay 0.9999 x (1 - exp(-updates / 2000))) evaluated. Input: the image
resized to 128 x 128 (their fixed-size resize, 640 -> 128), pixels in [0, 1] (they do not
normalise), random horizontal flips.

Deviations, forced by the benchmark: random weights (they start from an ImageNet backbone);
128 px instead of 640; batch 8 as the other baselines (theirs: 16 over 4 GPUs, lr not
rescaled); no RandomPhotometricDistort / ZoomOut / IoUCrop (all baselines see the same
flips only); evaluated by top 100 of queries x classes (COCO keeps 100 per image).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch
from hf_deformable_detr import CocoBoxes, train_loop


def build_rtdetr_model(num_classes: int):
    """RT-DETRv2-S of the module doc, random weights (nothing downloaded)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import RTDetrResNetConfig, RTDetrV2Config, RTDetrV2ForObjectDetection

    backbone = RTDetrResNetConfig(
        depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic",
        embedding_size=64, out_features=["stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = RTDetrV2Config(
        backbone_config=backbone, freeze_backbone_batch_norms=False,
        encoder_in_channels=[128, 256, 512], encoder_hidden_dim=256, hidden_expansion=0.5,
        encoder_ffn_dim=1024, d_model=256, decoder_layers=3, num_queries=300,
        num_denoising=100, label_noise_ratio=0.5, box_noise_scale=1.0,
        initializer_bias_prior_prob=0.01, id2label={i: str(i) for i in range(num_classes)},
    )  # fmt: skip
    return RTDetrV2ForObjectDetection(config)


class ModelEMA:
    """RT-DETR's weight EMA: every floating tensor of the state dict (BatchNorm statistics
    included) follows the model with decay ``decay * (1 - exp(-updates / warmups))``."""

    def __init__(self, model: torch.nn.Module, decay=0.9999, warmups=2000) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.warmups, self.updates = decay, warmups, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.warmups))
        state = model.state_dict()
        for key, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(state[key].detach(), alpha=1 - d)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Their regex ``^(?=.*(?:norm|bn)).*$``: no weight decay on norm / BatchNorm params."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if "norm" in name or "bn" in name else decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def run_rtdetr(args, train_ann: Path, val_ann: Path) -> dict:
    """Trains the RT-DETRv2-S baseline in this process until the budget."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    images = args.data / "images"
    train_set = CocoBoxes(train_ann, images / "train", train=True, square=True, normalize=False)
    val_set = CocoBoxes(val_ann, images / "val", train=False, square=True, normalize=False)
    model = build_rtdetr_model(len(val_set.label_of)).train()
    lr, warmup = args.rtdetr_lr, args.rtdetr_warmup
    optimizer = torch.optim.AdamW(param_groups(model, 1e-4), lr=lr, betas=(0.9, 0.999))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ema = ModelEMA(model)

    def step(inputs: dict) -> float:
        loss = model(pixel_values=inputs["pixel_values"], labels=inputs["labels"]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.1)
        for group in optimizer.param_groups:  # LinearWarmup: lr x min(1, (step + 1) / warmup)
            group["lr"] = lr * min(1.0, (ema.updates + 1) / warmup)
        optimizer.step()
        ema.update(model)
        return loss.item()

    run = train_loop("hf-rtdetr", args, model, train_set, val_set, step, ema.module)
    return dict(run, backbone="ResNet-18-vd", lr=lr, warmup=warmup)
