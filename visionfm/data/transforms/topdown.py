"""Top-down pose transforms: cut one person out of the image by an affine warp.

A top-down sample (``CocoKeypointDataset``) carries the person's box ``bbox`` (4,) xyxy in
ORIGINAL pixels (ground truth in training, a detection at test time), ``bbox_score`` and,
after ``LoadAnnotations(with_keypoints=True)``, ``gt_keypoints`` (1, K, 3). The transforms::

    GetBBoxCenterScale   bbox -> bbox_center (2,), bbox_scale (2,) = (w, h) * padding
    TopDownRandomFlip    mirror image + annotations + bbox_center (training)
    RandomHalfBody       box around the upper or the lower body's keypoints (training)
    RandomBBoxTransform  random shift / scale / rotation of the box (training)
    TopDownAffine        widen the box to the input's aspect ratio, warp to input_size
    PackPoseInputs       PackInputs + the keys the pose head and metric read

``TopDownAffine`` composes its map into ``homography_matrix`` (original -> crop, continuous
pixel coordinates, see ``DataSample``), so predictions made on the crop go back to the
original image with ``visionfm.ops.geometry.points_to_original``. The warp samples output
pixel centres exactly: a point at ``p`` in the image lands at ``M p`` in the crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from visionfm.registry import TRANSFORMS

from .formatting import DEFAULT_META_KEYS, PackInputs
from .geometric import RandomFlip, update_homography

__all__ = [
    "COCO_LOWER_BODY",
    "COCO_UPPER_BODY",
    "GetBBoxCenterScale",
    "PackPoseInputs",
    "RandomBBoxTransform",
    "RandomHalfBody",
    "TOPDOWN_META_KEYS",
    "TopDownAffine",
    "TopDownRandomFlip",
    "bbox_center_scale",
    "crop_matrix",
    "fix_aspect_ratio",
]

COCO_UPPER_BODY = tuple(range(11))  # nose, eyes, ears, shoulders, elbows, wrists
COCO_LOWER_BODY = tuple(range(11, 17))  # hips, knees, ankles
TOPDOWN_META_KEYS = (*DEFAULT_META_KEYS, "bbox", "bbox_score", "bbox_label", "input_center",
                     "input_scale", "id")  # fmt: skip

_INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def bbox_center_scale(bbox: np.ndarray, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """(4,) xyxy -> centre (2,) and size (2,) = (w, h) * ``padding``, float32."""
    bbox = np.asarray(bbox, np.float32).reshape(4)
    center = (bbox[:2] + bbox[2:]) / 2
    scale = (bbox[2:] - bbox[:2]) * padding
    return center, scale


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """(2,) (w, h) -> (2,) widened (never shrunk) to ``w / h == aspect_ratio``."""
    w, h = float(scale[0]), float(scale[1])
    if w > h * aspect_ratio:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return np.array([w, h], np.float32)


def crop_matrix(
    center: Sequence[float],
    scale: Sequence[float],
    rotation: float,
    output_size: Sequence[int],
) -> np.ndarray:
    """(3, 3) float64 affine, continuous pixel coordinates: image -> crop.

    The box of size ``scale`` (w, h) centred at ``center`` (x, y) fills the ``output_size``
    (w, h) crop, which shows the content turned clockwise (as displayed, y down) by
    ``rotation`` degrees about the centre; ``scale`` must already have the output's aspect
    ratio.
    """
    out_w, out_h = output_size
    a = np.deg2rad(rotation)
    cos, sin = np.cos(a), np.sin(a)
    s = out_w / float(scale[0])
    to_origin = np.array([[1, 0, -center[0]], [0, 1, -center[1]], [0, 0, 1]], np.float64)
    rotate = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], np.float64)
    to_crop = np.array([[s, 0, out_w / 2], [0, s, out_h / 2], [0, 0, 1]], np.float64)
    return to_crop @ rotate @ to_origin


def _apply(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(3, 3) affine on (..., 2) points."""
    return xy @ matrix[:2, :2].T + matrix[:2, 2]


