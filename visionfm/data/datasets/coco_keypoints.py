"""COCO person keypoints, top-down: one sample per person box (Lin et al., 2014).

Config::

    dataset = dict(
        type='CocoKeypointDataset', data_root='data/coco/',
        ann_file='annotations/person_keypoints_val2017.json',
        data_prefix=dict(img='val2017/'),
        bbox_file='person_detection_results/COCO_val2017_detections_AP_H_56_person.json',
        bbox_score_thr=0.0, test_mode=True, pipeline=[...])

Each sample handed to the pipeline is a dict with ``img_path``, ``img_id``, ``height``,
``width``, ``num_keypoints`` (K), ``bbox`` (4,) xyxy float32 in image pixels, ``bbox_score``,
``bbox_label`` (0), ``id`` (the sample index) and ``instances``: ``[dict(bbox, bbox_label=0,
ignore_flag=0, keypoints=[x, y, v] * K, ann_id)]`` for a ground-truth person, ``[]`` for a
detection. Samples come from

- the ground truth (training, and testing without ``bbox_file``): every non-crowd
  annotation of the keypoint category with at least ``min_keypoints`` labelled (v > 0)
  keypoints and a non-empty box;
- ``bbox_file`` (testing only): a COCO results json (``[{image_id, category_id, bbox xywh,
  score}]``, e.g. a detector's output) -- one sample per box of the keypoint category with
  ``score >= bbox_score_thr``.

``metainfo``: ``classes`` (the keypoint category's name), ``palette``, ``keypoint_names``,
``skeleton`` (0-based pairs), ``flip_pairs`` (by 'left' / 'right' names) and ``sigmas``
(per-keypoint OKS sigmas: given in ``metainfo``, else COCO's for COCO's 17 keypoints, else
absent; the keypoint metric then asks for them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np

from visionfm.registry import DATASETS

from .coco import CocoDataset, default_palette, load_coco_json

__all__ = ["COCO_KEYPOINT_NAMES", "COCO_SIGMAS", "CocoKeypointDataset"]

COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
# OKS per-keypoint standard deviations of COCO's 17 person keypoints (COCO keypoint eval).
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107,
    0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip


def keypoint_flip_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """(i, j), i < j, for keypoints named alike but for 'left' / 'right'."""
    index = {n: i for i, n in enumerate(names)}
    pairs = set()
    for i, name in enumerate(names):
        j = index.get(name.replace("left", "right")) if "left" in name else None
        if j is not None:
            pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


@DATASETS.register_module()
class CocoKeypointDataset(CocoDataset):
    """Top-down COCO keypoints (see the module doc).

    Args:
        ann_file, pipeline, data_root, data_prefix, check_images, on_error, test_mode,
            lazy_init, serialize_data, indices, max_refetch: as :class:`CocoDataset`.
        metainfo: ``classes=(name,)`` picks the keypoint category by name (default: the
            first category with keypoints); ``sigmas`` sets the OKS sigmas.
        bbox_file: detection results json (relative to ``data_root`` unless absolute) to
            take the test boxes from; only with ``test_mode=True``.
        bbox_score_thr: keep detections with at least this score.
        min_keypoints: ground-truth persons need this many labelled keypoints.
    """

    def __init__(
        self,
        ann_file: str,
        pipeline: Sequence[dict | Callable] = (),
        data_root: str = "",
        data_prefix: dict | None = None,
        metainfo: dict | None = None,
        bbox_file: str | None = None,
        bbox_score_thr: float = 0.0,
        min_keypoints: int = 1,
        check_images: bool = True,
        on_error: str = "raise",
        test_mode: bool = False,
        lazy_init: bool = False,
        serialize_data: bool = True,
        indices: int | Sequence[int] | None = None,
        max_refetch: int = 100,
    ) -> None:
        if bbox_file is not None and not test_mode:
            raise ValueError(
                "CocoKeypointDataset: bbox_file (detected boxes) is for testing; training "
                "needs ground-truth boxes (set test_mode=True or drop bbox_file)"
            )
        if bbox_file is not None and data_root and not os.path.isabs(bbox_file):
            bbox_file = os.path.join(data_root, bbox_file)
        self.bbox_file = bbox_file
        self.bbox_score_thr = bbox_score_thr
        self.min_keypoints = min_keypoints
        super().__init__(
            ann_file=ann_file,
            pipeline=pipeline,
            data_root=data_root,
            data_prefix=data_prefix,
            metainfo=metainfo,
            filter_empty_gt=False,
            check_images=check_images,
            on_error=on_error,
            test_mode=test_mode,
            lazy_init=lazy_init,
            serialize_data=serialize_data,
            indices=indices,
            max_refetch=max_refetch,
        )

    # ---- loading -------------------------------------------------------------------------
    def load_data_list(self) -> list[dict]:
        coco = load_coco_json(self.ann_file)
        category = self._keypoint_category(coco["categories"])
        images = {img["id"]: img for img in coco["images"]}
        if self.bbox_file is not None:
            boxes = self._detections(category["id"], images)
        else:
            boxes = self._ground_truth(coco["annotations"], category["id"], images)
        num_k = len(category["keypoints"])
        data_list = []
        for image_id, bbox, score, instance in boxes:
            img = images[image_id]
            data_list.append(
                dict(
                    img_path=os.path.join(self.data_prefix["img"], img["file_name"]),
                    img_id=image_id,
                    height=int(img["height"]),
                    width=int(img["width"]),
                    num_keypoints=num_k,
                    bbox=np.asarray(bbox, np.float32),
                    bbox_score=float(score),
                    bbox_label=0,
                    id=len(data_list),
                    instances=[instance] if instance is not None else [],
                )
            )
        self._check_image_files(data_list)
        return data_list

    def _keypoint_category(self, categories: list[dict]) -> dict:
        """The category whose persons are cut out; fills the metainfo (see module doc)."""
        with_kps = [c for c in sorted(categories, key=lambda c: c["id"]) if c.get("keypoints")]
        given = self._metainfo.get("classes")
        if given:
            if len(given) != 1:
                raise ValueError(f"CocoKeypointDataset: give one class name, got {given}")
            with_kps = [c for c in with_kps if c["name"] == given[0]]
        if not with_kps:
            names = [c["name"] for c in categories if c.get("keypoints")]
            raise ValueError(
                f"{self.ann_file}: no category {'named ' + repr(given[0]) + ' ' if given else ''}"
                f"with keypoints (categories with keypoints: {names})"
            )
        cat = with_kps[0]
        names = tuple(cat["keypoints"])
        meta = self._metainfo
        meta["classes"] = (cat["name"],)
        meta.setdefault("palette", default_palette(1))
        meta["keypoint_names"] = names
        meta["skeleton"] = [(a - 1, b - 1) for a, b in cat.get("skeleton", [])]
        meta["flip_pairs"] = keypoint_flip_pairs(names)
        if meta.get("sigmas") is None and names == COCO_KEYPOINT_NAMES:
            meta["sigmas"] = COCO_SIGMAS
        if meta.get("sigmas") is not None and len(meta["sigmas"]) != len(names):
            raise ValueError(
                f"metainfo sigmas has {len(meta['sigmas'])} values for {len(names)} keypoints"
            )
        return cat

    def _ground_truth(self, annotations: list[dict], cat_id: int, images: dict):
        """-> [(image_id, xyxy box, score 1, instance dict)] of the usable persons."""
        out = []
        for ann in annotations:
            if ann.get("category_id") != cat_id or ann.get("iscrowd", 0):
                continue
            kps = ann.get("keypoints") or []
            if int((np.asarray(kps).reshape(-1, 3)[:, 2] > 0).sum()) < self.min_keypoints:
                continue
            img = images.get(ann["image_id"])
            if img is None:
                raise ValueError(f"{self.ann_file}: annotation {ann.get('id')} has unknown image")
            box = _clip_xywh(ann["bbox"], img)
            if box is None:
                continue
            instance = dict(bbox=box, bbox_label=0, ignore_flag=0, keypoints=kps, ann_id=ann["id"])
            out.append((ann["image_id"], box, 1.0, instance))
        return out

    def _detections(self, cat_id: int, images: dict):
        """-> [(image_id, xyxy box, score, None)] from ``bbox_file``."""
        if not os.path.isfile(self.bbox_file):
            raise FileNotFoundError(f"bbox_file not found: {self.bbox_file}")
        with open(self.bbox_file, encoding="utf-8") as f:
            dets = json.load(f)
        if not isinstance(dets, list):
            raise ValueError(
                f"{self.bbox_file}: expected a COCO results list [{{image_id, bbox, score}}]"
            )
        out = []
        for det in dets:
            if det.get("category_id", cat_id) != cat_id or det["score"] < self.bbox_score_thr:
                continue
            img = images.get(det["image_id"])
            if img is None:
                raise ValueError(
                    f"{self.bbox_file}: image_id {det['image_id']} is not in {self.ann_file}"
                )
            box = _clip_xywh(det["bbox"], img)
            if box is not None:
                out.append((det["image_id"], box, float(det["score"]), None))
        return out

    def _check_image_files(self, data_list: list[dict]) -> None:
        if not self.check_images:
            return
        paths = sorted({d["img_path"] for d in data_list})
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FileNotFoundError(
                f"{self.ann_file}: {len(missing)} of {len(paths)} image files not found: {shown}"
            )

    def filter_data(self) -> list[dict]:
        """Nothing to filter: ``load_data_list`` keeps only usable persons."""
        return self.data_list

    def get_cat_ids(self, idx: int) -> list[int]:
        return [0]


def _clip_xywh(bbox: Sequence[float], img: dict) -> list[float] | None:
    """COCO xywh -> xyxy clipped to the image; None if empty."""
    x, y, w, h = (float(v) for v in bbox)
    box = [
        max(x, 0.0),
        max(y, 0.0),
        min(x + w, float(img["width"])),
        min(y + h, float(img["height"])),
    ]
    return box if box[2] > box[0] and box[3] > box[1] else None
