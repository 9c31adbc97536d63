"""``PredictionWriter``: dense and point-cloud predictions written in their standard file
formats while a model is tested (``tools/test.py --out DIR`` adds it to the evaluators).

Into ``out_dir``, per sample (named by its image / cloud file's stem, else its ``img_id``):

- ``sem_seg/<name>.png``: ``pred_sem_seg`` (H, W) class indices as a single-channel PNG
  (uint8; uint16 with more than 256 classes), the mmsegmentation / ADE20K result layout;
- ``panoptic/<name>.png`` + ``panoptic.json``: ``pred_panoptic_seg`` in the COCO panoptic
  format (segment id ``R + 256 G + 256^2 B`` in the PNG, ``segments_info`` with
  ``category_id``, ``area``, ``bbox`` and ``iscrowd`` in the json, void = id 0). Category ids
  are those of ``panoptic_ann_file`` when given (the COCO ids), else ``label + 1``; the json's
  ``categories`` lists them either way;
- ``depth/<name>.png``: ``pred_depth`` (H, W) metres as a 16-bit PNG of ``depth * scale``
  (0 = no depth), ``scale`` = ``depth_scale``, else the dataset's (the one its ground-truth
  PNGs use: NYU and the synthetic set 1000 = millimetres), else KITTI's 256;
- ``points/<name>.npy``: ``pred_segment`` (N,) int64, one class per point of the cloud;
- ``points.json``: ``[{file, label, class, score}]``, one entry per classified cloud
  (``pred_label`` / ``pred_score``).

Boxes, instance masks and keypoints are written by ``CocoMetric`` / ``CocoKeypointMetric``
(``outfile_prefix``: COCO results jsons), not here. ``compute_metrics`` writes the jsons and
returns no metric.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from visionfm.data.datasets.coco_panoptic import panoptic_label_order
from visionfm.data.files import id_to_rgb
from visionfm.registry import METRICS

from .coco_format import plain, to_numpy
from .panoptic_metric import split_panoptic

__all__ = ["PredictionWriter"]

KITTI_DEPTH_SCALE = 256.0


def _name(sample: dict, index: int) -> str:
    """The file stem a sample's outputs are named by."""
    path = sample.get("img_path") or sample.get("file")
    if path:
        return os.path.splitext(os.path.basename(os.path.normpath(str(path))))[0]
    return str(sample.get("img_id", index))


def _map(x: Any) -> np.ndarray:
    """(H, W) or (1, H, W) map as an (H, W) numpy array."""
    x = to_numpy(x, None)
    return x[0] if x.ndim == 3 and x.shape[0] == 1 else x