@TRANSFORMS.register_module()
class GetBBoxCenterScale:
    """``results['bbox']`` (4,) xyxy -> ``bbox_center`` (2,) and ``bbox_scale`` (2,) (w, h),
    enlarged by ``padding`` (1.25: some context around the person)."""

    def __init__(self, padding: float = 1.25) -> None:
        self.padding = padding

    def __call__(self, results: dict) -> dict:
        if "bbox" not in results:
            raise KeyError(
                "GetBBoxCenterScale needs results['bbox'] (the person box, xyxy): use a "
                "top-down dataset such as CocoKeypointDataset, or pass bbox= with the image"
            )
        results["bbox_center"], results["bbox_scale"] = bbox_center_scale(
            results["bbox"], self.padding
        )
        return results

    def __repr__(self) -> str:
        return f"GetBBoxCenterScale(padding={self.padding})"


@TRANSFORMS.register_module()
class TopDownRandomFlip(RandomFlip):
    """:class:`RandomFlip` that also mirrors ``bbox_center`` (run after
    ``GetBBoxCenterScale``); ``flip_pairs`` swaps left / right keypoints."""

    def flip(self, results: dict) -> dict:
        w = results["img"].shape[1]
        super().flip(results)
        if "bbox_center" in results:
            center = results["bbox_center"].copy()
            center[0] = w - center[0]
            results["bbox_center"] = center
        return results

    def __repr__(self) -> str:
        return f"TopDownRandomFlip(prob={self.prob}, flip_pairs={self.flip_pairs})"


@TRANSFORMS.register_module()
class RandomHalfBody:
    """With probability ``prob``, replace the box by one around the labelled keypoints of the
    upper or the lower body (chosen at random; the other half when the chosen one has too
    few), enlarged by ``padding``. Only for persons with more than ``min_total_keypoints``
    labelled keypoints; needs ``gt_keypoints`` (1, K, 3). COCO body halves by default.
    """

    def __init__(
        self,
        min_total_keypoints: int = 8,
        min_half_keypoints: int = 2,
        padding: float = 1.5,
        prob: float = 0.3,
        upper_body_ids: Sequence[int] = COCO_UPPER_BODY,
        lower_body_ids: Sequence[int] = COCO_LOWER_BODY,
    ) -> None:
        self.min_total_keypoints = min_total_keypoints
        self.min_half_keypoints = min_half_keypoints
        self.padding = padding
        self.prob = prob
        self.halves = (tuple(upper_body_ids), tuple(lower_body_ids))

    def __call__(self, results: dict) -> dict:
        kps = results.get("gt_keypoints")
        if kps is None or len(kps) != 1 or np.random.rand() >= self.prob:
            return results
        labelled = kps[0, :, 2] > 0
        if labelled.sum() <= self.min_total_keypoints:
            return results
        order = [0, 1] if np.random.rand() < 0.5 else [1, 0]
        for half in (self.halves[i] for i in order):
            ids = [i for i in half if i < len(labelled) and labelled[i]]
            if len(ids) >= self.min_half_keypoints:
                xy = kps[0, ids, :2]
                lo, hi = xy.min(0), xy.max(0)
                results["bbox_center"] = ((lo + hi) / 2).astype(np.float32)
                results["bbox_scale"] = ((hi - lo) * self.padding).astype(np.float32)
                break
        return results

    def __repr__(self) -> str:
        return f"RandomHalfBody(prob={self.prob}, padding={self.padding})"


@TRANSFORMS.register_module()
class RandomBBoxTransform:
    """Random box jitter before the crop (training).

    - shift: with ``shift_prob``, move the centre by U(-f, f) * (w, h), f = ``shift_factor``;
    - scale: with ``scale_prob``, multiply (w, h) by U(``scale_factor``) (> 1 zooms out);
    - rotation: with ``rotate_prob``, ``bbox_rotation`` = U(-r, r) degrees, r =
      ``rotate_factor``; otherwise 0.
    """

    def __init__(
        self,
        shift_factor: float = 0.16,
        shift_prob: float = 0.3,
        scale_factor: tuple[float, float] = (0.75, 1.25),
        scale_prob: float = 1.0,
        rotate_factor: float = 40.0,
        rotate_prob: float = 0.6,
    ) -> None:
        self.shift_factor, self.shift_prob = shift_factor, shift_prob
        self.scale_factor, self.scale_prob = tuple(scale_factor), scale_prob
        self.rotate_factor, self.rotate_prob = rotate_factor, rotate_prob

    def __call__(self, results: dict) -> dict:
        center = np.asarray(results["bbox_center"], np.float32).copy()
        scale = np.asarray(results["bbox_scale"], np.float32).copy()
        if np.random.rand() < self.shift_prob:
            center += np.random.uniform(-1, 1, 2).astype(np.float32) * self.shift_factor * scale
        if np.random.rand() < self.scale_prob:
            scale *= np.float32(np.random.uniform(*self.scale_factor))
        rotation = 0.0
        if np.random.rand() < self.rotate_prob:
            rotation = float(np.random.uniform(-self.rotate_factor, self.rotate_factor))
        results.update(bbox_center=center, bbox_scale=scale, bbox_rotation=rotation)
        return results

    def __repr__(self) -> str:
        return (
            f"RandomBBoxTransform(shift={self.shift_factor}@{self.shift_prob}, scale="
            f"{self.scale_factor}@{self.scale_prob}, rotate={self.rotate_factor}@{self.rotate_prob})"
        )


