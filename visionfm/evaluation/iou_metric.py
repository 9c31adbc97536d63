"""Semantic segmentation metric: mean intersection-over-union (mIoU), mean class accuracy
(mAcc) and overall pixel accuracy (aAcc), as reported on ADE20K / Cityscapes.

Config::

    val_evaluator = dict(type='IoUMetric', ignore_index=255, classwise=True)

Each data sample handed to ``process`` carries ``pred_sem_seg`` (H, W) and ``gt_sem_seg``
(H, W) label maps of the ORIGINAL image (load the annotations after ``Resize`` in the test
pipeline so the ground truth keeps the original size; a ground truth padded at the bottom /
right by the data preprocessor is cropped back to the prediction's size).

Per image only three length-``K`` count vectors are stored, over the pixels whose ground
truth is not ``ignore_index``: ``intersect[c]`` (pred = gt = c), ``pred[c]`` (pred = c) and
``label[c]`` (gt = c) -- the diagonal, column and row sums of the image's confusion matrix.
Gathered from all processes and summed::

    IoU_c = intersect_c / (pred_c + label_c - intersect_c)      Acc_c = intersect_c / label_c
    mIoU  = mean of IoU_c over classes with pred_c + label_c > 0
    mAcc  = mean of Acc_c over classes with label_c > 0
    aAcc  = sum(intersect) / sum(label)

As in mmsegmentation, a class that appears in neither the predictions nor the ground truth
(of the whole evaluated set) has an undefined IoU and is left out of the mean; a class only
predicted (false positives, no ground truth) has IoU 0 and counts. Results are fractions in
[0, 1] (not percentages), under the ``seg/`` prefix: ``seg/mIoU``, ``seg/mAcc``,
``seg/aAcc``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from visionfm.registry import METRICS

__all__ = ["IoUMetric", "area_counts", "scores_from_counts"]


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def area_counts(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """(3, K) int64: per class ``intersect``, ``pred`` and ``label`` pixel counts over the
    pixels where ``gt != ignore_index``. pred, gt: (H, W) integer label maps."""
    valid = gt != ignore_index
    pred, gt = pred[valid].astype(np.int64), gt[valid].astype(np.int64)
    inter = pred[pred == gt]
    return np.stack(
        [np.bincount(v, minlength=num_classes)[:num_classes] for v in (inter, pred, gt)]
    )


def scores_from_counts(counts: np.ndarray) -> dict[str, np.ndarray | float]:
    """(3, K) summed counts -> per-class ``IoU`` / ``Acc`` (K,) (NaN where undefined) and
    the scalars ``mIoU``, ``mAcc``, ``aAcc`` (NaN when nothing is defined)."""
    inter, pred, label = counts.astype(np.float64)
    union = pred + label - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
        acc = np.where(label > 0, inter / label, np.nan)
    total = label.sum()

    def mean(x: np.ndarray) -> float:
        return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")

    return dict(
        IoU=iou,
        Acc=acc,
        mIoU=mean(iou),
        mAcc=mean(acc),
        aAcc=float(inter.sum() / total) if total > 0 else float("nan"),
    )


@METRICS.register_module()
class IoUMetric(BaseMetric):
    """mIoU / mAcc / aAcc of semantic segmentation (see the module doc).

    Args:
        num_classes: K; None: ``len(dataset_meta['classes'])`` (set by the runner).
        ignore_index: ground-truth value of unlabelled pixels.
        classwise: also log a table of per-class IoU / Acc.
        collect_device / prefix / collect_dir: as mmengine's ``BaseMetric``.
    """

    default_prefix = "seg"

    def __init__(
        self,
        num_classes: int | None = None,
        ignore_index: int = 255,
        classwise: bool = False,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self._num_classes = num_classes
        self.ignore_index = ignore_index
        self.classwise = classwise

    @property
    def num_classes(self) -> int:
        if self._num_classes is not None:
            return self._num_classes
        classes = (self.dataset_meta or {}).get("classes")
        if not classes:
            raise ValueError(
                "IoUMetric: give num_classes, or evaluate a dataset whose metainfo has classes"
            )
        return len(classes)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store one (3, K) count array per image (see ``area_counts``)."""
        for sample in data_samples:
            if "pred_sem_seg" not in sample or "gt_sem_seg" not in sample:
                raise KeyError(
                    f"IoUMetric: a data sample needs 'pred_sem_seg' and 'gt_sem_seg' (keep "
                    f"LoadAnnotations(with_seg=True) in the test pipeline); got keys "
                    f"{sorted(sample)}"
                )
            pred = _numpy(sample["pred_sem_seg"]).squeeze()
            gt = _numpy(sample["gt_sem_seg"]).squeeze()
            where = sample.get("img_path", "a sample")
            if gt.shape != pred.shape:
                h, w = pred.shape[-2:]
                if (
                    gt.shape[0] >= h
                    and gt.shape[1] >= w
                    and (
                        (gt[h:] == self.ignore_index).all()
                        and (gt[:, w:] == self.ignore_index).all()
                    )
                ):
                    gt = gt[:h, :w]  # padded by the data preprocessor
                else:
                    raise ValueError(
                        f"IoUMetric: {where}: prediction {pred.shape} and ground truth "
                        f"{gt.shape} differ in size (predictions are at the original image "
                        f"size; load the annotations after Resize in the test pipeline)"
                    )
            self._count(pred, gt, where)

    def _count(self, pred: np.ndarray, gt: np.ndarray, where: str) -> None:
        """Refuse labels outside ``0..K-1`` (naming ``where``), then store the (3, K)
        ``area_counts`` of one prediction against its same-shaped ground truth."""
        k = self.num_classes
        bad = (gt != self.ignore_index) & ((gt < 0) | (gt >= k))
        if bad.any() or pred.min(initial=0) < 0 or pred.max(initial=0) >= k:
            raise ValueError(
                f"{type(self).__name__}: {where}: labels outside 0..{k - 1} (ground truth "
                f"{np.unique(gt[bad])[:10].tolist()}, prediction range "
                f"{pred.min(initial=0)}..{pred.max(initial=0)})"
            )
        self.results.append(area_counts(pred, gt, k, self.ignore_index))

    def _scores(self, results: list) -> dict:
        """Summed counts -> ``scores_from_counts`` (the per-class table logged when
        ``classwise``)."""
        if not results:
            raise ValueError(f"{type(self).__name__}: no results to evaluate")
        scores = scores_from_counts(np.sum(results, axis=0))
        if self.classwise:
            self._log_table(scores)
        return scores

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Sum the per-image counts and derive ``mIoU``, ``mAcc``, ``aAcc`` (4 decimals)."""
        scores = self._scores(results)
        return {k: round(float(scores[k]), 4) for k in ("mIoU", "mAcc", "aAcc")}

    def _log_table(self, scores: dict) -> None:
        classes = (self.dataset_meta or {}).get("classes") or [
            str(i) for i in range(self.num_classes)
        ]
        width = max(12, *(len(c) for c in classes))
        lines = [f"{'class':<{width}}  {'IoU':>7}  {'Acc':>7}"]
        for name, iou, acc in zip(classes, scores["IoU"], scores["Acc"]):
            lines.append(f"{name:<{width}}  {iou:7.4f}  {acc:7.4f}")
        print_log("per-class results:\n" + "\n".join(lines), logger="current", level=logging.INFO)
