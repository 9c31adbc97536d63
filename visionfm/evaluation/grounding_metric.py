"""Grounding metrics: referring-expression precision@k (RefCOCO protocol, as in MDETR,
Kamath et al. 2021) and phrase-grounding recall@k (Flickr30k Entities, any-box protocol).

Config::

    val_evaluator = dict(type='RefExpMetric', topk=(1, 5, 10), iou_thr=0.5)
    val_evaluator = dict(type='PhraseGroundingMetric', topk=(1, 5, 10), iou_thr=0.5)

Each data sample handed to ``process`` carries ``pred_instances`` (``bboxes`` (N, 4) xyxy in
ORIGINAL image pixels, ``scores`` (N,), ``labels`` (N,) = index into the sample's
``phrases``) and ``gt_instances`` (``bboxes`` (M, 4) in ORIGINAL pixels, ``labels`` (M,)):
load the annotations after ``Resize`` in the test pipeline, so they stay at the original
size. A box is correct when its IoU with a ground-truth box is >= ``iou_thr``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from visionfm.ops.boxes import box_iou
from visionfm.registry import METRICS

from .coco_format import plain, to_numpy

__all__ = ["PhraseGroundingMetric", "RefExpMetric", "first_hit"]

_MISS = np.iinfo(np.int64).max  # rank of an expression / phrase no box finds


def first_hit(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou_thr: float) -> int:
    """0-based rank, by descending score, of the first of ``pred`` (N, 4) boxes whose IoU with
    one of ``gt`` (M, 4) is >= ``iou_thr``; a huge number when none is."""
    if not len(pred) or not len(gt):
        return _MISS
    order = np.argsort(-scores, kind="stable")
    iou, _ = box_iou(torch.from_numpy(pred[order]), torch.from_numpy(gt))  # (N, M)
    hits = np.nonzero((iou >= iou_thr).any(dim=1).numpy())[0]
    return int(hits[0]) if len(hits) else _MISS


def _boxes(instances: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bboxes (N, 4) float64, labels (N,) int64, scores (N,) float64: ones if absent)."""
    inst = plain(instances)
    bboxes = to_numpy(inst["bboxes"], np.float64).reshape(-1, 4)
    labels = to_numpy(inst.get("labels", np.zeros(len(bboxes))), np.int64).reshape(-1)
    scores = to_numpy(inst.get("scores", np.ones(len(bboxes))), np.float64).reshape(-1)
    return bboxes, labels, scores


class _TopKMetric(BaseMetric):
    """Shared arguments: ``topk`` (increasing k of the reported ``@k``), ``iou_thr``."""

    def __init__(
        self,
        topk: Sequence[int] = (1, 5, 10),
        iou_thr: float = 0.5,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or any(k < 1 for k in self.topk):
            raise ValueError(f"{type(self).__name__}: topk must be ks >= 1, got {topk!r}")
        self.iou_thr = float(iou_thr)

    def _at_k(self, ranks: list[int], name: str) -> dict[str, float]:
        ranks = np.asarray(ranks, np.int64)
        return {f"{name}@{k}": round(float((ranks < k).mean()), 4) for k in self.topk}

    @staticmethod
    def _sample(sample: Any) -> dict:
        sample = plain(sample)
        if "pred_instances" not in sample or "gt_instances" not in sample:
            raise KeyError(
                "grounding metrics need 'pred_instances' and 'gt_instances' in each data sample "
                f"(keep LoadAnnotations in the test pipeline); got keys {sorted(sample)}"
            )
        return sample


@METRICS.register_module()
class RefExpMetric(_TopKMetric):
    """Referring expressions: precision@k = the fraction of expressions for which one of the
    k highest-scoring predicted boxes has IoU >= ``iou_thr`` with the expression's one
    ground-truth box (``P@1`` is the usual Acc@0.5). All predicted boxes of a sample count
    (a referring sample has one phrase).

    Returns ``P@k`` over all expressions, ``<dataset_name>_<split>_P@k`` per metainfo
    ``dataset_name`` / ``split`` of the samples, and ``held_out_P@k`` over the expressions
    flagged ``held_out`` (when there are any). Repeated ``expression_id`` s of a padded
    distributed sampler are counted once.
    """

    default_prefix = "refexp"

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            sample = self._sample(sample)
            gt, _, _ = _boxes(sample["gt_instances"])
            if len(gt) != 1:
                raise ValueError(
                    f"RefExpMetric: expression {sample.get('expression_id')} "
                    f"({sample.get('text')!r}) has {len(gt)} ground-truth boxes, expected one"
                )
            pred, _, scores = _boxes(sample["pred_instances"])
            group = "_".join(str(sample[k]) for k in ("dataset_name", "split") if sample.get(k))
            self.results.append(
                dict(
                    group=group or "refexp",
                    expression_id=sample.get("expression_id", sample.get("img_id")),
                    held_out=bool(sample.get("held_out", False)),
                    rank=first_hit(pred, scores, gt, self.iou_thr),
                )
            )

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        if not results:
            raise ValueError("RefExpMetric: no expression was evaluated")
        unique = {}
        for i, r in enumerate(results):
            key = i if r["expression_id"] is None else (r["group"], r["expression_id"])
            unique.setdefault(key, r)
        results = list(unique.values())
        metrics = self._at_k([r["rank"] for r in results], "P")
        groups = defaultdict(list)
        for r in results:
            groups[r["group"]].append(r["rank"])
            if r["held_out"]:
                groups["held_out"].append(r["rank"])
        for group, ranks in sorted(groups.items()):
            metrics.update(self._at_k(ranks, f"{group}_P"))
        return metrics


@METRICS.register_module()
class PhraseGroundingMetric(_TopKMetric):
    """Phrase grounding, any-box protocol (MDETR's Flickr30k evaluation): a phrase with
    ground-truth boxes is recalled at k when one of the k highest-scoring boxes predicted
    for it (``labels`` == its index) has IoU >= ``iou_thr`` with ANY of its boxes.

    Returns ``R@k``: the fraction of phrases recalled, over all phrases with a box.
    """

    default_prefix = "phrase_grounding"

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        for sample in data_samples:
            sample = self._sample(sample)
            gt, gt_labels, _ = _boxes(sample["gt_instances"])
            pred, pred_labels, scores = _boxes(sample["pred_instances"])
            for phrase in np.unique(gt_labels):
                mine = pred_labels == phrase
                rank = first_hit(pred[mine], scores[mine], gt[gt_labels == phrase], self.iou_thr)
                self.results.append(dict(rank=rank))

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        if not results:
            raise ValueError("PhraseGroundingMetric: no phrase with a ground-truth box was seen")
        return self._at_k([r["rank"] for r in results], "R")
