"""``RandomCrop``: crop image and annotations, clipping boxes and hiding keypoints that leave.

Per-instance keys kept aligned when instances are dropped: ``gt_bboxes`` (N, 4),
``gt_labels`` (N,), ``gt_ignore_flags`` (N,), ``gt_masks`` (N, H, W), ``gt_keypoints``
(N, K, 3).

Grounding samples (``gt_labels`` index ``phrases``, see ``DataSample``): in a free-text
caption (``prompt_type='expression'``) a phrase that had boxes before and has none after
(its referent was cut away) is dropped from ``phrases`` / ``phrase_spans`` and the labels
are re-indexed; a class name of a class prompt stays, as a negative (the class is absent
from the crop).
"""

from __future__ import annotations

import logging

import numpy as np
from mmengine.logging import print_log

from visionfm.registry import TRANSFORMS

from .geometric import update_homography

__all__ = ["RandomCrop", "INSTANCE_KEYS", "select_instances"]

INSTANCE_KEYS = ("gt_bboxes", "gt_labels", "gt_ignore_flags", "gt_masks", "gt_keypoints")


def select_instances(results: dict, keep: np.ndarray) -> int:
    """Keep the instances where ``keep`` (N,) bool is True in every per-instance key; drop
    the phrases of an expression sample left without boxes (see the module doc).

    Returns the number of phrases dropped.
    """
    before = results.get("gt_labels")
    for key in INSTANCE_KEYS:
        if key in results:
            results[key] = results[key][keep]
    if results.get("prompt_type") != "expression" or before is None or "phrases" not in results:
        return 0
    labels = results["gt_labels"]
    lost = set(before.tolist()) - set(labels.tolist())
    if not lost:
        return 0
    kept = [i for i in range(len(results["phrases"])) if i not in lost]
    new_index = np.full(len(results["phrases"]), -1, np.int64)
    new_index[kept] = np.arange(len(kept))
    results["gt_labels"] = new_index[labels]
    for key in ("phrases", "phrase_spans"):
        if key in results:
            results[key] = [results[key][i] for i in kept]
    return len(lost)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) float32 tight xyxy boxes; an empty mask gives zeros."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