@TRANSFORMS.register_module()
class TopDownAffine:
    """Warp the box (``bbox_center``, ``bbox_scale``, ``bbox_rotation``) to an
    ``input_size`` (w, h) crop.

    The box is first widened to the crop's aspect ratio (never shrunk). ``img`` is resampled
    (bilinear, black outside the image); ``gt_keypoints`` (x, y) and ``gt_bboxes`` (bounding
    box of the mapped corners, clipped to the crop) follow; visibility is kept (the heatmap
    codec ignores keypoints far outside the crop). Writes ``img_shape`` (h, w),
    ``input_center`` / ``input_scale`` (the widened box) and composes the map into
    ``homography_matrix``.
    """

    def __init__(self, input_size: Sequence[int], interpolation: str = "bilinear") -> None:
        if len(input_size) != 2 or min(input_size) < 2:
            raise ValueError(f"input_size must be (w, h) with sides >= 2, got {input_size}")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.interpolation = interpolation

    def __call__(self, results: dict) -> dict:
        if "bbox_center" not in results:
            raise KeyError(
                "TopDownAffine needs bbox_center / bbox_scale: put GetBBoxCenterScale first"
            )
        for key in ("gt_masks", "gt_sem_seg", "gt_depth"):
            if key in results:
                raise ValueError(
                    f"TopDownAffine does not warp {key}; load only boxes and keypoints "
                    "(LoadAnnotations(with_keypoints=True))"
                )
        w, h = self.input_size
        scale = fix_aspect_ratio(results["bbox_scale"], w / h)
        matrix = crop_matrix(
            results["bbox_center"], scale, results.get("bbox_rotation", 0.0), (w, h)
        )
        # OpenCV maps pixel indices (centres at integers): shift by half a pixel both sides
        half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
        index_matrix = np.linalg.inv(half) @ matrix @ half
        results["img"] = cv2.warpAffine(
            results["img"],
            index_matrix[:2],
            (w, h),
            flags=_INTERPOLATIONS[self.interpolation],
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        if "gt_keypoints" in results:
            kps = results["gt_keypoints"].copy()
            kps[..., :2] = _apply(matrix, kps[..., :2].astype(np.float64))
            kps[kps[..., 2] <= 0] = 0.0  # unlabelled keypoints stay all-zero
            results["gt_keypoints"] = kps.astype(np.float32)
        if "gt_bboxes" in results and len(results["gt_bboxes"]):
            b = results["gt_bboxes"].astype(np.float64)
            corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], 1)
            xy = _apply(matrix, corners)  # (N, 4, 2)
            boxes = np.concatenate([xy.min(1), xy.max(1)], -1)
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
            results["gt_bboxes"] = boxes.astype(np.float32)
        results.update(img_shape=(h, w), input_center=results["bbox_center"], input_scale=scale)
        update_homography(results, matrix)
        return results

    def __repr__(self) -> str:
        return f"TopDownAffine(input_size={self.input_size}, interpolation={self.interpolation!r})"


@TRANSFORMS.register_module()
class PackPoseInputs(PackInputs):
    """:class:`PackInputs` whose metainfo also keeps the top-down keys (``TOPDOWN_META_KEYS``:
    ``bbox``, ``bbox_score``, ``bbox_label``, ``input_center``, ``input_scale``, ``id``)."""

    def __init__(self, meta_keys: Sequence[str] = TOPDOWN_META_KEYS) -> None:
        super().__init__(meta_keys=tuple(meta_keys))
