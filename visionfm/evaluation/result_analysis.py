"""Where a detector goes wrong, from its COCO results json and the ground truth (the numbers
behind ``tools/analyze_results.py``; pycocotools does the COCO parts).

- ``read_results``: a COCO results json (``bbox`` or ``segmentation`` entries, as
  ``tools/test.py --out`` writes), checked entry by entry against the ground truth;
- ``evaluate``: pycocotools' ``COCOeval`` on it, accumulated (per-class AP:
  ``visionfm.evaluation.coco_format.per_class_ap``; precision-recall curves: its
  ``eval['precision']``);
- ``match_detections``: the confusion matrix and each image's true / false positives and
  misses, from a one-to-one matching at one IoU and one score threshold;
- ``worst_images``: the images with the most errors.

Matching, per image: detections scoring at least ``score_thr``, highest score first, each
take the unmatched ground truth of their class with the highest IoU >= ``iou_thr`` (true
positives: the diagonal), as COCOeval matches; the detections left then take, the same way,
an unmatched ground truth of another class (a confusion: a false positive of the predicted
class and a miss of the true one); detections still left are false positives on the
background (the last row) unless they lie on a crowd region (IoU >= ``iou_thr`` as COCO
computes it for crowds: the part of the detection inside the region), which ignores them;
ground truth left unmatched is missed (the last column). Unlike mmdetection's
confusion_matrix tool, which counts a detection once for every ground truth it overlaps,
each detection and each ground-truth object counts once: row k sums to the number of
(non-crowd) ground-truth objects of class k, column k to the detections of class k (those
on crowd regions left out).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .coco_format import quiet

__all__ = ["evaluate", "match_detections", "read_results", "worst_images"]


def read_results(
    path: str, coco_gt: COCO, img_ids: Sequence[int], ann_file: str = "the ground truth"
) -> tuple[list[dict], str]:
    """The entries of the COCO results json ``path`` and their iou type ('bbox' or 'segm').

    Each entry needs ``image_id`` (one of ``img_ids``, the evaluated images, all of
    ``coco_gt``), ``category_id`` (a category of ``coco_gt``), ``score`` and its geometry:
    ``bbox`` [x, y, w, h] (box results) or ``segmentation`` (an RLE at its image's size or
    polygons: mask results), the same for every entry. Raises ValueError naming ``path`` and the entry (its index
    in the list) at fault; ``ann_file`` names the ground truth in the messages.
    """
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"results file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(entries, list):
        raise ValueError(
            f"{path}: expected a list of COCO results entries (as tools/test.py --out writes), "
            f"got a {type(entries).__name__}"
        )
    if not entries:
        raise ValueError(f"{path} holds no detections: nothing to analyse")
    first = entries[0] if isinstance(entries[0], dict) else {}
    if "keypoints" in first and "bbox" not in first and "segmentation" not in first:
        raise ValueError(f"{path} holds keypoint results: this analysis takes boxes or masks")
    iou_type, geometry = ("segm", "segmentation") if "segmentation" in first else ("bbox", "bbox")
    known_images = set(int(i) for i in img_ids)
    cat_ids = sorted(coco_gt.getCatIds())
    for i, e in enumerate(entries):
        where = f"{path}: entry {i}"
        if not isinstance(e, dict):
            raise ValueError(f"{where} is a {type(e).__name__}, not a results entry (a dict)")
        missing = [k for k in ("image_id", "category_id", "score", geometry) if k not in e]
        if missing:
            raise ValueError(f"{where} ({_short(e)}) has no {missing} (a {iou_type} result)")
        if e["image_id"] not in known_images:
            raise ValueError(
                f"{where} names image_id {e['image_id']!r}, which is not an image of {ann_file} "
                "in the config's test split"
            )
        if e["category_id"] not in cat_ids:
            raise ValueError(
                f"{where} names category_id {e['category_id']!r}, not a category of {ann_file} "
                f"(its ids: {cat_ids[:20]})"
            )
        if not isinstance(e["score"], (int, float)):
            raise ValueError(f"{where}: score {e['score']!r} is not a number")
        if geometry == "segmentation":
            _check_segmentation(where, e["segmentation"], coco_gt.imgs[e["image_id"]])
        elif not (
            isinstance(e["bbox"], list)
            and len(e["bbox"]) == 4
            and all(isinstance(v, (int, float)) for v in e["bbox"])
            and min(e["bbox"][2:]) >= 0
        ):
            raise ValueError(f"{where}: bbox {e['bbox']!r} is not [x, y, w, h] with w, h >= 0")
    return entries, iou_type


def _check_segmentation(where: str, seg, image: dict) -> None:
    """Raise ValueError (``where`` names the entry) unless ``seg`` is an RLE (``size`` [H, W]
    of ``image``, the ground truth's image entry, and ``counts``) or polygons (lists of
    x, y, ... with at least 3 points each)."""
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise ValueError(f"{where}: an RLE segmentation needs 'size' and 'counts'")
        expected = [image["height"], image["width"]]
        if list(seg["size"]) != expected:
            raise ValueError(
                f"{where}: RLE size {list(seg['size'])} is not its image's [height, width] "
                f"{expected} (masks go in the original image's coordinates)"
            )
    elif not (
        isinstance(seg, list)
        and seg
        and all(
            isinstance(poly, list)
            and len(poly) >= 6
            and len(poly) % 2 == 0
            and all(isinstance(v, (int, float)) for v in poly)
            for poly in seg
        )
    ):
        raise ValueError(
            f"{where}: segmentation is neither an RLE {{'size', 'counts'}} nor polygons "
            "[[x0, y0, x1, y1, x2, y2, ...], ...]"
        )


def _short(entry: dict) -> str:
    """An entry without its (long) segmentation, for messages."""
    return json.dumps({k: v for k, v in entry.items() if k != "segmentation"})[:120]


def evaluate(coco_gt: COCO, entries: list[dict], iou_type: str, img_ids: Sequence[int]) -> COCOeval:
    """pycocotools' COCOeval of ``entries`` on ``img_ids`` and every category of
    ``coco_gt``, evaluated and accumulated (``eval['precision']``: (T iou thrs, R recall
    thrs, K categories, areas, maxDets)); its summary in ``.stats``."""
    coco_dt, _ = quiet(coco_gt.loadRes, [dict(e) for e in entries])  # loadRes edits entries
    coco_eval = COCOeval(coco_gt, coco_dt, iouType=iou_type)
    coco_eval.params.imgIds = sorted(int(i) for i in img_ids)
    quiet(lambda: (coco_eval.evaluate(), coco_eval.accumulate(), coco_eval.summarize()))
    return coco_eval


def _geometry(coco_gt: COCO, item: dict, iou_type: str):
    """What ``mask_util.iou`` compares for a ground-truth annotation or a results entry:
    [x, y, w, h] for boxes, an RLE for masks (polygons and RLEs alike, at the image's size)."""
    return list(map(float, item["bbox"])) if iou_type == "bbox" else coco_gt.annToRLE(item)


def _ious(dts: list, gts: list, crowd: bool) -> np.ndarray:
    """(D, G) IoU of detections and ground truths (crowd: the part of each detection inside)."""
    if not dts or not gts:
        return np.zeros((len(dts), len(gts)))
    return np.asarray(mask_util.iou(dts, gts, [int(crowd)] * len(gts))).reshape(len(dts), len(gts))


def match_detections(
    coco_gt: COCO,
    entries: list[dict],
    iou_type: str,
    img_ids: Sequence[int],
    score_thr: float = 0.3,
    iou_thr: float = 0.5,
) -> tuple[np.ndarray, dict[int, dict[str, int]]]:
    """The confusion matrix and per-image counts of the one-to-one matching (module doc).

    Returns ``(matrix, counts)``: matrix (K + 1, K + 1) int64, rows = ground-truth class, the
    last row background (false positives), columns = detected class, the last column
    background (misses); classes in the order of ``coco_gt``'s sorted category ids. counts:
    image id -> ``{'tp', 'fp', 'fn'}`` (a confusion is one false positive and one miss).
    """
    cat_ids = sorted(coco_gt.getCatIds())
    label_of = {c: k for k, c in enumerate(cat_ids)}
    num = len(cat_ids)
    matrix = np.zeros((num + 1, num + 1), np.int64)
    by_image: dict[int, list[dict]] = {}
    for e in entries:
        if e["score"] >= score_thr:
            by_image.setdefault(e["image_id"], []).append(e)
    counts = {}
    for img_id in sorted(int(i) for i in img_ids):
        anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[img_id]))
        gts = [a for a in anns if not a.get("iscrowd", 0)]
        crowds = [a for a in anns if a.get("iscrowd", 0)]
        dets = sorted(by_image.get(img_id, []), key=lambda e: -e["score"])
        dt_geo = [_geometry(coco_gt, d, iou_type) for d in dets]
        ious = _ious(dt_geo, [_geometry(coco_gt, a, iou_type) for a in gts], False)
        crowd_ious = _ious(dt_geo, [_geometry(coco_gt, a, iou_type) for a in crowds], True)
        gt_labels = np.array([label_of[a["category_id"]] for a in gts], np.int64)
        dt_labels = np.array([label_of[d["category_id"]] for d in dets], np.int64)
        gt_free = np.ones(len(gts), bool)
        dt_free = np.ones(len(dets), bool)
        tp = confused = 0
        for same_class in (True, False):
            for d in np.nonzero(dt_free)[0]:
                ok = gt_free & (ious[d] >= iou_thr)
                if same_class:
                    ok &= gt_labels == dt_labels[d]
                if not ok.any():
                    continue
                g = int(np.argmax(np.where(ok, ious[d], -1.0)))
                gt_free[g], dt_free[d] = False, False
                matrix[gt_labels[g], dt_labels[d]] += 1
                if same_class:
                    tp += 1
                else:
                    confused += 1
        on_crowd = (crowd_ious >= iou_thr).any(1) if crowds else np.zeros(len(dets), bool)
        background = dt_free & ~on_crowd
        np.add.at(matrix, (num, dt_labels[background]), 1)
        np.add.at(matrix, (gt_labels[gt_free], num), 1)
        counts[img_id] = dict(
            tp=tp, fp=confused + int(background.sum()), fn=confused + int(gt_free.sum())
        )
    return matrix, counts


def worst_images(counts: dict[int, dict[str, int]], num: int) -> list[int]:
    """The ``num`` image ids with the most errors (false positives + misses), most first,
    ties by image id; images without errors are left out."""
    ranked = sorted((-(c["fp"] + c["fn"]), img_id) for img_id, c in counts.items())
    return [img_id for errors, img_id in ranked if errors < 0][:num]