@METRICS.register_module()
class PredictionWriter(BaseMetric):
    """Writes predictions into ``out_dir`` (see the module doc); evaluates nothing.

    Args:
        out_dir: the folder written to (made when missing).
        depth_scale: 16-bit depth PNG value per metre; None: the dataset's, else 256 (KITTI).
        panoptic_ann_file: a COCO panoptic json whose categories give the category ids.
    """

    default_prefix = "write"

    def __init__(
        self,
        out_dir: str,
        depth_scale: float | None = None,
        panoptic_ann_file: str | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.out_dir, self.depth_scale = out_dir, depth_scale
        self._categories: list[dict] | None = None
        if panoptic_ann_file is not None:
            with open(panoptic_ann_file, encoding="utf-8") as f:
                categories = json.load(f).get("categories")
            if not categories:
                raise ValueError(f"PredictionWriter: {panoptic_ann_file} has no 'categories'")
            self._categories = panoptic_label_order(categories, panoptic_ann_file)

    def _write(self, folder: str, name: str, image: np.ndarray) -> str:
        os.makedirs(os.path.join(self.out_dir, folder), exist_ok=True)
        path = os.path.join(self.out_dir, folder, f"{name}.png")
        if not cv2.imwrite(path, image):
            raise OSError(f"PredictionWriter: could not write {path}")
        return path

    # ---- per batch ----------------------------------------------------------------------
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Write each sample's dense maps; keep its json entries in ``self.results``."""
        for i, sample in enumerate(data_samples):
            sample = plain(sample)
            name = _name(sample, len(self.results) + i)
            written = False
            if "pred_sem_seg" in sample:
                labels = _map(sample["pred_sem_seg"]).astype(np.int64)
                dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
                self._write("sem_seg", name, labels.astype(dtype))
                written = True
            if "pred_panoptic_seg" in sample:
                self.results.append(self._panoptic(sample, name))
                written = True
            if "pred_depth" in sample:
                scale = self.depth_scale or (self.dataset_meta or {}).get("depth_scale")
                depth = _map(sample["pred_depth"]).astype(np.float64) * (scale or KITTI_DEPTH_SCALE)
                png = np.clip(np.nan_to_num(np.round(depth), nan=0.0), 0, 65535)
                self._write("depth", name, png.astype(np.uint16))
                written = True
            if "pred_segment" in sample:
                os.makedirs(os.path.join(self.out_dir, "points"), exist_ok=True)
                labels = to_numpy(sample["pred_segment"], np.int64).reshape(-1)
                np.save(os.path.join(self.out_dir, "points", f"{name}.npy"), labels)
                written = True
            if "pred_label" in sample:
                self.results.append(self._point_class(sample, name))
                written = True
            if not written:
                raise ValueError(
                    f"PredictionWriter: sample {name} has none of pred_sem_seg, "
                    f"pred_panoptic_seg, pred_depth, pred_segment, pred_label (keys "
                    f"{sorted(sample)}); boxes, masks and keypoints go to the COCO metrics' "
                    "outfile_prefix"
                )

    def _category_ids(self, num_labels: int) -> list[int]:
        if self._categories is None:
            return list(range(1, num_labels + 1))
        return [int(c["id"]) for c in self._categories]

    def _panoptic(self, sample: dict, name: str) -> dict:
        """Write the sample's COCO panoptic PNG; its json annotation entry."""
        ids, labels = split_panoptic(to_numpy(sample["pred_panoptic_seg"], np.int64))
        cat_ids = self._category_ids(max(labels.values(), default=-1) + 1)
        segments = []
        for segment, label in labels.items():
            if not 0 <= label < len(cat_ids):
                raise ValueError(
                    f"PredictionWriter: {name} has panoptic label {label}, outside the "
                    f"{len(cat_ids)} categories of the panoptic ann_file"
                )
            ys, xs = np.nonzero(ids == segment)
            bbox = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
            segments.append(
                dict(
                    id=int(segment), category_id=cat_ids[label], area=len(xs), bbox=bbox, iscrowd=0
                )
            )
        self._write("panoptic", name, id_to_rgb(ids)[:, :, ::-1])  # RGB -> BGR for OpenCV
        image = dict(
            id=sample.get("img_id", name), file_name=os.path.basename(sample.get("img_path", name))
        )
        annotation = dict(image_id=image["id"], file_name=f"{name}.png", segments_info=segments)
        return dict(panoptic=annotation, image=image)

    def _point_class(self, sample: dict, name: str) -> dict:
        label = int(to_numpy(sample["pred_label"], np.int64).reshape(-1)[0])
        classes = (self.dataset_meta or {}).get("classes") or ()
        entry = dict(file=str(sample.get("file", name)), label=label)
        entry["class"] = classes[label] if label < len(classes) else str(label)
        if "pred_score" in sample:
            entry["score"] = float(to_numpy(sample["pred_score"], np.float64).reshape(-1)[0])
        return dict(point_class=entry)

    # ---- whole dataset ------------------------------------------------------------------
    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        """Write ``panoptic.json`` / ``points.json`` from the gathered entries; no metric."""
        panoptic = [r for r in results if "panoptic" in r]
        if panoptic:
            self._dump("panoptic.json", self._panoptic_json(panoptic))
        classified = [r["point_class"] for r in results if "point_class" in r]
        if classified:
            self._dump("points.json", classified)
        print_log(f"PredictionWriter: predictions written to {self.out_dir}", logger="current")
        return {}

    def _panoptic_json(self, entries: list[dict]) -> dict:
        """The COCO panoptic json of the gathered ``{panoptic, image}`` entries."""
        if self._categories is not None:
            categories = [
                dict(id=c["id"], name=c["name"], isthing=int(c["isthing"]))
                for c in self._categories
            ]
        else:
            meta = self.dataset_meta or {}
            names = tuple(meta.get("classes") or ())
            things = meta.get("thing_classes")
            categories = [
                dict(id=i + 1, name=n, isthing=int(things is None or n in things))
                for i, n in enumerate(names)
            ]
        images = [e["image"] for e in entries]
        annotations = [e["panoptic"] for e in entries]
        return dict(images=images, annotations=annotations, categories=categories)

    def _dump(self, file_name: str, content: Any) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, file_name), "w", encoding="utf-8") as f:
            json.dump(content, f)