@TRANSFORMS.register_module()
class RandomCrop:
    """Crop a random window; a crop larger than the image is clipped to the image.

    Args:
        crop_size: meaning set by ``crop_type``:
            'absolute': (w, h) pixels;
            'absolute_range': (min, max) pixels, w and h drawn independently in
            [min, min(max, W or H)] (DETR's RandomSizeCrop);
            'relative': (w, h) fractions of the image;
            'relative_range': (w, h) minimum fractions, each drawn uniformly in [f, 1].
        allow_negative_crop: accept a crop that keeps none of the (non-ignored) boxes. When
            False, up to ``max_tries`` windows are drawn and then the sample is dropped
            (the transform returns None, so the dataset fetches another image).
        drop_outside_boxes: drop instances whose clipped box is empty (outside the crop).
        recompute_bbox: set boxes to the tight box of the cropped masks (needs ``gt_masks``).

    Boxes are shifted and clipped to the window; keypoints are shifted, and those outside the
    window get visibility 0. Phrases of a referring / grounding caption whose boxes were all
    cut away are dropped (see the module doc) and counted in ``num_dropped_phrases`` (per
    process; logged at the 1st, 10th, 100th ... drop, and shown by ``repr``).
    """

    CROP_TYPES = ("absolute", "absolute_range", "relative", "relative_range")

    def __init__(
        self,
        crop_size: tuple[float, float],
        crop_type: str = "absolute",
        allow_negative_crop: bool = False,
        drop_outside_boxes: bool = True,
        recompute_bbox: bool = False,
        max_tries: int = 10,
    ) -> None:
        if crop_type not in self.CROP_TYPES:
            raise ValueError(f"crop_type must be one of {self.CROP_TYPES}, got {crop_type!r}")
        if crop_type.startswith("relative") and not all(0 < s <= 1 for s in crop_size):
            raise ValueError(f"relative crop_size must be in (0, 1], got {crop_size}")
        if crop_type.startswith("absolute") and not all(s >= 1 for s in crop_size):
            raise ValueError(f"absolute crop_size must be >= 1 pixel, got {crop_size}")
        self.crop_size = tuple(crop_size)
        self.crop_type = crop_type
        self.allow_negative_crop = allow_negative_crop
        self.drop_outside_boxes = drop_outside_boxes
        self.recompute_bbox = recompute_bbox
        self.max_tries = max_tries
        self.num_dropped_phrases = 0

    def _draw_size(self, h: int, w: int) -> tuple[int, int]:
        """(crop_h, crop_w) for an (h, w) image, at most the image."""
        a, b = self.crop_size
        if self.crop_type == "absolute":
            ch, cw = int(b), int(a)
        elif self.crop_type == "absolute_range":
            ch = np.random.randint(int(a), max(int(a), min(int(b), h)) + 1)
            cw = np.random.randint(int(a), max(int(a), min(int(b), w)) + 1)
        elif self.crop_type == "relative":
            ch, cw = int(h * b + 0.5), int(w * a + 0.5)
        else:
            ch = int(h * np.random.uniform(b, 1.0) + 0.5)
            cw = int(w * np.random.uniform(a, 1.0) + 0.5)
        return min(max(ch, 1), h), min(max(cw, 1), w)

    def __call__(self, results: dict) -> dict | None:
        h, w = results["img"].shape[:2]
        ch, cw = self._draw_size(h, w)
        boxes = results.get("gt_bboxes", np.zeros((0, 4), np.float32))
        ignore = results.get("gt_ignore_flags", np.zeros(len(boxes), bool))
        must_keep_one = not self.allow_negative_crop and bool((~ignore).any())
        for _ in range(max(self.max_tries, 1)):
            y0 = np.random.randint(0, h - ch + 1)
            x0 = np.random.randint(0, w - cw + 1)
            clipped, inside = self._crop_boxes(boxes, x0, y0, cw, ch)
            if not must_keep_one or (inside & ~ignore).any():
                break
        else:
            return None
        self._crop(results, x0, y0, cw, ch, clipped, inside)
        return results

    @staticmethod
    def _crop_boxes(
        boxes: np.ndarray, x0: int, y0: int, cw: int, ch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Shift + clip (N, 4) boxes to the window; also (N,) bool 'still has area'."""
        clipped = boxes - np.array([x0, y0, x0, y0], dtype=np.float32)
        clipped[:, 0::2] = clipped[:, 0::2].clip(0, cw)
        clipped[:, 1::2] = clipped[:, 1::2].clip(0, ch)
        inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        return clipped, inside

    def _crop(
        self,
        results: dict,
        x0: int,
        y0: int,
        cw: int,
        ch: int,
        clipped: np.ndarray,
        inside: np.ndarray,
    ) -> None:
        """Cut every spatial key to the window; ``clipped`` (N, 4) / ``inside`` (N,) from
        ``_crop_boxes``."""
        window = (slice(y0, y0 + ch), slice(x0, x0 + cw))
        results["img"] = np.ascontiguousarray(results["img"][window])
        for key in ("gt_sem_seg", "gt_depth"):
            if key in results:
                results[key] = np.ascontiguousarray(results[key][window])
        if "gt_masks" in results:
            results["gt_masks"] = np.ascontiguousarray(results["gt_masks"][(slice(None), *window)])
        if "gt_keypoints" in results:
            kps = results["gt_keypoints"].copy()
            kps[..., 0] -= x0
            kps[..., 1] -= y0
            out = (kps[..., 0] < 0) | (kps[..., 0] >= cw) | (kps[..., 1] < 0) | (kps[..., 1] >= ch)
            kps[..., 2][out] = 0
            results["gt_keypoints"] = kps
        if "gt_bboxes" in results:
            results["gt_bboxes"] = clipped
            if self.recompute_bbox and "gt_masks" in results:
                results["gt_bboxes"] = masks_to_boxes(results["gt_masks"])
                b = results["gt_bboxes"]
                inside = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
            if self.drop_outside_boxes:
                self._count_dropped(select_instances(results, inside), results)
        results["img_shape"] = (ch, cw)
        update_homography(results, np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float32))

    def _count_dropped(self, dropped: int, results: dict) -> None:
        """Add ``dropped`` phrases to the count; log when it passes a power of ten."""
        if not dropped:
            return
        before, self.num_dropped_phrases = (
            self.num_dropped_phrases,
            self.num_dropped_phrases + dropped,
        )
        if len(str(self.num_dropped_phrases)) > len(str(before)) or before == 0:
            print_log(
                f"RandomCrop: {self.num_dropped_phrases} phrases dropped so far by this process "
                f"because the crop cut away all their boxes (latest: {results.get('img_path')})",
                logger="current",
                level=logging.INFO,
            )

    def __repr__(self) -> str:
        return (
            f"RandomCrop(crop_size={self.crop_size}, crop_type={self.crop_type!r}, "
            f"allow_negative_crop={self.allow_negative_crop}, "
            f"drop_outside_boxes={self.drop_outside_boxes}, recompute_bbox={self.recompute_bbox}, "
            f"num_dropped_phrases={self.num_dropped_phrases})"
        )
