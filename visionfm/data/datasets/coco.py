"""COCO-format detection / instance segmentation / keypoint dataset (Lin et al., 2014).

Config::

    train_dataloader = dict(
        batch_size=2, num_workers=2,
        sampler=dict(type='DefaultSampler', shuffle=True),
        collate_fn=dict(type='pseudo_collate'),  # mmengine's default; may be omitted
        dataset=dict(
            type='CocoDataset', data_root='data/coco/',
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),   # optional: seg='...', depth='...'
            metainfo=dict(classes=('person', 'car')),  # optional subset, in this order
            filter_empty_gt=True, min_size=32,
            pipeline=[dict(type='LoadImage'), dict(type='LoadAnnotations'), ...,
                      dict(type='PackInputs')]))

Each sample handed to the pipeline (before transforms) is a dict with ``img_path``,
``img_id``, ``height``, ``width``, ``num_keypoints`` (K, 0 without keypoints), optional
``seg_map_path`` / ``depth_path`` (``data_prefix['seg'/'depth']`` + the image's file stem +
``seg_suffix`` / ``depth_suffix``), and ``instances``: a list of dicts with ``bbox`` xyxy
(clipped to the image), ``bbox_label`` (0..C-1), ``ignore_flag`` (1 for crowd), ``mask``
(the raw COCO ``segmentation``), ``keypoints`` (flat [x, y, v] * K) and ``ann_id``.
"""

from __future__ import annotations

import colorsys
import json
import logging
import os
import pickle
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from visionfm.data.transforms import Compose
from visionfm.registry import DATASETS

__all__ = ["CocoDataset", "default_palette", "load_coco_json"]

