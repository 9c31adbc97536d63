"""Geometric transforms: flip and resize, applied alike to image, boxes, masks, keypoints, seg, depth.

Coordinates are continuous (pixel (i, j) covers ``[j, j+1) x [i, i+1)``, see ``DataSample``),
so one affine map moves boxes and keypoints: flip ``x' = W - x``, resize ``x' = x * sx``.
Nearest-neighbour resampling uses pixel centres (output pixel j reads input pixel
``floor((j + 0.5) * W / W')``), the same alignment as OpenCV's bilinear resize, so masks,
seg and depth stay on the image's content. Every transform also left-multiplies
``results['homography_matrix']`` (3, 3) (original -> current coordinates) by its own map.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvF

from visionfm.registry import TRANSFORMS
from visionfm.text.prompts import swap_left_right

__all__ = ["COCO_FLIP_PAIRS", "RandomFlip", "Resize", "RandomChoiceResize", "nearest_indices"]

# Left/right keypoint pairs of COCO's 17 person keypoints (eyes, ears, shoulders, elbows,
# wrists, hips, knees, ankles); index 0 (nose) maps to itself.
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

_INTERPOLATIONS = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


def update_homography(results: dict, matrix: np.ndarray) -> None:
    """Compose ``matrix`` (3, 3) after the transforms already recorded in ``results``."""
    previous = results.get("homography_matrix", np.eye(3, dtype=np.float32))
    results["homography_matrix"] = (matrix @ previous).astype(np.float32)


def nearest_indices(src_len: int, dst_len: int) -> np.ndarray:
    """(dst_len,) int source index of each output pixel for a centre-aligned nearest resize."""
    idx = np.floor((np.arange(dst_len) + 0.5) * (src_len / dst_len)).astype(np.int64)
    return np.clip(idx, 0, src_len - 1)


def _transformers_size(h: int, w: int, short: int, long: int) -> tuple[int, int]:
    """(new_h, new_w) of Hugging Face's ``get_size_with_aspect_ratio(shortest_edge=short,
    longest_edge=long)``: the short side to ``short`` unless the long side would pass
    ``long`` (then the short side is ``round(long * min / max)``); the long side floored."""
    small, large = float(min(h, w)), float(max(h, w))
    raw = None
    if large / small * short > long:
        raw = long * small / large
        short = int(round(raw))
    if min(h, w) == short:
        return h, w
    along = raw if raw is not None else short
    if w < h:
        return int(along * h / w), short
    return short, int(along * w / h)


def _flip_expression(results: dict) -> None:
    """Swap "left" / "right" in ``text`` and ``phrases``; move ``phrase_spans``."""
    results["text"], spans = swap_left_right(results["text"], results.get("phrase_spans", []))
    if "phrase_spans" in results:
        results["phrase_spans"] = spans
    if "phrases" in results:
        results["phrases"] = [swap_left_right(p, [])[0] for p in results["phrases"]]


@TRANSFORMS.register_module()
class RandomFlip:
    """Mirror left-right with probability ``prob``.

    Moves ``img``, ``gt_bboxes`` (x1' = W - x2), ``gt_masks``, ``gt_sem_seg``, ``gt_depth`` and
    ``gt_keypoints`` (x' = W - x, then left/right indices swapped by ``flip_pairs``: COCO's
    17-keypoint pairs by default; pass ``dataset.metainfo['flip_pairs']`` for other layouts,
    ``None`` for no swap). ``results['flip']`` toggles, so flipping twice reads False again.

    A free-text grounding caption (``prompt_type='expression'``) gets the words "left" and
    "right" swapped in ``text`` and ``phrases``, with ``phrase_spans`` moved to match; class
    prompts are left alone.
    """

    def __init__(
        self,
        prob: float = 0.5,
        flip_pairs: tuple[tuple[int, int], ...] | list | None = COCO_FLIP_PAIRS,
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.flip_pairs = [tuple(p) for p in flip_pairs] if flip_pairs else []

    def __call__(self, results: dict) -> dict:
        if np.random.rand() < self.prob:
            self.flip(results)
        return results

    def flip(self, results: dict) -> dict:
        """Flip ``results`` in place, unconditionally."""
        w = results["img"].shape[1]
        # .copy(), not np.ascontiguousarray: numpy calls a reversed axis of length 1
        # contiguous and keeps its negative stride, which torch.from_numpy refuses
        results["img"] = results["img"][:, ::-1].copy()
        if "gt_bboxes" in results:
            boxes = results["gt_bboxes"].copy()
            boxes[:, 0], boxes[:, 2] = (
                w - results["gt_bboxes"][:, 2],
                w - results["gt_bboxes"][:, 0],
            )
            results["gt_bboxes"] = boxes
        if "gt_masks" in results:
            results["gt_masks"] = results["gt_masks"][:, :, ::-1].copy()
        for key in ("gt_sem_seg", "gt_depth"):
            if key in results:
                results[key] = results[key][:, ::-1].copy()
        if "gt_keypoints" in results:
            results["gt_keypoints"] = self._flip_keypoints(results["gt_keypoints"], w)
        if results.get("prompt_type") == "expression" and "text" in results:
            _flip_expression(results)
        results["flip"] = not results.get("flip", False)
        results["flip_direction"] = "horizontal" if results["flip"] else None
        update_homography(results, np.array([[-1, 0, w], [0, 1, 0], [0, 0, 1]], np.float32))
        return results

    def _flip_keypoints(self, kps: np.ndarray, w: int) -> np.ndarray:
        """(N, K, 3) -> (N, K, 3) mirrored, left/right swapped."""
        kps = kps.copy()
        kps[..., 0] = w - kps[..., 0]
        if self.flip_pairs:
            k = kps.shape[1]
            if max(max(p) for p in self.flip_pairs) >= k:
                raise ValueError(
                    f"RandomFlip flip_pairs {self.flip_pairs} index keypoints beyond K={k}; "
                    f"pass flip_pairs=dataset.metainfo['flip_pairs'] (or None)"
                )
            order = np.arange(k)
            for a, b in self.flip_pairs:
                order[a], order[b] = b, a
            kps = kps[:, order]
        return kps

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob}, flip_pairs={self.flip_pairs})"


@TRANSFORMS.register_module()
class Resize:
    """Resize image and annotations to ``scale`` (w, h).

    Args:
        scale: (w, h). With ``keep_ratio`` the aspect ratio is kept and the image is scaled as
            large as possible with its long edge <= max(scale) and short edge <= min(scale)
            (so (1333, 800) suits landscape and portrait images alike); otherwise the output
            is exactly (w, h).
        keep_ratio: see ``scale``.
        interpolation: for the image: 'bilinear', 'bicubic', 'area' (OpenCV) or 'nearest'.
            Masks and sem seg always use nearest.
        depth_interpolation: 'nearest', or 'bilinear' that never blends with invalid (0)
            pixels: bilinear where all contributing pixels are valid, nearest elsewhere.
        rounding: how a kept-ratio size becomes whole pixels: 'nearest' (both sides
            rounded), or 'transformers' as Hugging Face's DETR-family image processors do
            (``size={"shortest_edge": min(scale), "longest_edge": max(scale)}``: the short
            side is rounded, the long side floored, an image whose short side already fits
            is left at its size).
        backend: the image's resampler: 'cv2' (OpenCV); 'torchvision': torchvision's
            antialiased resize of the uint8 image, which transformers' default (torchvision)
            DETR-family processors use; 'torchvision_float': torchvision's resize of the
            image as float32 without antialiasing, kept float32 (0-255, not rounded), as
            RF-DETR's processor and code resize. 'nearest' is always the centre-aligned
            indexing above.
        size_divisor: the output sides rounded up to a multiple of it (the aspect ratio moves
            slightly), as Mask2Former's Hugging Face processor resizes.
    """

    def __init__(
        self,
        scale: tuple[int, int],
        keep_ratio: bool = True,
        interpolation: str = "bilinear",
        depth_interpolation: str = "nearest",
        rounding: str = "nearest",
        backend: str = "cv2",
        size_divisor: int = 1,
    ) -> None:
        if interpolation not in (*_INTERPOLATIONS, "nearest"):
            raise ValueError(f"unknown interpolation {interpolation!r}")
        if depth_interpolation not in ("nearest", "bilinear"):
            raise ValueError("depth_interpolation must be 'nearest' or 'bilinear'")
        if rounding not in ("nearest", "transformers"):
            raise ValueError(f"rounding must be 'nearest' or 'transformers', got {rounding!r}")
        if backend not in ("cv2", "torchvision", "torchvision_float"):
            raise ValueError(
                f"backend must be 'cv2', 'torchvision' or 'torchvision_float', got {backend!r}"
            )
        if backend != "cv2" and interpolation == "area":
            raise ValueError("interpolation='area' is OpenCV's: use backend='cv2' with it")
        if size_divisor < 1:
            raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
        self.scale = tuple(int(s) for s in scale)
        self.keep_ratio = keep_ratio
        self.interpolation = interpolation
        self.depth_interpolation = depth_interpolation
        self.rounding = rounding
        self.backend = backend
        self.size_divisor = size_divisor

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(new_h, new_w) for an (h, w) image."""
        if not self.keep_ratio:
            new_h, new_w = self.scale[1], self.scale[0]
        elif self.rounding == "transformers":
            new_h, new_w = _transformers_size(h, w, min(self.scale), max(self.scale))
        else:
            factor = min(max(self.scale) / max(h, w), min(self.scale) / min(h, w))
            new_h, new_w = max(int(h * factor + 0.5), 1), max(int(w * factor + 0.5), 1)
        d = self.size_divisor
        return -(-new_h // d) * d, -(-new_w // d) * d

    def _resize_image(self, img: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
        """(H, W, C) -> (new_h, new_w, C) with the chosen resampler; the same dtype, float32
        for 'torchvision_float'."""
        if self.backend == "cv2":
            flag = _INTERPOLATIONS[self.interpolation]
            return cv2.resize(img, (new_w, new_h), interpolation=flag)
        mode = (
            InterpolationMode.BILINEAR
            if self.interpolation == "bilinear"
            else InterpolationMode.BICUBIC
        )
        chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)  # (C, H, W)
        antialias = self.backend == "torchvision"
        if not antialias:
            chw = chw.float()
        out = tvF.resize(chw, [new_h, new_w], interpolation=mode, antialias=antialias)
        return out.permute(1, 2, 0).contiguous().numpy()

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        new_h, new_w = self.output_size(h, w)
        sx, sy = new_w / w, new_h / h
        rows, cols = nearest_indices(h, new_h), nearest_indices(w, new_w)
        if self.interpolation == "nearest":
            results["img"] = results["img"][rows][:, cols]
        else:
            results["img"] = self._resize_image(results["img"], new_h, new_w)
        if "gt_masks" in results:
            results["gt_masks"] = results["gt_masks"][:, rows][:, :, cols]
        if "gt_sem_seg" in results:
            results["gt_sem_seg"] = results["gt_sem_seg"][rows][:, cols]
        if "gt_depth" in results:
            results["gt_depth"] = self._resize_depth(results["gt_depth"], rows, cols)
        if "gt_bboxes" in results:
            boxes = results["gt_bboxes"] * np.array([sx, sy, sx, sy], dtype=np.float32)
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, new_w)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, new_h)
            results["gt_bboxes"] = boxes
        if "gt_keypoints" in results:
            kps = results["gt_keypoints"].copy()
            kps[..., 0] *= sx
            kps[..., 1] *= sy
            results["gt_keypoints"] = kps
        old_sx, old_sy = results.get("scale_factor", (1.0, 1.0))
        results["scale_factor"] = (old_sx * sx, old_sy * sy)
        results["img_shape"] = (new_h, new_w)
        update_homography(results, np.diag([sx, sy, 1.0]).astype(np.float32))
        return results

    def _resize_depth(self, depth: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(H, W) -> (H', W') float32; see ``depth_interpolation``."""
        nearest = depth[rows][:, cols]
        if self.depth_interpolation == "nearest":
            return nearest
        size = (len(cols), len(rows))
        valid = (depth > 0).astype(np.float32)
        num = cv2.resize(depth * valid, size, interpolation=cv2.INTER_LINEAR)
        den = cv2.resize(valid, size, interpolation=cv2.INTER_LINEAR)
        all_valid = den > 1.0 - 1e-4
        return np.where(all_valid, num / np.maximum(den, 1e-6), nearest).astype(np.float32)

    def __repr__(self) -> str:
        return (
            f"Resize(scale={self.scale}, keep_ratio={self.keep_ratio}, "
            f"interpolation={self.interpolation!r}, depth_interpolation={self.depth_interpolation!r}, "
            f"rounding={self.rounding!r}, backend={self.backend!r}, size_divisor={self.size_divisor})"
        )


@TRANSFORMS.register_module()
class RandomChoiceResize:
    """``Resize`` to one of ``scales`` (list of (w, h)) chosen uniformly at random per sample.

    The other arguments are ``Resize``'s. Multi-scale DETR training, for example::

        dict(type='RandomChoiceResize', scales=[(1333, s) for s in range(480, 801, 32)])
    """

    def __init__(
        self,
        scales: list[tuple[int, int]],
        keep_ratio: bool = True,
        interpolation: str = "bilinear",
        depth_interpolation: str = "nearest",
    ) -> None:
        if not scales:
            raise ValueError("RandomChoiceResize needs at least one scale")
        self.resizes = [Resize(s, keep_ratio, interpolation, depth_interpolation) for s in scales]

    def __call__(self, results: dict) -> dict:
        return self.resizes[np.random.randint(len(self.resizes))](results)

    def __repr__(self) -> str:
        return f"RandomChoiceResize(scales={[r.scale for r in self.resizes]})"
