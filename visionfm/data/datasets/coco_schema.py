"""Reading and checking COCO json files; every error names the file, the entry and the key.

``load_coco_json`` checks the file and its top level; ``check_categories``,
``check_image`` and ``check_annotation`` check one entry each and raise
:class:`CocoFormatError` (a ``ValueError``) saying what was expected, e.g.::

    data/ann.json: annotation id 345 (annotations[12]): 'bbox' must be [x, y, w, h] with 4
    finite numbers, got [1, 2, 'a', 4]

so that a malformed file fails where it is read, never as a ``KeyError`` or ``TypeError``
deep inside a transform or a DataLoader worker. ``CocoFormatError.kind`` tells whether a
single entry is at fault (``'image'`` / ``'annotation'``: a dataset may skip it) or the
file as a whole (``'file'``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

__all__ = [
    "CocoFormatError",
    "check_annotation",
    "check_categories",
    "check_image",
    "load_coco_json",
]

_REQUIRED_KEYS = ("images", "annotations", "categories")


class CocoFormatError(ValueError):
    """A COCO json that does not follow the format (see the module doc).

    ``kind``: 'file' (the file or its categories), 'image' or 'annotation' (one entry).
    """

    def __init__(self, message: str, kind: str = "file") -> None:
        super().__init__(message)
        self.kind = kind


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(v: Any, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_coco_json(path: str) -> dict:
    """Read a COCO json; errors name the file and what is wrong with it.

    Raises FileNotFoundError (missing), OSError (unreadable) or :class:`CocoFormatError`
    (empty, not JSON, top level not an object with 'images' / 'annotations' / 'categories'
    lists).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise OSError(f"cannot read annotation file {path}: {e}") from e
    if not text.strip():
        raise CocoFormatError(f"annotation file {path} is empty (expected a COCO json object)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CocoFormatError(f"annotation file {path} is not valid JSON: {e}") from e
    except RecursionError as e:
        raise CocoFormatError(f"annotation file {path} is nested too deeply") from e
    if not isinstance(data, dict):
        raise CocoFormatError(
            f"{path} is not a COCO annotation file: top level is a {type(data).__name__}"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise CocoFormatError(
            f"{path} is not a COCO annotation file: missing key(s) {missing} "
            f"(has {sorted(map(str, data))[:20]})"
        )
    for key in _REQUIRED_KEYS:
        if not isinstance(data[key], list):
            raise CocoFormatError(f"{path}: {key!r} must be a list, got {type(data[key]).__name__}")
    return data


def check_categories(categories: list, path: str) -> dict[int, dict]:
    """``{id: category}`` after checking every entry (id int, name str, unique ids; optional
    ``keypoints`` list of names and 1-based ``skeleton`` pairs). Raises CocoFormatError."""
    if not categories:
        raise CocoFormatError(f"{path}: 'categories' is empty (a dataset needs classes)")
    by_id: dict[int, dict] = {}
    for i, cat in enumerate(categories):
        where = f"{path}: categories[{i}]"
        if not isinstance(cat, dict):
            raise CocoFormatError(f"{where} must be an object, got {_short(cat)}")
        if not _is_int(cat.get("id")):
            raise CocoFormatError(f"{where}: 'id' must be an integer, got {_short(cat.get('id'))}")
        if not isinstance(cat.get("name"), str):
            raise CocoFormatError(
                f"{where}: 'name' must be a string, got {_short(cat.get('name'))}"
            )
        if cat["id"] in by_id:
            raise CocoFormatError(f"{where}: 'id' {cat['id']} is used by two categories")
        kps = cat.get("keypoints")
        if kps is not None and not (isinstance(kps, list) and all(isinstance(k, str) for k in kps)):
            raise CocoFormatError(
                f"{where}: 'keypoints' must be a list of names, got {_short(kps)}"
            )
        skeleton = cat.get("skeleton", [])
        k = len(kps or ())
        if not isinstance(skeleton, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(_is_int(j) and 1 <= j <= k for j in p)
            for p in skeleton
        ):
            raise CocoFormatError(
                f"{where}: 'skeleton' must be a list of [i, j] keypoint numbers in 1..{k}, "
                f"got {_short(skeleton)}"
            )
        by_id[cat["id"]] = cat
    return by_id


def check_image(img: Any, index: int, path: str) -> tuple[str, int, int]:
    """``(file_name, height, width)`` of ``images[index]``; raises CocoFormatError(kind='image')
    unless it has an int/str ``id``, a non-empty ``file_name`` and positive integer sizes."""
    if not isinstance(img, dict):
        raise CocoFormatError(
            f"{path}: images[{index}] must be an object, got {_short(img)}", "image"
        )
    where = f"{path}: image id {img.get('id')!r} (images[{index}])"
    if not (_is_int(img.get("id")) or isinstance(img.get("id"), str)):
        raise CocoFormatError(f"{where}: 'id' must be an integer or a string", "image")
    if not isinstance(img.get("file_name"), str) or not img["file_name"]:
        raise CocoFormatError(
            f"{where}: 'file_name' must be a non-empty string, got {_short(img.get('file_name'))}",
            "image",
        )
    sizes = []
    for key in ("height", "width"):
        value = img.get(key)
        if not (_is_number(value) and value == int(value) and value > 0):
            raise CocoFormatError(
                f"{where}: {key!r} must be a positive integer, got {_short(value)}", "image"
            )
        sizes.append(int(value))
    return img["file_name"], sizes[0], sizes[1]


def _check_segmentation(segm: Any, height: int, width: int, where: str) -> None:
    if isinstance(segm, list):
        for poly in segm:
            if not (isinstance(poly, list) and len(poly) % 2 == 0 and all(map(_is_number, poly))):
                raise CocoFormatError(
                    f"{where}: 'segmentation' polygons must be lists of x, y numbers (even "
                    f"length), got {_short(poly)}",
                    "annotation",
                )
        return
    if isinstance(segm, dict):
        size, counts = segm.get("size"), segm.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(map(_is_int, size))):
            raise CocoFormatError(
                f"{where}: RLE 'segmentation' needs 'size' [height, width], got {_short(size)}",
                "annotation",
            )
        if list(size) != [height, width]:
            raise CocoFormatError(
                f"{where}: 'segmentation' mask size {size} differs from its image's "
                f"[height, width] = {[height, width]}",
                "annotation",
            )
        ok = isinstance(counts, str) or (
            isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts)
        )
        if not ok:
            raise CocoFormatError(
                f"{where}: RLE 'counts' must be a string or a list of non-negative integers, "
                f"got {_short(counts)}",
                "annotation",
            )
        return
    raise CocoFormatError(
        f"{where}: 'segmentation' must be polygons (list) or RLE (dict), got {_short(segm)}",
        "annotation",
    )


