"""``PointSegHead``: a class per point from the backbone's ``'points'`` features, optionally
with the cloud's ``'pooled'`` feature concatenated to each of its points (the global context
of Point-MAE's part-segmentation head and PointNet's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.data.data_sample import DataSample
from visionfm.ops.point_batch import offsets_to_batch
from visionfm.registry import MODELS

from .base import PointHead, point_mlp, sample_name

__all__ = ["PointSegHead"]


@MODELS.register_module()
class PointSegHead(PointHead):
    """``feats['points']`` (N, in_channels) [+ ``feats['pooled']`` (B, context_channels) of
    each point's cloud] -> logits (N, num_classes).

    Args:
        num_classes: K.
        in_channels: width of ``'points'`` (the backbone's ``out_channels['points']``).
        context_channels: width of ``'pooled'`` to concatenate to every point of its cloud;
            None: no global context.
        hidden_dims, dropout: the MLP (:func:`point_mlp`) before the Linear ``fc_seg``.
        ignore_index: ground-truth value of unlabelled points.
        loss_weight: factor on ``loss_seg``.

    ``loss``: cross-entropy against ``gt_segment`` (N_b,) per cloud (``ignore_index``
    ignored; 0 when every point is). ``predict`` writes ``pred_segment`` long (N_orig,) for
    every point of the ORIGINAL cloud: a test pipeline that grid-sampled the cloud leaves
    ``grid_inverse`` (N_orig,) in the metainfo, mapping each original point to the sampled
    point of its voxel; fragment voting is the model's (``PointModel``), which hands
    :meth:`predict_by_scores` scores already on the original points.
    """

    per_point = True
    predicts = ("pred_segment",)
    class_layers = (r"^fc_seg\.",)

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        context_channels: int | None = None,
        hidden_dims: Sequence[int] = (256,),
        dropout: float = 0.5,
        ignore_index: int = -1,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.context = num_classes, context_channels is not None
        self.ignore_index, self.loss_weight = ignore_index, loss_weight
        width = in_channels + (context_channels or 0)
        self.mlp = point_mlp(width, hidden_dims, dropout)
        self.fc_seg = nn.Linear(hidden_dims[-1] if hidden_dims else width, num_classes)

    @property
    def in_levels(self) -> tuple[str, ...]:
        return ("points", "pooled") if self.context else ("points",)

    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> Tensor:
        """feats ``'points'`` (N, C) [, ``'pooled'`` (B, C_g), ``'offsets'`` (B,)] -> (N, K)."""
        x = feats["points"]
        if self.context:
            x = torch.cat([x, feats["pooled"][offsets_to_batch(feats["offsets"])]], 1)
        return self.fc_seg(self.mlp(x))

    def labels(self, data_samples: Sequence[DataSample], num_points: int) -> Tensor:
        """(N,) long: the samples' ``gt_segment`` concatenated, checked against the packed
        point count and the class range."""
        parts = []
        for i, sample in enumerate(data_samples):
            if "gt_segment" not in sample:
                raise KeyError(f"PointSegHead: {sample_name(sample, i)} has no gt_segment")
            seg = sample.gt_segment.long()
            bad = (seg != self.ignore_index) & ((seg < 0) | (seg >= self.num_classes))
            if bool(bad.any()):
                raise ValueError(
                    f"PointSegHead: {sample_name(sample, i)} has labels "
                    f"{torch.unique(seg[bad])[:10].tolist()} outside 0..{self.num_classes - 1} "
                    f"(and {self.ignore_index} = ignored): fix the labels or set num_classes"
                )
            parts.append(seg)
        labels = torch.cat(parts)
        if len(labels) != num_points:
            raise ValueError(
                f"PointSegHead: the samples' gt_segment hold {len(labels)} labels for "
                f"{num_points} input points: every transform that drops points must take the "
                "labels with them"
            )
        return labels

    def loss(self, feats: Mapping[str, Tensor], data_samples: Sequence[DataSample]) -> dict:
        logits = self(feats)
        labels = self.labels(data_samples, len(logits)).to(logits.device)
        valid = labels != self.ignore_index
        if not bool(valid.any()):  # nothing labelled: no gradient, no NaN
            return dict(loss_seg=logits.sum() * 0.0)
        loss = F.cross_entropy(logits, labels, ignore_index=self.ignore_index)
        return dict(loss_seg=self.loss_weight * loss)

    def predict_by_scores(
        self, scores: Tensor | Sequence[Tensor], data_samples: Sequence[DataSample]
    ) -> list[DataSample]:
        """Per sample (N_b, K) probabilities on its input points -> ``pred_segment`` (N_orig,)
        (through ``grid_inverse`` when the metainfo has it)."""
        for i, (sample, score) in enumerate(zip(data_samples, scores, strict=True)):
            pred = score.argmax(1)
            inverse = sample.metainfo.get("grid_inverse")
            if inverse is not None:
                inverse = torch.as_tensor(inverse, device=pred.device).long()
                if len(inverse) and int(inverse.max()) >= len(pred):
                    raise ValueError(
                        f"PointSegHead: {sample_name(sample, i)}: grid_inverse points at row "
                        f"{int(inverse.max())} of {len(pred)} predictions: grid sampling must "
                        "be the last transform that drops points in the test pipeline"
                    )
                pred = pred[inverse]
            sample.pred_segment = pred
        return list(data_samples)
