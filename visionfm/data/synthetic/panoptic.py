"""COCO panoptic annotations of the synthetic world (Kirillov et al., "Panoptic
Segmentation", CVPR 2019; the COCO panoptic format of 2018).

Written next to the other outputs by ``make_synthetic``::

    panoptic/{split}/000000.png          RGB, segment id = R + 256 G + 256^2 B, 0 = void
    annotations/panoptic_{split}.json    images, annotations (segments_info), categories

Categories: the five shape classes are things with their instance ids 1..5 (as in
``instances_{split}.json``); ``background`` (id 6, the pixels of no object) is the one
stuff class. Every image has one segment per object (its VISIBLE mask, the same pixels as
its instance annotation) and one background segment; the synthetic world has no void
pixels and no crowd regions.

Segment ids are deterministic: segment ``k`` of an image (objects in annotation order, then
the background) gets id ``segment_id(k)``, spread over the RGB cube so that the PNGs can be
looked at.
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils

from .world import CLASSES, coco_categories

__all__ = [
    "BACKGROUND_ID",
    "panoptic_categories",
    "panoptic_segments",
    "segment_id",
]

BACKGROUND_ID = len(CLASSES) + 1  # the stuff category: every pixel of no object
_RGB_CUBE = 256**3
_SPREAD = 2654435761  # a prime, coprime to 256^3 - 1: k -> id is one-to-one


def segment_id(k: int) -> int:
    """Id of the ``k``-th segment of an image (k >= 0): nonzero, distinct for distinct k."""
    return (k + 1) * _SPREAD % (_RGB_CUBE - 1) + 1


def _category_colour(category_id: int) -> list[int]:
    rng = np.random.default_rng([17, category_id])
    return [int(v) for v in rng.integers(40, 256, 3)]


def panoptic_categories() -> list[dict]:
    """COCO panoptic ``categories``: the five things (ids 1..5) and ``background`` (id 6)."""
    cats = [
        {
            "id": c["id"],
            "name": c["name"],
            "supercategory": c["supercategory"],
            "isthing": 1,
            "color": _category_colour(c["id"]),
        }
        for c in coco_categories()
    ]
    cats.append(
        {
            "id": BACKGROUND_ID,
            "name": "background",
            "supercategory": "background",
            "isthing": 0,
            "color": _category_colour(BACKGROUND_ID),
        }
    )
    return cats


def _segment_info(seg_id: int, category_id: int, mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": seg_id,
        "category_id": int(category_id),
        "iscrowd": 0,
        "bbox": [int(v) for v in mask_utils.toBbox(rle)],
        "area": int(mask.sum()),
    }


def panoptic_segments(masks: np.ndarray, category_ids: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """One image's panoptic PNG content and ``segments_info``.

    Args:
        masks: (N, H, W) bool disjoint visible object masks.
        category_ids: (N,) thing category ids (1..5).

    Returns:
        ``rgb`` (H, W, 3) uint8 with ``id = R + 256 G + 256^2 B``, and ``segments_info``:
        one dict per object (``id``, ``category_id``, ``iscrowd`` 0, ``bbox`` xywh, ``area``)
        then the background's (left out if objects cover the whole image).
    """
    if masks.ndim != 3 or len(masks) != len(category_ids):
        raise ValueError(
            f"masks must be (N, H, W) with one category id each, got {masks.shape} and "
            f"{len(category_ids)} ids"
        )
    height, width = masks.shape[1:]
    ids = np.zeros((height, width), np.int64)
    covered = np.zeros((height, width), bool)
    segments = []
    for k, (mask, category_id) in enumerate(zip(masks, category_ids)):
        if (covered & mask).any():
            raise ValueError(f"object masks {k} and an earlier one overlap: not a panoptic image")
        seg_id = segment_id(k)
        ids[mask] = seg_id
        covered |= mask
        segments.append(_segment_info(seg_id, category_id, mask))
    if not covered.all():
        seg_id = segment_id(len(masks))
        ids[~covered] = seg_id
        segments.append(_segment_info(seg_id, BACKGROUND_ID, ~covered))
    rgb = np.stack((ids % 256, ids // 256 % 256, ids // 65536), axis=-1).astype(np.uint8)
    return rgb, segments
