"""COCO panoptic segmentation format (Kirillov et al., "Panoptic Segmentation", CVPR 2019):
the dataset (its PNGs are read by ``LoadPanopticAnnotations`` in ``transforms/loading.py``).

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

from visionfm.registry import DATASETS

from .coco import CocoDataset, default_palette, load_coco_json

__all__ = ["CocoPanopticDataset", "panoptic_label_order"]


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
