"""COCO panoptic segmentation format (Kirillov et al., "Panoptic Segmentation", CVPR 2019):
the dataset and the transform that loads its PNGs.

Format: one json with ``images``, ``categories`` (``id``, ``name``, ``isthing``, optional
``color``) and ``annotations``, one per image: ``image_id``, ``file_name`` (its PNG) and
``segments_info`` (``id``, ``category_id``, ``iscrowd``, ``bbox``, ``area``). The PNG is RGB
and stores each pixel's segment id as ``id = R + 256 G + 256^2 B``; 0 is void (unlabelled).

Config::

    dataset=dict(
        type='CocoPanopticDataset', data_root='data/coco/',
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        pipeline=[dict(type='LoadImage'), dict(type='LoadPanopticAnnotations'), ...,
                  dict(type='PackInputs')])

Labels: things first, then stuff, each group by category id (for COCO: sorted by id, things
0..79, stuff 80..132). ``metainfo`` holds ``classes``, ``thing_classes``, ``stuff_classes``
and ``palette`` (the categories' ``color`` when given).

Each sample handed to the pipeline has ``img_path``, ``img_id``, ``height``, ``width``,
``panoptic_path`` and ``instances``: one dict per segment with ``segment_id``,
``bbox_label``, ``ignore_flag`` (1 for crowd), ``category_id`` and ``isthing``.
``LoadPanopticAnnotations`` turns these into ``gt_masks`` / ``gt_labels`` / ``gt_bboxes`` /
``gt_ignore_flags`` (things AND stuff segments; crowd ones become ``ignored_instances``) and
``gt_sem_seg`` (label per pixel, 255 on void).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from visionfm.data.transforms.loading import read_image_file
from visionfm.registry import DATASETS, TRANSFORMS

from .coco import CocoDataset, default_palette, load_coco_json

__all__ = [
    "CocoPanopticDataset",
    "LoadPanopticAnnotations",
    "id_to_rgb",
    "panoptic_label_order",
    "read_panoptic_png",
    "rgb_to_id",
]

IGNORE_LABEL = 255


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) int64 segment ids ``R + 256 G + 256^2 B``."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) segment ids in [0, 256^3) -> (H, W, 3) uint8 RGB."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack((ids % 256, ids // 256 % 256, ids // 65536 % 256), axis=-1).astype(np.uint8)


def read_panoptic_png(path: str) -> np.ndarray:
    """The (H, W) int64 segment ids of a COCO panoptic PNG; unreadable files raise naming
    ``path``."""
    bgr = read_image_file(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return rgb_to_id(bgr[:, :, ::-1])


def panoptic_label_order(categories: Sequence[dict], where: str = "") -> list[dict]:
    """Categories in label order: things then stuff, each by id. Each needs ``isthing``."""
    for c in categories:
        if "isthing" not in c or "id" not in c:
            raise ValueError(
                f"{where}: category {c.get('name', c.get('id'))!r} has no 'id' / 'isthing': "
                "not a COCO panoptic categories list"
            )
    things = sorted((c for c in categories if c["isthing"]), key=lambda c: c["id"])
    stuff = sorted((c for c in categories if not c["isthing"]), key=lambda c: c["id"])
    return things + stuff


@DATASETS.register_module()
class CocoPanopticDataset(CocoDataset):
    """COCO panoptic json + image folder + PNG folder (see the module doc).

    Args:
        ann_file: the panoptic json, relative to ``data_root`` unless absolute.
        data_prefix: ``img`` (images, joined with the image's ``file_name``) and ``seg`` (the
            panoptic PNGs, joined with the annotation's ``file_name``).
        metainfo: ``palette`` overrides the colours; ``classes``, if given, must equal the
            file's categories in label order (no subsets: a panoptic image must stay whole).
        filter_empty_gt: in training drop images without any non-crowd segment.
        **kwargs: the other arguments of :class:`CocoDataset` (``test_mode``,
            ``check_images``, ``min_size``, ``indices``, ...).
    """

    def __init__(
        self,
        ann_file: str,
        pipeline: Sequence[dict | Callable] = (),
        data_root: str = "",
        data_prefix: dict | None = None,
        metainfo: dict | None = None,
        filter_empty_gt: bool = True,
        **kwargs,
    ) -> None:
        prefix = dict(data_prefix or {})
        if set(prefix) - {"img", "seg"}:
            raise ValueError(f"data_prefix keys must be img / seg, got {sorted(prefix)}")
        super().__init__(
            ann_file=ann_file,
            pipeline=pipeline,
            data_root=data_root,
            data_prefix={"img": prefix.get("img", ""), "seg": prefix.get("seg", "")},
            metainfo=metainfo,
            filter_empty_gt=filter_empty_gt,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        path = self.ann_file
        self.num_skipped = {"degenerate_box": 0, "outside_image": 0, "other_class": 0}
        coco = load_coco_json(path)
        ordered = panoptic_label_order(coco["categories"], path)
        self._set_panoptic_metainfo(ordered, path)
        cat2label = {c["id"]: label for label, c in enumerate(ordered)}
        isthing = {c["id"]: bool(c["isthing"]) for c in ordered}
        by_image = {}
        for i, ann in enumerate(coco["annotations"]):
            if "image_id" not in ann or "file_name" not in ann or "segments_info" not in ann:
                raise ValueError(
                    f"{path}: annotation #{i} needs 'image_id', 'file_name' and "
                    f"'segments_info' (has {sorted(ann)})"
                )
            by_image[ann["image_id"]] = ann
        data_list = []
        for img in coco["images"]:
            ann = by_image.get(img.get("id"))
            if ann is None:
                raise ValueError(f"{path}: image id {img.get('id')} has no panoptic annotation")
            data_list.append(self._parse(img, ann, cat2label, isthing, path))
        self._report(data_list)
        return data_list

    def _set_panoptic_metainfo(self, ordered: list[dict], path: str) -> None:
        names = tuple(c["name"] for c in ordered)
        given = self._metainfo.get("classes")
        if given and tuple(given) != names:
            raise ValueError(
                f"metainfo classes {tuple(given)} differ from the categories of {path} in "
                f"label order (things, then stuff): {names}"
            )
        self._metainfo["classes"] = names
        self._metainfo["thing_classes"] = tuple(c["name"] for c in ordered if c["isthing"])
        self._metainfo["stuff_classes"] = tuple(c["name"] for c in ordered if not c["isthing"])
        if len(self._metainfo.get("palette", ())) < len(ordered):
            fallback = default_palette(len(ordered))
            self._metainfo["palette"] = [
                tuple(c["color"]) if len(c.get("color", ())) == 3 else fallback[i]
                for i, c in enumerate(ordered)
            ]

    def _parse(self, img: dict, ann: dict, cat2label: dict, isthing: dict, path: str) -> dict:
        try:
            file_name, h, w = img["file_name"], int(img["height"]), int(img["width"])
        except KeyError as e:
            raise ValueError(f"{path}: image id {img.get('id')} has no {e.args[0]!r}") from e
        instances = []
        for seg in ann["segments_info"]:
            if seg.get("category_id") not in cat2label:
                raise ValueError(
                    f"{path}: segment id {seg.get('id')} of image {img['id']} has unknown "
                    f"category_id {seg.get('category_id')!r} (known: {sorted(cat2label)})"
                )
            instances.append(
                dict(
                    segment_id=int(seg["id"]),
                    bbox_label=cat2label[seg["category_id"]],
                    category_id=seg["category_id"],
                    isthing=isthing[seg["category_id"]],
                    ignore_flag=int(bool(seg.get("iscrowd", 0))),
                )
            )
        return dict(
            img_path=os.path.join(self.data_prefix["img"], file_name),
            img_id=img["id"],
            height=h,
            width=w,
            panoptic_path=os.path.join(self.data_prefix["seg"], ann["file_name"]),
            instances=instances,
        )


def _tight_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 xyxy (exclusive right / bottom edges)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if len(rows):
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


@TRANSFORMS.register_module()
class LoadPanopticAnnotations:
    """Read ``results['panoptic_path']`` into per-segment masks and a semantic map.

    Writes ``gt_masks`` bool (N, H, W) (one per segment of ``results['instances']``, things
    and stuff), ``gt_labels`` int64 (N,), ``gt_bboxes`` float32 (N, 4) tight xyxy boxes of
    the masks, ``gt_ignore_flags`` bool (N,) (crowd) and, with ``with_seg``, ``gt_sem_seg``
    uint8 (H, W): each segment's label (crowd ones included), 255 on void.

    Every segment of the json must have pixels in the PNG and every nonzero id in the PNG must
    be a segment of the json (as panopticapi checks); errors name the PNG and the segment.
    """

    def __init__(self, with_seg: bool = True) -> None:
        self.with_seg = with_seg

    def __call__(self, results: dict) -> dict:
        path = results["panoptic_path"]
        ids = read_panoptic_png(path)
        expected = (results.get("height"), results.get("width"))
        if None not in expected and ids.shape != expected:
            raise ValueError(
                f"panoptic PNG {path} is {ids.shape[0]}x{ids.shape[1]} (h x w) but its image "
                f"is {expected[0]}x{expected[1]}"
            )
        segments = results.get("instances", [])
        seg_ids = np.array([s["segment_id"] for s in segments], np.int64)
        if len(set(seg_ids.tolist())) < len(seg_ids) or (seg_ids == 0).any():
            raise ValueError(
                f"segments_info of {path} repeats a segment id or uses the void id 0: "
                f"{seg_ids.tolist()}"
            )
        present, inverse = np.unique(ids, return_inverse=True)
        inverse = inverse.reshape(ids.shape)
        unknown = sorted(set(present.tolist()) - set(seg_ids.tolist()) - {0})
        if unknown:
            raise ValueError(
                f"panoptic PNG {path} has segment ids {unknown[:5]} that are not in its "
                "segments_info"
            )
        missing = sorted(set(seg_ids.tolist()) - set(present.tolist()))
        if missing:
            raise ValueError(
                f"panoptic PNG {path}: segments {missing[:5]} of segments_info have no pixels"
            )
        index = np.searchsorted(present, seg_ids)  # (N,) position of each segment's id
        masks = inverse[None] == index[:, None, None]  # (N, H, W)
        labels = np.array([s["bbox_label"] for s in segments], np.int64)
        results["gt_masks"] = masks
        results["gt_labels"] = labels
        results["gt_bboxes"] = _tight_boxes(masks)
        results["gt_ignore_flags"] = np.array([bool(s["ignore_flag"]) for s in segments], bool)
        if self.with_seg:
            if len(labels) and labels.max() >= IGNORE_LABEL:
                raise ValueError(
                    f"label {labels.max()} does not fit a uint8 semantic map with 255 = ignore"
                )
            lut = np.full(len(present), IGNORE_LABEL, np.uint8)
            lut[index] = labels
            results["gt_sem_seg"] = lut[inverse]
        return results

    def __repr__(self) -> str:
        return f"LoadPanopticAnnotations(with_seg={self.with_seg})"