_REQUIRED_KEYS = ("images", "annotations", "categories")


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct RGB colours (golden-ratio hue steps), the same on every run."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def load_coco_json(path: str) -> dict:
    """Read a COCO json; errors name the file and what is wrong with it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"annotation file {path} is not valid JSON: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise OSError(f"cannot read annotation file {path}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} is not a COCO annotation file: top level is a {type(data).__name__}"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(
            f"{path} is not a COCO annotation file: missing key(s) {missing} (has {sorted(data)})"
        )
    return data


def _flip_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs (i, j), i < j, of keypoints named 'left...' / 'right...' alike."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        if "left" in name:
            j = index.get(name.replace("left", "right"))
            if j is not None:
                pairs.append((min(i, j), max(i, j)))
    return sorted(pairs)


@DATASETS.register_module()
class CocoDataset(BaseDataset):
    """COCO json + image folder (see module doc for the config and the per-sample dict).

    Args:
        ann_file: COCO json, relative to ``data_root`` unless absolute.
        pipeline: transforms (config dicts built by ``visionfm.registry.TRANSFORMS``, or
            callables), ending with ``PackInputs``.
        data_root: prefix joined to ``ann_file`` and to ``data_prefix`` values.
        data_prefix: folders: ``img`` (images, joined with ``file_name``), optional ``seg``
            (semantic masks) and ``depth`` (16-bit depth PNGs).
        metainfo: ``classes`` keeps only those category names, in that order (labels follow
            that order); ``palette`` overrides the generated colours.
        filter_empty_gt: in training (not ``test_mode``) drop images without any non-crowd box.
        min_size: in training drop images whose width or height is below this many pixels.
        check_images: at load time, fail listing the image files that do not exist.

    Categories are sorted by id and mapped to labels 0..C-1. Boxes with zero / negative size
    or entirely outside the image are skipped and counted (``self.num_skipped``, logged);
    the others are clipped to the image. ``metainfo`` holds ``classes``, ``palette`` and, if a
    kept category has keypoints, ``keypoint_names``, ``skeleton`` (0-based pairs; COCO's
    json is 1-based) and ``flip_pairs``.
    """

    def __init__(
        self,
        ann_file: str,
        pipeline: Sequence[dict | Callable] = (),
        data_root: str = "",
        data_prefix: dict | None = None,
        metainfo: dict | None = None,
        filter_empty_gt: bool = True,
        min_size: int = 0,
        seg_suffix: str = ".png",
        depth_suffix: str = ".png",
        check_images: bool = True,
        test_mode: bool = False,
        lazy_init: bool = False,
        serialize_data: bool = True,
        indices: int | Sequence[int] | None = None,
        max_refetch: int = 100,
    ) -> None:
        data_prefix = dict(data_prefix or dict(img=""))
        unknown = set(data_prefix) - {"img", "seg", "depth"}
        if unknown:
            raise ValueError(f"data_prefix keys must be img / seg / depth, got {sorted(unknown)}")
        data_prefix.setdefault("img", "")
        self.filter_empty_gt = filter_empty_gt
        self.min_size = min_size
        self.seg_suffix = seg_suffix
        self.depth_suffix = depth_suffix
        self.check_images = check_images
        self.num_skipped: dict[str, int] = {}
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=data_prefix,
            indices=indices,
            serialize_data=serialize_data,
            pipeline=[],
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
        )
        self.pipeline = Compose(pipeline)  # built by OUR registry, with or without a scope

    # ---- loading -------------------------------------------------------------------------
    def load_data_list(self) -> list[dict]:
        path = self.ann_file
        self.num_skipped = {"degenerate_box": 0, "outside_image": 0, "other_class": 0}
        coco = load_coco_json(path)
        categories = {c["id"]: c for c in coco["categories"]}
        cat2label = self._set_class_metainfo(categories, path)
        images = {img["id"]: img for img in coco["images"]}
        anns_by_image = defaultdict(list)
        for i, ann in enumerate(coco["annotations"]):
            ann_id = ann.get("id", f"#{i}")
            if ann.get("image_id") not in images:
                raise ValueError(
                    f"{path}: annotation id {ann_id} refers to unknown image_id "
                    f"{ann.get('image_id')!r}"
                )
            if ann.get("category_id") not in categories:
                raise ValueError(
                    f"{path}: annotation id {ann_id} refers to unknown category_id "
                    f"{ann.get('category_id')!r} (known: {sorted(categories)})"
                )
            anns_by_image[ann["image_id"]].append(ann)
        num_kps = len(self._metainfo.get("keypoint_names", ()))
        data_list = [
            self._parse_image(img, anns_by_image[img["id"]], cat2label, num_kps, path)
            for img in coco["images"]
        ]
        self._report(data_list)
        return data_list

    def _set_class_metainfo(self, categories: dict[int, dict], path: str) -> dict[int, int]:
        """Fill ``classes`` / ``palette`` / keypoint metainfo; return category id -> label."""
        by_id = [categories[k] for k in sorted(categories)]
        given = self._metainfo.get("classes")
        if given:
            by_name = {c["name"]: c for c in by_id}
            missing = [name for name in given if name not in by_name]
            if missing:
                raise ValueError(
                    f"metainfo classes {missing} are not categories of {path} "
                    f"(it has {[c['name'] for c in by_id]})"
                )
            kept = [by_name[name] for name in given]
        else:
            kept = by_id
        self._metainfo["classes"] = tuple(c["name"] for c in kept)
        if len(self._metainfo.get("palette", ())) < len(kept):
            self._metainfo["palette"] = default_palette(len(kept))
        with_kps = [c for c in kept if c.get("keypoints")]
        if with_kps:
            names = list(with_kps[0]["keypoints"])
            self._metainfo["keypoint_names"] = names
            self._metainfo["skeleton"] = [
                (a - 1, b - 1) for a, b in with_kps[0].get("skeleton", [])
            ]
            self._metainfo["flip_pairs"] = _flip_pairs(names)
        return {c["id"]: label for label, c in enumerate(kept)}

    def _parse_image(
        self, img: dict, anns: list[dict], cat2label: dict[int, int], num_kps: int, path: str
    ) -> dict:
        """One COCO image entry + its annotations -> the per-sample dict (see module doc)."""
        try:
            file_name, h, w = img["file_name"], int(img["height"]), int(img["width"])
        except KeyError as e:
            raise ValueError(f"{path}: image id {img.get('id')} has no {e.args[0]!r}") from e
        info = dict(
            img_path=os.path.join(self.data_prefix["img"], file_name),
            img_id=img["id"],
            height=h,
            width=w,
            num_keypoints=num_kps,
            instances=[],
        )
        stem = os.path.splitext(file_name)[0]
        if "seg" in self.data_prefix:
            info["seg_map_path"] = os.path.join(self.data_prefix["seg"], stem + self.seg_suffix)
        if "depth" in self.data_prefix:
            info["depth_path"] = os.path.join(self.data_prefix["depth"], stem + self.depth_suffix)
        for ann in anns:
            if ann["category_id"] not in cat2label:
                self.num_skipped["other_class"] += 1
                continue
            if "bbox" not in ann:
                raise ValueError(f"{path}: annotation id {ann.get('id')} has no 'bbox'")
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            if bw <= 0 or bh <= 0:
                self.num_skipped["degenerate_box"] += 1
                continue
            box = [max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))]
            if box[2] <= box[0] or box[3] <= box[1]:
                self.num_skipped["outside_image"] += 1
                continue
            instance = dict(
                bbox=box,
                bbox_label=cat2label[ann["category_id"]],
                ignore_flag=int(bool(ann.get("iscrowd", 0))),
                mask=ann.get("segmentation"),
                ann_id=ann.get("id"),
            )
            if num_kps:
                instance["keypoints"] = ann.get("keypoints") or [0.0] * (3 * num_kps)
            info["instances"].append(instance)
        return info

    def _report(self, data_list: list[dict]) -> None:
        """Log skipped boxes; with ``check_images``, fail naming the missing image files."""
        bad = self.num_skipped["degenerate_box"] + self.num_skipped["outside_image"]
        if bad:
            print_log(
                f"{self.ann_file}: skipped {self.num_skipped['degenerate_box']} boxes with "
                f"zero/negative size and {self.num_skipped['outside_image']} boxes outside "
                f"their image",
                logger="current",
                level=logging.WARNING,
            )
        if self.check_images:
            missing = [d["img_path"] for d in data_list if not os.path.isfile(d["img_path"])]
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise FileNotFoundError(
                    f"{self.ann_file}: {len(missing)} of {len(data_list)} image files not "
                    f"found: {shown}"
                )

    def filter_data(self) -> list[dict]:
        """In training: drop images without non-crowd boxes (``filter_empty_gt``) or smaller
        than ``min_size``."""
        if self.test_mode:
            return self.data_list
        kept = []
        for info in self.data_list:
            if min(info["width"], info["height"]) < self.min_size:
                continue
            if self.filter_empty_gt and not any(
                not inst["ignore_flag"] for inst in info["instances"]
            ):
                continue
            kept.append(info)
        if self.data_list and not kept:
            print_log(
                f"{self.ann_file}: no image left after filter_empty_gt={self.filter_empty_gt}, "
                f"min_size={self.min_size}",
                logger="current",
                level=logging.WARNING,
            )
        return kept

    def _serialize_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Pickle ``data_list`` into one uint8 array + (N,) int64 end offsets, as mmengine
        does, minus its failure on an empty list and its ``gc.collect()`` (about 1 s with
        torch loaded; refcounting frees the dicts anyway)."""
        chunks = [np.frombuffer(pickle.dumps(x, protocol=4), np.uint8) for x in self.data_list]
        address = np.cumsum([len(c) for c in chunks], dtype=np.int64)
        data = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        self.data_list.clear()
        return data, address

    def get_cat_ids(self, idx: int) -> list[int]:
        """Labels (0..C-1) present in sample ``idx`` (for class-balanced sampling)."""
        return [inst["bbox_label"] for inst in self.get_data_info(idx)["instances"]]
