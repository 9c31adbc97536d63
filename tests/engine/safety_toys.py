"""Registered toys for the checkpoint-safety, kill/resume and NaN-guard tests.

The SIGKILL test runs ``tools/train.py`` in a subprocess on a config that imports this
module with ``custom_imports`` (the test puts this folder on ``PYTHONPATH``).
"""

import itertools
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch.utils.data import Dataset

from visionfm.registry import DATASETS, HOOKS, METRICS, MODELS


@MODELS.register_module(force=True)
class SafetyToyRegressor(BaseModel):
    """MLP with dropout: ``inputs`` list of (dim,) -> ``{"loss_mse", "loss_l1"}``.

    ``running_mean`` is a BatchNorm-like buffer updated in every training forward, so a
    NaN input poisons the weights even when the optimizer step is skipped.
    """

    def __init__(self, dim: int = 8, with_buffer: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Dropout(0.3), nn.Linear(16, 1))
        self.with_buffer = with_buffer
        if with_buffer:
            self.register_buffer("running_mean", torch.zeros(dim))

    def forward(self, inputs, data_samples=None, mode="loss"):
        x = torch.stack(inputs)  # (B, dim)
        if self.with_buffer and self.training:
            self.running_mean.mul_(0.9).add_(0.1 * x.mean(0).detach())
        pred = self.net(x)  # (B, 1)
        if mode != "loss":
            return pred
        y = torch.stack([s.y for s in data_samples])  # (B, 1)
        losses = dict(loss_mse=((pred - y) ** 2).mean(), loss_l1=0.1 * (pred - y).abs().mean())
        if any(s.metainfo.get("grad_nan") for s in data_samples):  # finite loss, NaN gradient
            losses["loss_mse"] = losses["loss_mse"] + 0 * torch.sqrt(pred - pred.detach()).sum()
        return losses


@DATASETS.register_module(force=True)
class SafetyToyData(Dataset):
    """``n`` samples ``dict(inputs=(dim,), data_samples)`` with random augmentation drawn
    from torch, numpy and python's ``random``; the samples in ``nan_indices`` have a NaN
    input, those in ``grad_nan_indices`` a finite loss with NaN gradients."""

    def __init__(self, n: int = 24, dim: int = 8, nan_indices=(), grad_nan_indices=()) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x.sum(1, keepdim=True) / dim**0.5
        self.nan_indices, self.grad_nan_indices = set(nan_indices), set(grad_nan_indices)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        x = self.x[i] + 0.05 * torch.randn(self.x.shape[1])
        x = x * float(np.random.uniform(0.9, 1.1)) * (1.0 + 0.01 * random.random())
        if i in self.nan_indices:
            x = torch.full_like(x, float("nan"))
        meta = dict(img_path=f"images/{i:03d}.png", grad_nan=i in self.grad_nan_indices)
        sample = BaseDataElement(metainfo=meta, y=self.y[i])
        return dict(inputs=x, data_samples=sample)


@METRICS.register_module(force=True)
class RisingScore(BaseMetric):
    """``score`` 1, 2, 3, ... at each evaluation: every validation gives a new best."""

    calls = 0

    def process(self, data_batch, data_samples) -> None:
        self.results.append(0)

    def compute_metrics(self, results) -> dict:
        RisingScore.calls += 1
        return dict(score=float(RisingScore.calls))


@HOOKS.register_module(force=True)
class HangAfterIter(Hook):
    """After iteration ``at`` (1-based), write ``marker`` and sleep until killed."""

    priority = "LOWEST"

    def __init__(self, at: int, marker: str) -> None:
        self.at, self.marker = at, marker

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.at:
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(600)


@HOOKS.register_module(force=True)
class RecordIters(Hook):
    """Records the (1-based) iterations this run trained in ``seen``."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.seen.append(runner.iter + 1)


def trained_iters(runner) -> list[int]:
    """Iterations recorded by the run's ``RecordIters`` hook."""
    return next(h for h in runner.hooks if isinstance(h, RecordIters)).seen


class Interrupted(Exception):
    pass


@HOOKS.register_module(force=True)
class InterruptAfterIter(Hook):
    """Raise ``Interrupted`` after iteration ``at`` (1-based): an in-process crash."""

    priority = "LOWEST"

    def __init__(self, at: int) -> None:
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.at:
            raise Interrupted


_RUNS = itertools.count()


def toy_config(work_dir, **overrides) -> dict:
    """Config dict for the toys: 24 samples, batch 4 (6 iterations per epoch), 3 epochs,
    a checkpoint every 4 iterations (so some fall inside an epoch)."""
    cfg = dict(
        custom_imports=dict(imports=["safety_toys"], allow_failed_imports=False),
        model=dict(type="SafetyToyRegressor"),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dict(type="SafetyToyData"),
            batch_size=4,
            num_workers=0,
            sampler=dict(type="DefaultSampler", shuffle=True),
        ),
        train_cfg=dict(by_epoch=True, max_epochs=3),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.02, momentum=0.9)),
        param_scheduler=dict(type="MultiStepLR", milestones=[2], gamma=0.1),
        default_hooks=dict(
            checkpoint=dict(type="CheckpointHook", interval=4, by_epoch=False, max_keep_ckpts=2),
            logger=dict(type="LoggerHook", interval=1),
        ),
        randomness=dict(seed=7),
        log_level="WARNING",
        custom_hooks=[dict(type="RecordIters")],
        experiment_name=f"safety_toy_{os.getpid()}_{next(_RUNS)}",  # one MessageHub per run
    )
    for key, value in overrides.items():
        if key == "train_dataloader":  # merged; default_hooks merged per hook; the rest replaced
            cfg[key] = {**cfg[key], **value}
        elif key == "default_hooks":
            cfg[key] = {k: {**cfg[key].get(k, {}), **v} for k, v in {**cfg[key], **value}.items()}
        else:
            cfg[key] = value
    return cfg
