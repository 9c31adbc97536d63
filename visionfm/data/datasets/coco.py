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

Bad input: the json is checked entry by entry when the dataset is built (see
:mod:`~visionfm.data.datasets.coco_schema`); ``on_error='skip'`` leaves out malformed
entries and missing images (counted in ``num_invalid``, logged) and, in training, skips
samples whose files fail to load inside the DataLoader workers; ``bad_boxes`` says whether
boxes sticking out of the image are clipped, dropped or refused.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence

from mmengine.logging import print_log

from visionfm.registry import DATASETS

from ..palette import default_palette
from .base import VisionDataset
from .coco_schema import (
    CocoFormatError,
    check_annotation,
    check_categories,
    check_image,
    load_coco_json,
)

__all__ = ["CocoDataset", "CocoFormatError", "default_palette", "load_coco_json"]

BAD_BOXES = ("clip", "drop", "raise")


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


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
class CocoDataset(VisionDataset):
    """COCO json + image folder (see module doc for the config and the per-sample dict).

    Args:
        ann_file: COCO json, relative to ``data_root`` unless absolute.
        pipeline: transforms (config dicts built by ``visionfm.registry.TRANSFORMS``, or
            callables), ending with ``PackInputs``.
        data_prefix: folders: ``img`` (images, joined with ``file_name``), optional ``seg``
            (semantic masks) and ``depth`` (16-bit depth PNGs).
        filter_empty_gt: in training (not ``test_mode``) drop images without any non-crowd box.
        min_size: in training drop images whose width or height is below this many pixels.
        check_images: at load time, look for every image file (see ``on_error``).
        on_error: 'raise' or 'skip' a malformed image / annotation entry of the json (a
            :class:`CocoFormatError` naming the entry and key: unknown image or category
            id, bad ``bbox``, ``segmentation`` of another size than its image, ``keypoints``
            of the wrong length ...), a missing image file (``check_images``), and a sample
            whose files fail to load in training (see
            :class:`~visionfm.data.datasets.bad_samples.SkipBadSamplesMixin`). Skipped
            entries are counted in ``num_invalid`` and logged. Errors of the file as a whole
            (not JSON, no categories ...) always raise.
        bad_boxes: boxes with zero / negative size or entirely outside the image are dropped
            with 'clip' and 'drop', and raise with 'raise'. Boxes partly outside the image are
            clipped to it ('clip'), dropped ('drop') or raise ('raise').
        **base_args: :class:`~visionfm.data.datasets.base.VisionDataset`'s (mmengine
            ``BaseDataset``'s): ``data_root`` (joined to ``ann_file`` and the
            ``data_prefix`` values), ``metainfo`` (``classes`` keeps only those category
            names, in that order, and labels follow it; ``palette`` overrides the generated
            colours), ``test_mode``, ``lazy_init``, ``serialize_data``, ``indices``,
            ``max_refetch``.

    Categories are sorted by id and mapped to labels 0..C-1. Dropped boxes are counted in
    ``num_skipped`` (``degenerate_box``, ``outside_image``: entirely, or partly with
    ``bad_boxes='drop'``; ``other_class``: categories left out by ``metainfo``), clipped ones
    in ``num_clipped``; all are logged. ``metainfo`` holds ``classes``, ``palette`` and, if
    a kept category has keypoints, ``keypoint_names``, ``skeleton`` (0-based pairs; COCO's
    json is 1-based) and ``flip_pairs``.
    """

    def __init__(
        self,
        ann_file: str,
        pipeline: Sequence[dict | Callable] = (),
        data_prefix: dict | None = None,
        filter_empty_gt: bool = True,
        min_size: int = 0,
        seg_suffix: str = ".png",
        depth_suffix: str = ".png",
        check_images: bool = True,
        on_error: str = "raise",
        bad_boxes: str = "clip",
        **base_args,
    ) -> None:
        data_prefix = dict(data_prefix or dict(img=""))
        unknown = set(data_prefix) - {"img", "seg", "depth"}
        if unknown:
            raise ValueError(f"data_prefix keys must be img / seg / depth, got {sorted(unknown)}")
        if bad_boxes not in BAD_BOXES:
            raise ValueError(f"bad_boxes must be one of {BAD_BOXES}, got {bad_boxes!r}")
        data_prefix.setdefault("img", "")
        self.bad_boxes = bad_boxes
        self.filter_empty_gt = filter_empty_gt
        self.min_size = min_size
        self.seg_suffix = seg_suffix
        self.depth_suffix = depth_suffix
        self.check_images = check_images
        self.num_skipped: dict[str, int] = {}
        self.num_clipped = 0
        self.num_invalid: dict[str, int] = {"image": 0, "annotation": 0, "image_file": 0}
        self._invalid_examples: list[str] = []
        super().__init__(
            pipeline, on_error, ann_file=ann_file, data_prefix=data_prefix, **base_args
        )

    # ---- loading -------------------------------------------------------------------------
    def _invalid(self, err: CocoFormatError) -> None:
        """Raise ``err`` or, with ``on_error='skip'``, count it (the entry is left out)."""
        if self.on_error == "raise":
            raise err
        self.num_invalid[err.kind] = self.num_invalid.get(err.kind, 0) + 1
        if len(self._invalid_examples) < 5:
            self._invalid_examples.append(str(err))

    def load_data_list(self) -> list[dict]:
        path = self.ann_file
        self.num_skipped = {"degenerate_box": 0, "outside_image": 0, "other_class": 0}
        self.num_clipped = 0
        self.num_invalid = {"image": 0, "annotation": 0, "image_file": 0}
        self._invalid_examples = []
        coco = load_coco_json(path)
        categories = check_categories(coco["categories"], path)
        cat2label = self._set_class_metainfo(categories, path)
        num_kps = len(self._metainfo.get("keypoint_names", ()))
        images: dict = {}  # id -> (file_name, height, width)
        valid_images, skipped_ids = [], set()
        for i, img in enumerate(coco["images"]):
            try:
                checked = check_image(img, i, path)
                if img["id"] in images:
                    raise CocoFormatError(
                        f"{path}: image id {img['id']!r} (images[{i}]) is used by two images",
                        "image",
                    )
            except CocoFormatError as err:
                self._invalid(err)
                if isinstance(img, dict) and isinstance(img.get("id"), (int, str)):
                    skipped_ids.add(img["id"])  # its annotations go with it, uncounted
                continue
            images[img["id"]] = checked
            valid_images.append(img)
        anns_by_image = defaultdict(list)
        for i, ann in enumerate(coco["annotations"]):
            if skipped_ids and isinstance(ann, dict) and _hashable(ann.get("image_id")):
                if ann["image_id"] in skipped_ids and ann["image_id"] not in images:
                    continue
            try:
                check_annotation(ann, i, path, images, categories, num_kps)
            except CocoFormatError as err:
                self._invalid(err)
                continue
            anns_by_image[ann["image_id"]].append(ann)
        data_list = [
            self._parse_image(img, anns_by_image[img["id"]], cat2label, num_kps, path)
            for img in valid_images
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
        """One checked COCO image entry + its checked annotations -> the per-sample dict."""
        file_name, h, w = img["file_name"], int(img["height"]), int(img["width"])
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
            box = self._box(ann, h, w, path)
            if box is None:
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

    def _box(self, ann: dict, h: int, w: int, path: str) -> list[float] | None:
        """xyxy box of a checked annotation inside an (h, w) image, or None if dropped
        (counted); raises with ``bad_boxes='raise'`` (see the class doc)."""
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        box = [max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))]
        if bw <= 0 or bh <= 0:
            problem, counter = f"has zero or negative size (w={bw:g}, h={bh:g})", "degenerate_box"
        elif box[2] <= box[0] or box[3] <= box[1]:
            problem, counter = "lies entirely outside its image", "outside_image"
        elif box != [x, y, x + bw, y + bh]:
            if self.bad_boxes == "clip":
                self.num_clipped += 1
                return box
            problem, counter = "sticks out of its image", "outside_image"
        else:
            return box
        if self.bad_boxes == "raise":
            raise CocoFormatError(
                f"{path}: annotation id {ann.get('id')}: 'bbox' {ann['bbox']} {problem} "
                f"(image width {w}, height {h}); bad_boxes='clip' or 'drop' would drop it",
                "annotation",
            )
        self.num_skipped[counter] += 1
        return None

    def _report(self, data_list: list[dict]) -> None:
        """Log dropped / clipped boxes and skipped entries; with ``check_images``, raise naming
        the missing image files (``on_error='skip'``: drop them from ``data_list``, logged)."""
        skipped = getattr(self, "num_skipped", {})
        if skipped.get("degenerate_box") or skipped.get("outside_image"):
            print_log(
                f"{self.ann_file}: skipped {skipped.get('degenerate_box', 0)} boxes with "
                f"zero/negative size and {skipped.get('outside_image', 0)} boxes outside "
                f"their image",
                logger="current",
                level=logging.WARNING,
            )
        if getattr(self, "num_clipped", 0):
            print_log(
                f"{self.ann_file}: clipped {self.num_clipped} boxes to their image",
                logger="current",
                level=logging.INFO,
            )
        if self.check_images:
            missing = [d["img_path"] for d in data_list if not os.path.isfile(d["img_path"])]
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                message = (
                    f"{self.ann_file}: {len(missing)} of {len(data_list)} image files not "
                    f"found: {shown}"
                )
                if self.on_error == "raise":
                    raise FileNotFoundError(message + " (on_error='skip' would skip them)")
                gone = set(missing)
                data_list[:] = [d for d in data_list if d["img_path"] not in gone]
                self.num_invalid["image_file"] = len(missing)
                self._invalid_examples.append(message)
        invalid = self.num_invalid
        if any(invalid.values()):
            print_log(
                f"{self.ann_file}: on_error='skip' left out {invalid['image']} image entries, "
                f"{invalid['annotation']} annotations and {invalid['image_file']} missing "
                f"image files. First problems: " + " | ".join(self._invalid_examples),
                logger="current",
                level=logging.WARNING,
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

    def get_cat_ids(self, idx: int) -> list[int]:
        """Labels (0..C-1) present in sample ``idx`` (for class-balanced sampling)."""
        return [inst["bbox_label"] for inst in self.get_data_info(idx)["instances"]]
