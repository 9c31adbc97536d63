"""``PointClsHead``: one class per cloud from the backbone's ``'pooled'`` feature, Point-MAE's
fine-tuning classifier (Pang et al., "Masked Autoencoders for Point Cloud Self-supervised
Learning", ECCV 2022)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.data.data_sample import DataSample
from visionfm.registry import MODELS

from .base import PointHead, point_mlp, sample_name

__all__ = ["PointClsHead"]


@MODELS.register_module()
class PointClsHead(PointHead):
    """``feats['pooled']`` (B, in_channels) -> logits (B, num_classes).

    Layers: :func:`point_mlp` over ``hidden_dims`` (Linear - BatchNorm1d - ReLU - Dropout
    each), then the Linear ``fc_cls``: with the default ``hidden_dims=(256, 256)`` this is
    Point-MAE's ``cls_head_finetune`` (its ``0, 1, 4, 5`` are ``mlp.0, mlp.1, mlp.4, mlp.5``,
    its ``8`` is ``fc_cls``).

    Args:
        num_classes: K.
        in_channels: width of ``'pooled'`` (the backbone's ``out_channels['pooled']``).
        hidden_dims, dropout: the MLP.
        label_smoothing: of the cross-entropy.
        loss_weight: factor on ``loss_cls``.
        in_level: the feature read.

    ``loss`` gives ``loss_cls`` and the batch accuracy ``acc`` (logged, not optimised);
    ``predict`` writes ``pred_label`` (long scalar) and ``pred_score`` (K,) probabilities.
    """

    predicts = ("pred_label", "pred_score")
    class_layers = (r"^fc_cls\.",)

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        hidden_dims: Sequence[int] = (256, 256),
        dropout: float = 0.5,
        label_smoothing: float = 0.0,
        loss_weight: float = 1.0,
        in_level: str = "pooled",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.in_level = num_classes, in_level
        self.label_smoothing, self.loss_weight = label_smoothing, loss_weight
        self.mlp = point_mlp(in_channels, hidden_dims, dropout)
        self.fc_cls = nn.Linear(hidden_dims[-1] if hidden_dims else in_channels, num_classes)

    @property
    def in_levels(self) -> tuple[str, ...]:
        return (self.in_level,)

    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> Tensor:
        """feats[in_level] (B, C) -> logits (B, K)."""
        return self.fc_cls(self.mlp(feats[self.in_level]))

    def labels(self, data_samples: Sequence[DataSample], device: torch.device) -> Tensor:
        """(B,) long ``gt_label`` of the samples, each checked to lie in ``[0, K)``."""
        labels = []
        for i, sample in enumerate(data_samples):
            if "gt_label" not in sample:
                raise KeyError(f"PointClsHead: {sample_name(sample, i)} has no gt_label")
            label = int(sample.gt_label)
            if not 0 <= label < self.num_classes:
                raise ValueError(
                    f"PointClsHead: {sample_name(sample, i)} has label {label}, outside "
                    f"0..{self.num_classes - 1}: fix the label file or set num_classes"
                )
            labels.append(label)
        return torch.tensor(labels, dtype=torch.long, device=device)

    def loss(self, feats: Mapping[str, Tensor], data_samples: Sequence[DataSample]) -> dict:
        logits = self(feats)
        labels = self.labels(data_samples, logits.device)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(1) == labels).float().mean().detach()
        return dict(loss_cls=self.loss_weight * loss, acc=acc)

    def predict_by_scores(
        self, scores: Tensor | Sequence[Tensor], data_samples: Sequence[DataSample]
    ) -> list[DataSample]:
        """scores (B, K) probabilities -> ``pred_label``, ``pred_score`` per sample."""
        for sample, score in zip(data_samples, scores, strict=True):
            sample.pred_score = score.detach()
            sample.pred_label = score.argmax()
        return list(data_samples)