def check_annotation(
    ann: Any,
    index: int,
    path: str,
    images: dict[Any, tuple[str, int, int]],
    categories: dict[int, dict],
    num_keypoints: int,
) -> None:
    """Check ``annotations[index]`` against the checked ``images`` (id -> (file, h, w)) and
    ``categories``; raises CocoFormatError(kind='annotation') naming the key at fault.

    Needed: known ``image_id`` and ``category_id``, ``bbox`` [x, y, w, h] of finite numbers.
    Optional: ``iscrowd`` 0/1, ``segmentation`` (polygons / RLE of the image's size),
    ``keypoints`` (3 * ``num_keypoints`` numbers when the dataset has keypoints).
    """
    if not isinstance(ann, dict):
        raise CocoFormatError(
            f"{path}: annotations[{index}] must be an object, got {_short(ann)}", "annotation"
        )
    where = (
        f"{path}: annotation id {ann['id']}"
        if _is_int(ann.get("id")) or isinstance(ann.get("id"), str)
        else f"{path}: annotations[{index}] (no 'id')"
    )
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    try:  # true / false are no ids, although they compare equal to 1 / 0
        image = None if isinstance(image_id, bool) else images.get(image_id)
        known_category = not isinstance(category_id, bool) and category_id in categories
    except TypeError:  # an unhashable id (list, dict)
        image, known_category = None, False
    if image is None:
        raise CocoFormatError(
            f"{where} refers to unknown image_id {_short(image_id)}", "annotation"
        )
    if not known_category:
        raise CocoFormatError(
            f"{where} refers to unknown category_id {_short(category_id)} "
            f"(known: {sorted(categories)[:20]})",
            "annotation",
        )
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
        raise CocoFormatError(
            f"{where}: 'bbox' must be [x, y, w, h] with 4 finite numbers, got {_short(bbox)}",
            "annotation",
        )
    if ann.get("iscrowd", 0) not in (0, 1):  # True / False compare equal to 1 / 0
        raise CocoFormatError(
            f"{where}: 'iscrowd' must be 0 or 1, got {_short(ann.get('iscrowd'))}", "annotation"
        )
    if ann.get("segmentation"):
        _check_segmentation(ann["segmentation"], image[1], image[2], where)
    kps = ann.get("keypoints")
    if num_keypoints and kps:
        if not (isinstance(kps, list) and all(map(_is_number, kps))):
            raise CocoFormatError(
                f"{where}: 'keypoints' must be a list of numbers, got {_short(kps)}", "annotation"
            )
        if len(kps) != 3 * num_keypoints:
            raise CocoFormatError(
                f"{where}: 'keypoints' has {len(kps)} numbers, expected 3 * {num_keypoints} "
                f"= {3 * num_keypoints} (x, y, visibility per keypoint of the category)",
                "annotation",
            )
