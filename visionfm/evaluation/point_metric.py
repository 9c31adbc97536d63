"""Point-cloud metrics: classification (overall accuracy, mean class accuracy) and per-point
semantic segmentation (mIoU, mAcc, allAcc), as Point-MAE / Pointcept report them.

Config::

    val_evaluator = dict(type='PointClsMetric')          # cls/acc, cls/mAcc
    val_evaluator = dict(type='PointSegMetric', classwise=True)  # seg/mIoU, seg/mAcc, seg/allAcc

Classification: each sample has ``pred_label`` and ``gt_label``; ``acc`` is the fraction of
clouds right, ``mAcc`` the mean over the classes present in the ground truth of each class's
fraction right. Segmentation: each sample has ``pred_segment`` and ``gt_segment`` over the
same (original) points, -1 = ignored; the counts and formulas are
:mod:`visionfm.evaluation.iou_metric`'s (``allAcc`` is its ``aAcc``: the fraction of
labelled points right). Results are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric

from visionfm.registry import METRICS

from .iou_metric import IoUMetric, _numpy

__all__ = ["PointClsMetric", "PointSegMetric"]


def _where(sample: dict, i: int) -> str:
    return str(sample.get("file", f"sample {i}"))


@METRICS.register_module()
class PointClsMetric(BaseMetric):
    """Overall accuracy ``acc`` and mean class accuracy ``mAcc`` of cloud classification.

    Args:
        num_classes: K; None: ``len(dataset_meta['classes'])`` or, without classes, one
            more than the largest label seen.
        collect_device / prefix / collect_dir: as mmengine's ``BaseMetric``.
    """

    default_prefix = "cls"

    def __init__(
        self,
        num_classes: int | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self._num_classes = num_classes

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store ``(pred_label, gt_label)`` per sample."""
        for i, sample in enumerate(data_samples):
            if "pred_label" not in sample or "gt_label" not in sample:
                raise KeyError(
                    f"PointClsMetric: {_where(sample, i)} needs 'pred_label' and 'gt_label' "
                    f"(a PointClsHead and labelled data); got keys {sorted(sample)}"
                )
            self.results.append(
                (int(_numpy(sample["pred_label"])), int(_numpy(sample["gt_label"])))
            )

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            raise ValueError("PointClsMetric: no results to evaluate")
        pred, gt = np.asarray(results, np.int64).T
        k = (
            self._num_classes
            or len((self.dataset_meta or {}).get("classes") or ())
            or int(gt.max()) + 1
        )
        if gt.min() < 0 or gt.max() >= k:
            raise ValueError(f"PointClsMetric: ground-truth labels outside 0..{k - 1}")
        right = pred == gt
        per_class = np.bincount(gt[right], minlength=k) / np.maximum(
            np.bincount(gt, minlength=k), 1
        )
        present = np.bincount(gt, minlength=k) > 0
        return dict(
            acc=round(float(right.mean()), 4), mAcc=round(float(per_class[present].mean()), 4)
        )


@METRICS.register_module()
class PointSegMetric(IoUMetric):
    """``mIoU``, ``mAcc``, ``allAcc`` of per-point segmentation (``classwise``: a table of
    per-class IoU / Acc logged); arguments as :class:`IoUMetric`'s, ``ignore_index=-1``."""

    def __init__(
        self,
        num_classes: int | None = None,
        ignore_index: int = -1,
        classwise: bool = False,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(num_classes, ignore_index, classwise, collect_device, prefix, collect_dir)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store one (3, K) count array per cloud (``area_counts``)."""
        for i, sample in enumerate(data_samples):
            if "pred_segment" not in sample or "gt_segment" not in sample:
                raise KeyError(
                    f"PointSegMetric: {_where(sample, i)} needs 'pred_segment' and 'gt_segment' "
                    f"(a PointSegHead and labelled data); got keys {sorted(sample)}"
                )
            pred, gt = _numpy(sample["pred_segment"]), _numpy(sample["gt_segment"])
            if pred.shape != gt.shape:
                raise ValueError(
                    f"PointSegMetric: {_where(sample, i)}: {pred.shape} predictions for "
                    f"{gt.shape} labelled points: predictions cover the original cloud, so the "
                    "test pipeline must keep its labels (PointGridSample(mode='test') does)"
                )
            self._count(pred, gt, _where(sample, i))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Summed counts -> ``mIoU``, ``mAcc``, ``allAcc`` (4 decimals)."""
        scores = self._scores(results)
        return dict(
            mIoU=round(float(scores["mIoU"]), 4),
            mAcc=round(float(scores["mAcc"]), 4),
            allAcc=round(float(scores["aAcc"]), 4),
        )
