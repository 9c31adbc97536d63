"""Panoptic quality (Kirillov et al., "Panoptic Segmentation", CVPR 2019), computed by the
rules of the COCO ``panopticapi`` (``pq_compute``).

Per category, with TP the matched (prediction, ground truth) pairs::

    PQ = sum_TP IoU / (|TP| + |FP| / 2 + |FN| / 2) = SQ * RQ
    SQ = sum_TP IoU / |TP|            RQ = |TP| / (|TP| + |FP| / 2 + |FN| / 2)

averaged over the categories that occur (TP + FP + FN > 0): all, things, stuff. Rules:

- a prediction and a ground-truth segment of the same category match when their IoU > 0.5
  (then unique); the union leaves out the predicted pixels on void ground truth;
- crowd ground-truth segments are never matched and never missed;
- an unmatched prediction is not a false positive when more than half of its pixels lie
  on void or on a crowd region of its category.

Config::

    val_evaluator = dict(
        type='PanopticMetric',
        ann_file='data/coco/annotations/panoptic_val2017.json',  # None: GT from the samples
        seg_prefix='data/coco/annotations/panoptic_val2017/',    # default: <ann_file stem>/
        classwise=False)

Each data sample carries ``img_id`` and ``pred_panoptic_seg`` (H, W) long at the ORIGINAL
image size, encoded ``label * PANOPTIC_LABEL_DIVISOR + instance`` with -1 on void (see
``visionfm.data.data_sample``). Without ``ann_file`` the ground truth comes from the
sample: ``gt_instances`` (``masks`` (N, H, W) at the original size, ``labels``), crowd
regions from ``ignored_instances``, void where no mask is; thing / stuff classes then come
from ``dataset_meta`` (``thing_classes``; without it every class is a thing).

``process`` reduces each image to a (num_classes, 4) array of TP, FP, FN and summed IoU,
so gathering over processes moves almost nothing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR
from visionfm.data.datasets.coco_panoptic import panoptic_label_order
from visionfm.data.files import read_panoptic_png
from visionfm.registry import METRICS

from .coco_format import plain, to_numpy

__all__ = ["PanopticMetric", "panoptic_stats", "pq_summary", "split_panoptic"]

_TP, _FP, _FN, _IOU = range(4)


def split_panoptic(pan: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """(H, W) ``label * PANOPTIC_LABEL_DIVISOR + instance`` map (-1 void) -> segment ids
    (H, W) int64 (1..S, 0 = void) and ``{segment id: label}``."""
    values, inverse = np.unique(pan, return_inverse=True)
    inverse = inverse.reshape(pan.shape)
    if len(values) and values[0] < -1:
        raise ValueError(f"panoptic map values must be >= -1 (void), got {values[0]}")
    offset = int(values[0] < 0)  # -1 (void) sorts first and becomes id 0
    ids = inverse + 1 - offset
    labels = {i + 1 - offset: int(v) // PANOPTIC_LABEL_DIVISOR for i, v in enumerate(values)}
    labels.pop(0, None)
    return ids.astype(np.int64), labels


def panoptic_stats(
    gt_ids: np.ndarray,
    gt_segments: Mapping[int, tuple[int, bool]],
    pred_ids: np.ndarray,
    pred_labels: Mapping[int, int],
    num_classes: int,
) -> np.ndarray:
    """Per-category TP, FP, FN and summed TP IoU of one image.

    Args:
        gt_ids: (H, W) int ground-truth segment ids, 0 = void.
        gt_segments: ``{gt segment id: (label, iscrowd)}``; ids of ``gt_ids`` not in it are
            void.
        pred_ids: (H, W) int predicted segment ids, 0 = void (no prediction).
        pred_labels: ``{pred segment id: label}`` for every nonzero id of ``pred_ids``.

    Returns:
        (num_classes, 4) float64 columns TP, FP, FN, IoU sum.
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(f"ground truth {gt_ids.shape} and prediction {pred_ids.shape} differ")
    gt_ids = np.where(np.isin(gt_ids, list(gt_segments)), gt_ids, 0).astype(np.int64)
    stride = int(pred_ids.max()) + 1
    joint, inter = np.unique(gt_ids * stride + pred_ids.astype(np.int64), return_counts=True)
    gt_area = dict(zip(*np.unique(gt_ids, return_counts=True)))
    pred_area = dict(zip(*np.unique(pred_ids, return_counts=True)))
    pairs = [(int(j // stride), int(j % stride), int(n)) for j, n in zip(joint, inter)]
    on_void = {p: n for g, p, n in pairs if g == 0}  # predicted pixels on void ground truth
    stats = np.zeros((num_classes, 4))
    matched_gt, matched_pred = set(), set()
    for g, p, n in pairs:
        if g == 0 or p == 0:
            continue
        label, crowd = gt_segments[g]
        if crowd or pred_labels[p] != label:
            continue
        union = pred_area[p] + gt_area[g] - n - on_void.get(p, 0)
        iou = n / union
        if iou > 0.5:
            stats[label, _TP] += 1
            stats[label, _IOU] += iou
            matched_gt.add(g)
            matched_pred.add(p)
    for g, (label, crowd) in gt_segments.items():
        if g in gt_area and not crowd and g not in matched_gt:
            stats[label, _FN] += 1
    on_crowd: dict[int, int] = {}  # predicted pixels on crowd regions of their own category
    for g, p, n in pairs:
        if g and p and gt_segments[g][1] and gt_segments[g][0] == pred_labels[p]:
            on_crowd[p] = on_crowd.get(p, 0) + n
    for p, label in pred_labels.items():
        if p in matched_pred or p not in pred_area:
            continue
        if (on_void.get(p, 0) + on_crowd.get(p, 0)) / pred_area[p] > 0.5:
            continue
        stats[label, _FP] += 1
    return stats


def pq_summary(stats: np.ndarray, isthing: Sequence[bool]) -> dict[str, dict]:
    """(num_classes, 4) summed stats -> ``{"all" | "things" | "stuff": {pq, sq, rq, n}}``
    and ``"per_class"``: (num_classes, 3) PQ, SQ, RQ (NaN where the class never occurs).

    A group without any occurring class gets -1 for PQ / SQ / RQ (no data, as COCO's -1)."""
    tp, fp, fn, iou = stats.T
    denom = tp + 0.5 * fp + 0.5 * fn
    occurs = denom > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        pq = np.where(occurs, iou / denom, np.nan)
        sq = np.where(occurs, np.where(tp > 0, iou / np.maximum(tp, 1), 0.0), np.nan)
        rq = np.where(occurs, tp / denom, np.nan)
    isthing = np.asarray(isthing, bool)
    out: dict[str, Any] = {"per_class": np.stack((pq, sq, rq), 1)}
    for name, keep in (("all", np.ones_like(isthing)), ("things", isthing), ("stuff", ~isthing)):
        sel = keep & occurs
        n = int(sel.sum())
        out[name] = dict(
            pq=float(pq[sel].mean()) if n else -1.0,
            sq=float(sq[sel].mean()) if n else -1.0,
            rq=float(rq[sel].mean()) if n else -1.0,
            n=n,
        )
    return out


@METRICS.register_module()
class PanopticMetric(BaseMetric):
    """PQ / SQ / RQ over all, thing and stuff classes (see the module doc).

    Args:
        ann_file: COCO panoptic json of the evaluated split; None: ground truth from the
            samples.
        seg_prefix: folder of its PNGs; default: the json's path without ``.json``
            (COCO's layout).
        classwise: also log a per-class table and return ``PQ_<class>`` entries.
        collect_device / prefix / collect_dir: as mmengine's ``BaseMetric``.

    ``compute_metrics`` returns ``PQ``, ``SQ``, ``RQ``, ``PQ_th``, ``SQ_th``, ``RQ_th``,
    ``PQ_st``, ``SQ_st``, ``RQ_st`` in [0, 1] rounded to 4 decimals (-1 for a group without
    any occurring class). Ground-truth segments of categories that are not among the
    evaluated classes count as void.
    """

    default_prefix = "coco_panoptic"

    def __init__(
        self,
        ann_file: str | None = None,
        seg_prefix: str | None = None,
        classwise: bool = False,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.ann_file, self.classwise = ann_file, classwise
        self._gt: dict[int, dict] = {}
        self._categories: list[dict] = []
        if ann_file is not None:
            self.seg_prefix = seg_prefix or os.path.splitext(ann_file)[0]
            self._load(ann_file)

    def _load(self, path: str) -> None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"PanopticMetric: annotation file not found: {path}")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        missing = [k for k in ("annotations", "categories") if k not in data]
        if missing:
            raise ValueError(f"PanopticMetric: {path} is not a COCO panoptic json: no {missing}")
        self._categories = panoptic_label_order(data["categories"], path)
        self._gt = {ann["image_id"]: ann for ann in data["annotations"]}

    # ---- classes ------------------------------------------------------------------------
    def _class_names(self) -> tuple[str, ...]:
        meta = self.dataset_meta or {}
        if meta.get("classes"):
            return tuple(meta["classes"])
        if self._categories:
            return tuple(c["name"] for c in self._categories)
        raise ValueError("PanopticMetric without ann_file needs dataset_meta['classes']")

    def _isthing(self) -> list[bool]:
        names = self._class_names()
        if self._categories:
            by_name = {c["name"]: bool(c["isthing"]) for c in self._categories}
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise ValueError(
                    f"PanopticMetric: classes {unknown} are not categories of {self.ann_file}"
                )
            return [by_name[n] for n in names]
        things = (self.dataset_meta or {}).get("thing_classes")
        return [True] * len(names) if things is None else [n in set(things) for n in names]

    # ---- per batch ----------------------------------------------------------------------
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Reduce every sample to ``dict(img_id, stats (num_classes, 4))``."""
        num_classes = len(self._class_names())
        for sample in data_samples:
            sample = plain(sample)
            if "pred_panoptic_seg" not in sample or "img_id" not in sample:
                raise KeyError(
                    "PanopticMetric: a data sample needs 'img_id' and 'pred_panoptic_seg', got "
                    f"keys {sorted(sample)}"
                )
            img_id = int(sample["img_id"])
            pred_ids, pred_labels = split_panoptic(to_numpy(sample["pred_panoptic_seg"], np.int64))
            bad = sorted({v for v in pred_labels.values() if not 0 <= v < num_classes})
            if bad:
                raise ValueError(
                    f"PanopticMetric: image {img_id} has predicted labels {bad} outside "
                    f"0..{num_classes - 1}"
                )
            if self.ann_file is not None:
                gt_ids, gt_segments = self._gt_from_file(img_id)
            else:
                gt_ids, gt_segments = self._gt_from_sample(sample, img_id)
            if gt_ids.shape != pred_ids.shape:
                raise ValueError(
                    f"PanopticMetric: the prediction of image {img_id} is {pred_ids.shape} but "
                    f"its ground truth is {gt_ids.shape}: predictions must be at the original "
                    "image size"
                )
            stats = panoptic_stats(gt_ids, gt_segments, pred_ids, pred_labels, num_classes)
            self.results.append(dict(img_id=img_id, stats=stats))

    def _gt_from_file(self, img_id: int) -> tuple[np.ndarray, dict]:
        ann = self._gt.get(img_id)
        if ann is None:
            raise KeyError(
                f"PanopticMetric: image id {img_id} has no annotation in {self.ann_file}"
            )
        path = os.path.join(self.seg_prefix, ann["file_name"])
        ids = read_panoptic_png(path)
        label_of = {name: i for i, name in enumerate(self._class_names())}
        name_of = {c["id"]: c["name"] for c in self._categories}
        segments = {}
        for seg in ann["segments_info"]:
            if seg["category_id"] not in name_of:
                raise ValueError(
                    f"PanopticMetric: segment {seg['id']} of {path} has unknown category_id "
                    f"{seg['category_id']}"
                )
            label = label_of.get(name_of[seg["category_id"]])
            if label is not None:
                segments[int(seg["id"])] = (label, bool(seg.get("iscrowd", 0)))
        stray = set(np.unique(ids).tolist()) - {int(s["id"]) for s in ann["segments_info"]}
        if stray - {0}:
            raise ValueError(
                f"PanopticMetric: {path} has segment ids {sorted(stray - {0})[:5]} that are "
                "not in its segments_info"
            )
        return ids, segments

    @staticmethod
    def _gt_from_sample(sample: dict, img_id: int) -> tuple[np.ndarray, dict]:
        if "gt_instances" not in sample or "ori_shape" not in sample:
            raise KeyError(
                "PanopticMetric without ann_file needs 'gt_instances' (masks, labels) and "
                f"'ori_shape' in the samples; got keys {sorted(sample)}"
            )
        shape = tuple(int(v) for v in sample["ori_shape"][:2])
        ids = np.zeros(shape, np.int64)
        segments = {}
        for key, crowd in (("gt_instances", False), ("ignored_instances", True)):
            inst = plain(sample.get(key)) or {}
            if "labels" in inst and len(inst["labels"]) and "masks" not in inst:
                raise KeyError(f"PanopticMetric: {key} of image {img_id} have no masks")
            masks = to_numpy(inst.get("masks", np.zeros((0, *shape))), bool)
            if masks.shape[1:] != shape:
                raise ValueError(
                    f"PanopticMetric: {key} masks of image {img_id} are {masks.shape[1:]} but "
                    f"ori_shape is {shape}: without ann_file the ground truth must be at the "
                    "original size"
                )
            for mask, label in zip(masks, to_numpy(inst.get("labels", []), np.int64).tolist()):
                seg_id = len(segments) + 1
                ids[mask] = seg_id
                segments[seg_id] = (label, crowd)
        return ids, segments

    # ---- whole dataset ------------------------------------------------------------------
    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        by_image = {r["img_id"]: r["stats"] for r in results}  # padded samplers repeat images
        names = self._class_names()
        total = sum(by_image.values(), np.zeros((len(names), 4)))
        summary = pq_summary(total, self._isthing())
        metrics = {}
        for group, suffix in (("all", ""), ("things", "_th"), ("stuff", "_st")):
            for key in ("pq", "sq", "rq"):
                metrics[f"{key.upper()}{suffix}"] = round(summary[group][key], 4)
        lines = [f"PanopticMetric ({len(by_image)} images)", f"{'':8}  PQ     SQ     RQ     n"]
        for group in ("all", "things", "stuff"):
            s = summary[group]
            lines.append(f"{group:8}  {s['pq']:.3f}  {s['sq']:.3f}  {s['rq']:.3f}  {s['n']}")
        if self.classwise:
            width = max(len(n) for n in names)
            lines.append(f"{'category':<{width}}  PQ     SQ     RQ")
            for name, (pq, sq, rq) in zip(names, summary["per_class"]):
                lines.append(f"{name:<{width}}  {pq:.3f}  {sq:.3f}  {rq:.3f}")
                if not np.isnan(pq):
                    metrics[f"PQ_{name.replace(' ', '_')}"] = round(float(pq), 4)
        print_log("\n".join(lines), logger="current", level=logging.INFO)
        return metrics
