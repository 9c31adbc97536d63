"""Conversions between visionfm's per-image results and the COCO json / results formats,
for ``CocoMetric`` (pycocotools does the evaluation).

- ``encode_masks``: (N, H, W) bool masks -> COCO compressed RLEs (json-ready ``counts``);
  a few hundred bytes per mask, so per-image results stay small for multi-process gathering.
- ``bbox_results`` / ``segm_results``: per-image results -> COCO results entries.
- ``load_ann_file`` / ``coco_from_dict``: the pycocotools ``COCO`` api, quietly.
- ``per_class_ap``: AP, AP50, AP75 of each category from an accumulated ``COCOeval``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from mmengine.structures import BaseDataElement
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = [
    "bbox_results",
    "coco_from_dict",
    "encode_masks",
    "load_ann_file",
    "per_class_ap",
    "plain",
    "quiet",
    "segm_results",
    "to_numpy",
    "xyxy_to_xywh",
]


def plain(x: Any) -> Any:
    """``BaseDataElement`` (e.g. ``InstanceData``) -> dict; anything else unchanged."""
    return x.to_dict() if isinstance(x, BaseDataElement) else x


def to_numpy(x: Any, dtype: Any) -> np.ndarray:
    """Tensor / array / list -> numpy array of ``dtype`` on the CPU."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy -> (N, 4) COCO xywh."""
    out = boxes.copy()
    out[:, 2:] -= out[:, :2]
    return out


def encode_masks(masks: Any) -> list[dict]:
    """(N, H, W) bool masks (tensor or array) -> N COCO RLEs ``{size: [H, W], counts: str}``."""
    masks = to_numpy(masks, np.uint8)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if not len(masks):
        return []
    rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))
    return [
        dict(size=[int(s) for s in r["size"]], counts=r["counts"].decode("ascii")) for r in rles
    ]


def quiet(fn: Any, *args: Any) -> tuple[Any, str]:
    """Call ``fn`` (pycocotools prints to stdout) and return (result, what it printed)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = fn(*args)
    return out, buf.getvalue()


def coco_from_dict(data: dict) -> COCO:
    coco = COCO()
    coco.dataset = data
    quiet(coco.createIndex)
    return coco


def load_ann_file(path: str) -> COCO:
    """COCO api on ``path``; errors name the file. Missing ``area`` / ``iscrowd`` of
    annotations default to the box area / 0 (COCOeval needs both)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CocoMetric: annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"CocoMetric: {path} is not valid JSON: {e}") from e
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise ValueError(f"CocoMetric: {path} is not a COCO annotation file: no {missing}")
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    return coco_from_dict(data)


def _check_labels(res: dict, cat_ids: list[int]) -> None:
    labels = res["labels"]
    if len(labels) and (labels.min() < 0 or labels.max() >= len(cat_ids)):
        raise ValueError(
            f"CocoMetric: image {res['img_id']} has predicted labels "
            f"{sorted(set(labels.tolist()))} outside 0..{len(cat_ids) - 1}"
        )


def bbox_results(results: list[dict], cat_ids: list[int]) -> list[dict]:
    """Per-image results (``img_id``, ``bboxes`` (N, 4) xyxy, ``scores``, ``labels``) -> COCO
    results entries ``{image_id, category_id, bbox xywh, score}``."""
    entries = []
    for res in results:
        _check_labels(res, cat_ids)
        boxes = xyxy_to_xywh(res["bboxes"]).tolist()
        for box, score, label in zip(boxes, res["scores"].tolist(), res["labels"].tolist()):
            entries.append(
                dict(image_id=res["img_id"], category_id=cat_ids[label], bbox=box, score=score)
            )
    return entries


def segm_results(results: list[dict], cat_ids: list[int]) -> list[dict]:
    """Per-image results (``img_id``, ``masks`` list of RLEs, ``scores``, ``labels``) -> COCO
    results entries ``{image_id, category_id, segmentation RLE, score}``."""
    entries = []
    for res in results:
        _check_labels(res, cat_ids)
        for rle, score, label in zip(res["masks"], res["scores"].tolist(), res["labels"].tolist()):
            entries.append(
                dict(
                    image_id=res["img_id"],
                    category_id=cat_ids[label],
                    segmentation=dict(rle),
                    score=score,
                )
            )
    return entries


def per_class_ap(coco_eval: COCOeval) -> np.ndarray:
    """(K, 3) AP (IoU 0.50:0.95), AP50 and AP75 of each category of an accumulated
    ``coco_eval``, in the order of ``coco_eval.params.catIds`` (COCOeval sorts them); area
    'all', the last ``maxDets``; nan for a category without ground truth. The same means of
    the ``precision`` array that ``COCOeval.summarize`` takes over all categories."""
    precision = coco_eval.eval["precision"]  # (iou thrs, recall thrs, K, areas, maxDets)
    iou_thrs = list(np.round(coco_eval.params.iouThrs, 2))
    out = np.full((precision.shape[2], 3), np.nan)
    for k in range(precision.shape[2]):
        for j, t in enumerate((slice(None), iou_thrs.index(0.5), iou_thrs.index(0.75))):
            p = precision[t, :, k, 0, -1]
            p = p[p > -1]
            if p.size:
                out[k, j] = p.mean()
    return out
