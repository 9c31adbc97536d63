"""COCO detection / instance segmentation metric (Lin et al., "Microsoft COCO: Common
Objects in Context", 2014), computed by the official ``pycocotools`` evaluation.

Config::

    val_evaluator = dict(
        type='CocoMetric',
        ann_file='data/coco/annotations/instances_val2017.json',  # None: GT from the samples
        metric=['bbox', 'segm'], classwise=False, outfile_prefix=None, format_only=False)

Each data sample handed to ``process`` (mmengine's ``Evaluator`` turns ``DataSample`` into a
dict) carries ``img_id`` (the COCO image id), ``ori_shape`` (h, w), ``pred_instances`` with
``bboxes`` (N, 4) xyxy in ORIGINAL image pixels, ``scores`` (N,), ``labels`` (N,) in
0..C-1 (a grounding sample's phrase indices when it carries ``phrase_ids``: they are mapped
to class indices through them) and, for ``'segm'``, ``masks`` (N, H, W) bool at the
original size; without
``ann_file`` also ``gt_instances`` (``bboxes`` (M, 4) xyxy original pixels, ``labels`` (M,),
for ``'segm'`` ``masks`` (M, H, W)) plus optional ``ignored_instances`` (counted as COCO
crowd regions). Masks are encoded as RLE in ``process``, so per-image results stay small.

Labels map to COCO category ids through ``dataset_meta['classes']``: label ``i`` is the
category of the ann file named ``classes[i]`` (the ann file's categories sorted by id when
there is no ``dataset_meta``, as ``CocoDataset`` numbers them). A panoptic dataset's
``dataset_meta['thing_classes']`` takes precedence: instance predictions of a panoptic
model are labelled over the thing classes (its labels 0..T-1). Without an ann file the
category id is ``label + 1``.

Results gathered from several processes are de-duplicated by ``img_id`` (a padded
distributed sampler repeats images), and only the images that were processed are
evaluated, so a subset of the ann file can be evaluated.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_util
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionfm.registry import METRICS

from .coco_format import (
    bbox_results,
    coco_from_dict,
    encode_masks,
    load_ann_file,
    per_class_ap,
    plain,
    quiet,
    segm_results,
    to_numpy,
    xyxy_to_xywh,
)

__all__ = ["CocoMetric"]

# COCOeval.stats positions -> metric names (AR entries are suffixed with their maxDets).
_AP_NAMES = ("mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l")


# One converter per supported ``metric`` (COCO iouType).
_RESULT_CONVERTERS = {"bbox": bbox_results, "segm": segm_results}


@METRICS.register_module()
class CocoMetric(BaseMetric):
    """COCO AP / AR of detections by pycocotools (see the module doc for the inputs).

    Args:
        ann_file: COCO json of the evaluated split. None: the ground truth is built from the
            ``gt_instances`` of the data samples (areas are mask areas with masks, else
            box areas).
        metric: COCO iou type(s) to evaluate: ``'bbox'``, ``'segm'`` or both.
        classwise: also log a table of per-class AP / AP50 / AP75.
        outfile_prefix: write the predictions as a COCO results json
            ``<prefix>.<metric>.json`` (and, without ``ann_file``, the ground truth as
            ``<prefix>.gt.json``).
        format_only: only write the results files (needs ``outfile_prefix``); return {}.
        proposal_nums: three increasing ``maxDets``: AP uses the last, AR is given for each.
        collect_device / prefix / collect_dir: as mmengine's ``BaseMetric``.

    ``compute_metrics`` returns ``<metric>_mAP``, ``_mAP_50``, ``_mAP_75``, ``_mAP_s``,
    ``_mAP_m``, ``_mAP_l`` and ``<metric>_AR@<n>`` for each n of ``proposal_nums``, rounded
    to 4 decimals. As in pycocotools, -1 means no ground truth for that entry (e.g. no small
    objects); images without predictions count as misses (AP 0), without GT as no GT.
    """

    default_prefix = "coco"

    def __init__(
        self,
        ann_file: str | None = None,
        metric: str | Sequence[str] = "bbox",
        classwise: bool = False,
        outfile_prefix: str | None = None,
        format_only: bool = False,
        proposal_nums: Sequence[int] = (1, 10, 100),
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.metrics = [metric] if isinstance(metric, str) else list(metric)
        unknown = [m for m in self.metrics if m not in _RESULT_CONVERTERS]
        if unknown or not self.metrics:
            raise ValueError(
                f"CocoMetric: metric must be among {sorted(_RESULT_CONVERTERS)}, got {metric!r}"
            )
        self.proposal_nums = tuple(int(n) for n in proposal_nums)
        if len(self.proposal_nums) != 3 or list(self.proposal_nums) != sorted(
            set(self.proposal_nums)
        ):
            raise ValueError(
                f"CocoMetric: proposal_nums must be 3 increasing numbers (pycocotools' "
                f"maxDets), got {tuple(proposal_nums)}"
            )
        if format_only and outfile_prefix is None:
            raise ValueError("CocoMetric: format_only=True needs outfile_prefix to write to")
        self.ann_file = ann_file
        self.classwise = classwise
        self.outfile_prefix = outfile_prefix
        self.format_only = format_only
        self._coco_gt = load_ann_file(ann_file) if ann_file is not None else None

    # ---- per batch ----------------------------------------------------------------------
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store, per image, ``img_id``, the predictions as numpy arrays (masks as RLE) and
        (without ``ann_file``) the ground truth and ``ori_shape``."""
        for sample in data_samples:
            sample = plain(sample)
            if "img_id" not in sample or "pred_instances" not in sample:
                raise KeyError(
                    f"CocoMetric: a data sample needs 'img_id' and 'pred_instances', got keys "
                    f"{sorted(sample)}"
                )
            pred = plain(sample["pred_instances"])
            result = dict(
                img_id=int(sample["img_id"]),
                bboxes=to_numpy(pred["bboxes"], np.float64).reshape(-1, 4),
                scores=to_numpy(pred["scores"], np.float64).reshape(-1),
                labels=to_numpy(pred["labels"], np.int64).reshape(-1),
            )
            if "phrase_ids" in sample:  # class prompt: phrase index -> class index
                result["labels"] = np.asarray(sample["phrase_ids"], np.int64)[result["labels"]]
            if "segm" in self.metrics:
                if "masks" not in pred:
                    raise KeyError(
                        f"CocoMetric(metric='segm'): pred_instances of image {result['img_id']} "
                        f"have no 'masks' (keys {sorted(pred)})"
                    )
                shape = tuple(pred["masks"].shape[-2:])
                if "ori_shape" in sample and shape != tuple(sample["ori_shape"][:2]):
                    raise ValueError(
                        f"CocoMetric: predicted masks of image {result['img_id']} are {shape} but "
                        f"ori_shape is {tuple(sample['ori_shape'][:2])}: masks must be at the "
                        "original image size"
                    )
                result["masks"] = encode_masks(pred["masks"])
            if self._coco_gt is None and not self.format_only:
                result.update(self._gt_of(sample, with_masks="segm" in self.metrics))
            self.results.append(result)

    @staticmethod
    def _gt_of(sample: dict, with_masks: bool) -> dict:
        if "gt_instances" not in sample or "ori_shape" not in sample:
            raise KeyError(
                "CocoMetric without ann_file builds the ground truth from the data samples, "
                "which need 'gt_instances' and 'ori_shape' (keep the annotations in the test "
                f"pipeline, or give ann_file); got keys {sorted(sample)}"
            )
        gt = plain(sample["gt_instances"])
        ignored = plain(sample.get("ignored_instances")) or dict(bboxes=[], labels=[])
        shape = tuple(int(v) for v in sample["ori_shape"][:2])
        out = dict(
            ori_shape=shape,
            gt_bboxes=to_numpy(gt["bboxes"], np.float64).reshape(-1, 4),
            gt_labels=to_numpy(gt["labels"], np.int64).reshape(-1),
            ignored_bboxes=to_numpy(ignored["bboxes"], np.float64).reshape(-1, 4),
            ignored_labels=to_numpy(ignored["labels"], np.int64).reshape(-1),
        )
        if "phrase_ids" in sample:  # class prompt: phrase index -> class index
            ids = np.asarray(sample["phrase_ids"], np.int64)
            out["gt_labels"], out["ignored_labels"] = (
                ids[out["gt_labels"]],
                ids[out["ignored_labels"]],
            )
        if with_masks:
            for key, inst in (("gt", gt), ("ignored", ignored)):
                masks = inst.get("masks", np.zeros((0, *shape), bool))
                if "masks" not in inst and len(out[f"{key}_labels"]):
                    raise KeyError(f"CocoMetric(metric='segm') without ann_file needs {key} masks")
                if tuple(masks.shape[-2:]) != shape:
                    raise ValueError(
                        f"CocoMetric: {key} masks of image {sample.get('img_id')} are "
                        f"{tuple(masks.shape[-2:])} but ori_shape is {shape}: ground truth from "
                        "the samples must be at the original size (or give ann_file)"
                    )
                out[f"{key}_masks"] = encode_masks(masks)
        return out

    # ---- whole dataset ------------------------------------------------------------------
    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        """Evaluate the gathered per-image results (see the class doc for the keys)."""
        results = self._dedupe(results)
        if self._coco_gt is not None:
            coco_gt = self._coco_gt
            cat_ids = self._ann_file_cat_ids(coco_gt)
            unknown = sorted({r["img_id"] for r in results} - set(coco_gt.getImgIds()))
            if unknown:
                raise ValueError(
                    f"CocoMetric: image ids {unknown[:10]} are not images of {self.ann_file}"
                )
        else:
            num_classes = self._num_classes(results)
            cat_ids = list(range(1, num_classes + 1))
            coco_gt = None if self.format_only else self._gt_from_results(results, num_classes)

        files = {}
        entries = {m: _RESULT_CONVERTERS[m](results, cat_ids) for m in self.metrics}
        if self.outfile_prefix is not None:
            files = self._dump(entries, coco_gt)
        if self.format_only:
            print_log(f"CocoMetric: results written to {files} (format_only)", logger="current")
            return {}

        img_ids = [r["img_id"] for r in results]
        metrics: dict[str, float] = {}
        for metric in self.metrics:
            metrics.update(self._evaluate(coco_gt, entries[metric], metric, img_ids, cat_ids))
        return metrics

    @staticmethod
    def _dedupe(results: list[dict]) -> list[dict]:
        """Keep the first result of every ``img_id`` (padded samplers repeat images)."""
        seen: dict[int, dict] = {}
        for res in results:
            seen.setdefault(res["img_id"], res)
        if len(seen) < len(results):
            print_log(
                f"CocoMetric: {len(results) - len(seen)} repeated image results dropped "
                f"(padded distributed sampling); evaluating {len(seen)} images",
                logger="current",
                level=logging.DEBUG,
            )
        return list(seen.values())

    def _classes(self) -> tuple[str, ...] | None:
        """Names of labels 0..C-1: ``thing_classes`` (panoptic datasets), else ``classes``."""
        meta = self.dataset_meta or {}
        classes = meta.get("thing_classes") or meta.get("classes")
        return tuple(classes) if classes else None

    def _ann_file_cat_ids(self, coco_gt: COCO) -> list[int]:
        """Category id of each label 0..C-1 (by ``dataset_meta['classes']`` names)."""
        categories = coco_gt.dataset["categories"]
        classes = self._classes()
        if classes is None:
            return sorted(c["id"] for c in categories)
        ids_by_name: dict[str, list[int]] = {}
        for c in categories:
            ids_by_name.setdefault(c["name"], []).append(c["id"])
        cat_ids = []
        for name in classes:
            ids = ids_by_name.get(name)
            if not ids:
                raise ValueError(
                    f"CocoMetric: class {name!r} of dataset_meta['classes'] is not a category "
                    f"of {self.ann_file} (its categories: {sorted(ids_by_name)})"
                )
            if len(ids) > 1:
                raise ValueError(
                    f"CocoMetric: {self.ann_file} has several categories named {name!r} (ids {ids})"
                )
            cat_ids.append(ids[0])
        return cat_ids

    def _num_classes(self, results: list[dict]) -> int:
        classes = self._classes()
        if classes is not None:
            return len(classes)
        labels = [r[k] for r in results for k in ("labels", "gt_labels") if k in r]
        return int(max((lab.max() for lab in labels if len(lab)), default=-1)) + 1

    def _gt_from_results(self, results: list[dict], num_classes: int) -> COCO:
        """COCO ground truth from the samples' ``gt_instances``; category id = label + 1."""
        classes = self._classes() or tuple(f"class_{i}" for i in range(num_classes))
        images, annotations = [], []
        for res in results:
            h, w = res["ori_shape"]
            images.append(dict(id=res["img_id"], height=h, width=w))
            for key, iscrowd in (("gt", 0), ("ignored", 1)):
                boxes = xyxy_to_xywh(res[f"{key}_bboxes"]).tolist()
                masks = res.get(f"{key}_masks") or [None] * len(boxes)
                for box, label, rle in zip(boxes, res[f"{key}_labels"].tolist(), masks):
                    if not 0 <= label < num_classes:
                        raise ValueError(
                            f"CocoMetric: image {res['img_id']} has ground-truth label {label} "
                            f"outside 0..{num_classes - 1}"
                        )
                    ann = dict(
                        id=len(annotations) + 1,  # COCOeval needs ids > 0
                        image_id=res["img_id"],
                        category_id=label + 1,
                        bbox=box,
                        area=box[2] * box[3],
                        iscrowd=iscrowd,
                    )
                    if rle is not None:
                        ann.update(segmentation=dict(rle), area=float(mask_util.area(rle)))
                    annotations.append(ann)
        categories = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
        return coco_from_dict(dict(images=images, annotations=annotations, categories=categories))

    def _dump(self, entries: dict[str, list[dict]], coco_gt: COCO | None) -> dict[str, str]:
        """Write ``<prefix>.<metric>.json`` (and ``<prefix>.gt.json`` for GT from samples)."""
        files = {m: f"{self.outfile_prefix}.{m}.json" for m in entries}
        contents = {files[m]: entries[m] for m in entries}
        if self._coco_gt is None and coco_gt is not None:
            files["gt"] = f"{self.outfile_prefix}.gt.json"
            contents[files["gt"]] = coco_gt.dataset
        for path, content in contents.items():
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(content, f)
        return files

    def _evaluate(
        self,
        coco_gt: COCO,
        entries: list[dict],
        metric: str,
        img_ids: list[int],
        cat_ids: list[int],
    ) -> dict[str, float]:
        """Run COCOeval on ``img_ids`` x ``cat_ids``; log its summary (and class table)."""
        if entries:
            coco_dt, _ = quiet(coco_gt.loadRes, [dict(e) for e in entries])
        else:  # pycocotools' loadRes cannot take an empty list
            print_log(
                f"CocoMetric: no {metric} predictions at all",
                logger="current",
                level=logging.WARNING,
            )
            coco_dt = coco_from_dict(
                dict(
                    images=list(coco_gt.dataset["images"]),
                    categories=list(coco_gt.dataset["categories"]),
                    annotations=[],
                )
            )
        coco_eval = COCOeval(coco_gt, coco_dt, iouType=metric)
        coco_eval.params.imgIds = img_ids
        coco_eval.params.catIds = cat_ids
        coco_eval.params.maxDets = list(self.proposal_nums)
        _, log = quiet(
            lambda: (coco_eval.evaluate(), coco_eval.accumulate(), coco_eval.summarize())
        )
        print_log(f"CocoMetric ({metric}, {len(img_ids)} images):\n{log}", logger="current")
        if self.classwise:
            print_log(self._class_table(coco_eval, cat_ids), logger="current")
        stats = coco_eval.stats
        names = list(_AP_NAMES) + [f"AR@{n}" for n in self.proposal_nums]
        return {f"{metric}_{name}": round(float(v), 4) for name, v in zip(names, stats)}

    def _class_table(self, coco_eval: COCOeval, cat_ids: list[int]) -> str:
        """Per-class AP, AP50, AP75 (area all, last maxDets) as a text table."""
        ap = per_class_ap(coco_eval)  # (K, 3) in the order of COCOeval's sorted category ids
        sorted_ids = list(coco_eval.params.catIds)
        names = self._classes() or tuple(c["name"] for c in coco_eval.cocoGt.loadCats(cat_ids))
        rows = [
            (str(name), *(f"{v:.3f}" for v in ap[sorted_ids.index(cat_id)]))
            for name, cat_id in zip(names, cat_ids)
        ]
        width = max([len("category")] + [len(r[0]) for r in rows])
        lines = [f"{'category':<{width}}  {'AP':>6}  {'AP50':>6}  {'AP75':>6}"]
        lines += [f"{r[0]:<{width}}  {r[1]:>6}  {r[2]:>6}  {r[3]:>6}" for r in rows]
        return "\n".join(lines)
