"""COCO keypoint metric: object keypoint similarity (OKS) AP / AR by pycocotools' COCOeval
(``iouType='keypoints'``), after per-image rescoring and OKS non-maximum suppression as in
top-down pose estimation (SimpleBaseline, ViTPose).

Config::

    val_evaluator = dict(
        type='CocoKeypointMetric',
        ann_file='data/coco/annotations/person_keypoints_val2017.json',
        score_mode='bbox_keypoint', keypoint_score_thr=0.2, nms_thr=0.9)

Each data sample handed to ``process`` carries ``img_id`` and ``pred_instances`` with
``keypoints`` (N, K, 3) ``[x, y, confidence]`` in ORIGINAL image pixels, ``scores`` (N,)
(box scores), ``bboxes`` (N, 4) xyxy and optionally ``labels`` (N,). One sample may be one
person crop (top-down, N = 1, several samples per image) or a whole image (a multi-head
model, all instances; only those labelled as the keypoint category are kept, by
``dataset_meta['classes']``).

Per image: every instance's score becomes ``box score x mean of its keypoint confidences
above keypoint_score_thr`` (``score_mode='bbox_keypoint'``; ``'bbox'`` keeps the box score,
``'keypoint'`` uses the mean alone); then greedy OKS-NMS drops instances whose OKS with a
higher-scored one exceeds ``nms_thr`` (reference area: the mean of the two box areas).
OKS sigmas: ``sigmas``, else ``dataset_meta['sigmas']``, else COCO's for 17 keypoints.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from pycocotools.cocoeval import COCOeval

from visionfm.data.datasets.coco_keypoints import COCO_SIGMAS
from visionfm.registry import METRICS

from .coco_format import coco_from_dict, load_ann_file, plain, quiet, to_numpy

__all__ = ["CocoKeypointMetric", "oks", "oks_nms"]

# COCOeval.stats for iouType='keypoints' -> metric names
_NAMES = ("AP", "AP_50", "AP_75", "AP_m", "AP_l", "AR", "AR_50", "AR_75", "AR_m", "AR_l")


def oks(
    ref: np.ndarray, others: np.ndarray, ref_area: float, areas: np.ndarray, sigmas
) -> np.ndarray:
    """OKS of keypoints ``ref`` (K, 2+) against ``others`` (M, K, 2+) -> (M,), over all K
    keypoints, with scale^2 = the mean of ``ref_area`` and each of ``areas`` (M,)."""
    var = (2 * np.asarray(sigmas, np.float64)) ** 2  # (K,)
    d2 = ((others[..., :2] - ref[None, :, :2]) ** 2).sum(-1)  # (M, K)
    scale = (ref_area + areas)[:, None] / 2 + np.spacing(1)
    return np.exp(-d2 / var / scale / 2).mean(-1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, thr: float, sigmas):
    """Greedy NMS: indices of the kept instances, best first.

    keypoints (N, K, 2+), scores (N,), areas (N,): drop an instance whose OKS with a kept,
    higher-scored one is above ``thr``.
    """
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        if not rest.size:
            break
        sim = oks(keypoints[i], keypoints[rest], areas[i], areas[rest], sigmas)
        order = rest[sim <= thr]
    return keep


@METRICS.register_module()
class CocoKeypointMetric(BaseMetric):
    """COCO keypoint AP / AR (see the module doc for inputs and rescoring).

    Args:
        ann_file: COCO json with the keypoint ground truth (``num_keypoints`` per annotation
            is counted from the keypoints when missing).
        sigmas: per-keypoint OKS sigmas (K,); None: the dataset's, else COCO's.
        score_mode: ``'bbox_keypoint'``, ``'bbox'`` or ``'keypoint'``.
        keypoint_score_thr: confidences above it count in the keypoint mean.
        nms_thr: OKS-NMS threshold; None: no NMS.
        img_ids: ``'all'`` evaluates every image of ``ann_file`` (images never processed
            count their persons as misses: the standard protocol); ``'processed'`` only
            the images that had samples (for subsets).
        outfile_prefix: also write the results as ``<prefix>.keypoints.json``.
        collect_device / prefix / collect_dir: as mmengine's ``BaseMetric``.

    ``compute_metrics`` returns ``kpt_AP``, ``kpt_AP_50``, ``kpt_AP_75``, ``kpt_AP_m``,
    ``kpt_AP_l``, ``kpt_AR``, ``kpt_AR_50``, ``kpt_AR_75``, ``kpt_AR_m``, ``kpt_AR_l``.
    """

    default_prefix = "coco"

    def __init__(
        self,
        ann_file: str,
        sigmas: Sequence[float] | None = None,
        score_mode: str = "bbox_keypoint",
        keypoint_score_thr: float = 0.2,
        nms_thr: float | None = 0.9,
        img_ids: str = "all",
        outfile_prefix: str | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if score_mode not in ("bbox_keypoint", "bbox", "keypoint"):
            raise ValueError(
                f"score_mode must be 'bbox_keypoint', 'bbox' or 'keypoint', got {score_mode!r}"
            )
        if img_ids not in ("all", "processed"):
            raise ValueError(f"img_ids must be 'all' or 'processed', got {img_ids!r}")
        self.ann_file = ann_file
        self.sigmas = None if sigmas is None else tuple(float(s) for s in sigmas)
        self.score_mode = score_mode
        self.keypoint_score_thr = keypoint_score_thr
        self.nms_thr = nms_thr
        self.img_ids = img_ids
        self.outfile_prefix = outfile_prefix
        self._coco_gt = load_ann_file(ann_file)
        cats = [c for c in self._coco_gt.dataset["categories"] if c.get("keypoints")]
        if not cats:
            raise ValueError(f"CocoKeypointMetric: {ann_file} has no category with keypoints")
        self._category = cats[0]
        for ann in self._coco_gt.dataset["annotations"]:
            if "num_keypoints" not in ann:
                kps = np.asarray(ann.get("keypoints") or [], np.float64).reshape(-1, 3)
                ann["num_keypoints"] = int((kps[:, 2] > 0).sum())

    # ---- per batch ----------------------------------------------------------------------
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store per sample ``img_id``, its id, and the predictions as numpy arrays."""
        for sample in data_samples:
            sample = plain(sample)
            pred = plain(sample.get("pred_instances")) or {}
            if "img_id" not in sample or "keypoints" not in pred:
                raise KeyError(
                    "CocoKeypointMetric: a data sample needs 'img_id' and pred_instances with "
                    f"'keypoints' (N, K, 3); got sample keys {sorted(sample)}, prediction keys "
                    f"{sorted(pred)}"
                )
            kps = to_numpy(pred["keypoints"], np.float64)
            n = len(kps)
            boxes = to_numpy(pred.get("bboxes", np.zeros((n, 4))), np.float64).reshape(-1, 4)
            self.results.append(
                dict(
                    img_id=int(sample["img_id"]),
                    key=(int(sample["img_id"]), sample.get("id")),
                    keypoints=kps.reshape(n, -1, 3),
                    scores=to_numpy(pred.get("scores", np.ones(n)), np.float64).reshape(-1),
                    areas=(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
                    labels=to_numpy(pred["labels"], np.int64).reshape(-1)
                    if "labels" in pred
                    else None,
                )
            )

    # ---- whole dataset ------------------------------------------------------------------
    def _sigmas(self, num_keypoints: int) -> np.ndarray:
        sigmas = self.sigmas or (self.dataset_meta or {}).get("sigmas")
        if sigmas is None and num_keypoints == len(COCO_SIGMAS):
            sigmas = COCO_SIGMAS
        if sigmas is None or len(sigmas) != num_keypoints:
            raise ValueError(
                f"CocoKeypointMetric: need {num_keypoints} OKS sigmas, got "
                f"{None if sigmas is None else len(sigmas)}: pass sigmas=[...] or set "
                "metainfo=dict(sigmas=[...]) on the dataset"
            )
        return np.asarray(sigmas, np.float64)

    def _label(self) -> int | None:
        """The prediction label of the keypoint category (None: keep every label)."""
        classes = (self.dataset_meta or {}).get("classes")
        if not classes or self._category["name"] not in classes:
            return None
        return list(classes).index(self._category["name"])

    def _rescore(self, kps: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if self.score_mode == "bbox":
            return scores
        conf = kps[..., 2]
        above = conf > self.keypoint_score_thr
        mean = np.where(above.any(-1), (conf * above).sum(-1) / np.maximum(above.sum(-1), 1), 0.0)
        return mean if self.score_mode == "keypoint" else scores * mean

    def entries(self, results: list[dict]) -> list[dict]:
        """Per-image rescoring + OKS-NMS -> COCO keypoint results entries."""
        seen: dict = {}
        for res in results:  # padded distributed samplers repeat samples
            seen.setdefault(res["key"], res)
        label = self._label()
        by_image: dict[int, list] = defaultdict(list)
        for res in seen.values():
            keep = np.ones(len(res["keypoints"]), bool)
            if label is not None and res["labels"] is not None:
                keep = res["labels"] == label
            by_image[res["img_id"]].append(
                (res["keypoints"][keep], res["scores"][keep], res["areas"][keep])
            )
        entries = []
        cat_id = self._category["id"]
        for img_id, parts in by_image.items():
            kps = np.concatenate([p[0] for p in parts])
            if not len(kps):
                continue
            scores = self._rescore(kps, np.concatenate([p[1] for p in parts]))
            areas = np.concatenate([p[2] for p in parts])
            keep = range(len(kps))
            if self.nms_thr is not None:
                keep = oks_nms(kps, scores, areas, self.nms_thr, self._sigmas(kps.shape[1]))
            for i in keep:
                entries.append(
                    dict(
                        image_id=img_id,
                        category_id=cat_id,
                        keypoints=kps[i].reshape(-1).tolist(),
                        score=float(scores[i]),
                    )
                )
        return entries

    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        """Evaluate the gathered results (see the class doc for the keys)."""
        coco_gt = self._coco_gt
        unknown = sorted({r["img_id"] for r in results} - set(coco_gt.getImgIds()))
        if unknown:
            raise ValueError(
                f"CocoKeypointMetric: image ids {unknown[:10]} are not in {self.ann_file}"
            )
        entries = self.entries(results)
        num_k = len(self._category["keypoints"])
        sigmas = self._sigmas(num_k)
        if self.outfile_prefix is not None:
            path = f"{self.outfile_prefix}.keypoints.json"
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(entries, f)
        if entries:
            coco_dt, _ = quiet(coco_gt.loadRes, [dict(e) for e in entries])
        else:
            print_log("CocoKeypointMetric: no predictions", logger="current", level=logging.WARNING)
            data = coco_gt.dataset
            coco_dt = coco_from_dict(
                dict(
                    images=list(data["images"]), categories=list(data["categories"]), annotations=[]
                )
            )
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        coco_eval.params.kpt_oks_sigmas = sigmas
        coco_eval.params.catIds = [self._category["id"]]
        if self.img_ids == "processed":
            coco_eval.params.imgIds = sorted({r["img_id"] for r in results})
        _, log = quiet(
            lambda: (coco_eval.evaluate(), coco_eval.accumulate(), coco_eval.summarize())
        )
        print_log(
            f"CocoKeypointMetric ({len(coco_eval.params.imgIds)} images):\n{log}", logger="current"
        )
        return {f"kpt_{n}": round(float(v), 4) for n, v in zip(_NAMES, coco_eval.stats)}
