"""Transforms that read files: images (OpenCV), COCO annotations, sem-seg and depth PNGs,
COCO panoptic PNGs (the readers themselves: ``visionfm.data.files``).

A ``results`` dict flows through the pipeline. Keys read / written here:

- ``img_path`` (or an ``img`` array) -> ``img`` uint8 (H, W, 3) RGB, ``ori_shape`` / ``img_shape`` (h, w),
  ``scale_factor`` (1.0, 1.0), ``flip`` False, ``flip_direction`` None,
  ``homography_matrix`` float32 (3, 3) identity.
- ``instances`` (list of dicts from a dataset: ``bbox`` xyxy, ``bbox_label``, ``ignore_flag``,
  ``mask`` COCO polygons / RLE, ``keypoints`` flat [x, y, v] * K) + ``num_keypoints`` ->
  ``gt_bboxes`` float32 (N, 4), ``gt_labels`` int64 (N,), ``gt_ignore_flags`` bool (N,),
  ``gt_masks`` bool (N, H, W), ``gt_keypoints`` float32 (N, K, 3).
- ``seg_map_path`` -> ``gt_sem_seg`` integer (H, W), 255 = ignore.
- ``depth_path`` -> ``gt_depth`` float32 (H, W) metres, 0 = invalid.
- ``panoptic_path`` + ``instances`` (``segment_id``, ``bbox_label``, ``ignore_flag``) ->
  ``gt_masks``, ``gt_labels``, ``gt_bboxes``, ``gt_ignore_flags``, ``gt_sem_seg`` (see
  :class:`LoadPanopticAnnotations`).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from mmengine.logging import print_log
from pycocotools import mask as mask_util

from visionfm.data.files import has_alpha, read_depth_file, read_image_file, read_panoptic_png
from visionfm.registry import TRANSFORMS

__all__ = ["LoadAnnotations", "LoadImage", "LoadPanopticAnnotations", "decode_segmentation"]

IGNORE_LABEL = 255  # gt_sem_seg value of void / ignored pixels


@TRANSFORMS.register_module()
class LoadImage:
    """Read ``results['img_path']`` with OpenCV into ``results['img']`` uint8 (H, W, 3) RGB.

    EXIF orientation is honoured (``cv2.IMREAD_COLOR`` rotates the pixels as a photo viewer
    would) unless ``ignore_orientation=True``. Grey / 16-bit / alpha images become 8-bit RGB.
    If the dataset gives ``height`` / ``width`` and the decoded image differs, this raises:
    the annotations would not line up (usually an EXIF-rotated photo annotated unrotated).

    When ``results`` has no ``img_path`` but an ``img`` array (a video frame, a webcam frame,
    an array given to the Inferencer), that array is taken as RGB: uint8 (H, W, 3) as it is,
    grey (H, W) / (H, W, 1) replicated to 3 channels, RGBA (H, W, 4) without its alpha; any
    other shape or dtype raises, naming it.

    A dropped alpha channel (of a file or an array) is logged once per instance of this
    transform, i.e. once per dataset (per DataLoader worker process) or Inferencer, naming
    the first image that had one, not once per image.
    """

    def __init__(self, ignore_orientation: bool = False) -> None:
        self.ignore_orientation = ignore_orientation
        self._alpha_noted = False

    def __call__(self, results: dict) -> dict:
        path = results.get("img_path")
        if path is None:
            if not isinstance(results.get("img"), np.ndarray):
                raise KeyError("LoadImage needs results['img_path'] or an img array")
            img = self._rgb_array(results["img"])
        else:
            flags = cv2.IMREAD_COLOR
            if self.ignore_orientation:
                flags |= cv2.IMREAD_IGNORE_ORIENTATION
            img = cv2.cvtColor(read_image_file(path, flags), cv2.COLOR_BGR2RGB)
            if not self._alpha_noted and has_alpha(path):
                self._note_alpha(f"image file {path}")
        h, w = img.shape[:2]
        expected = (results.get("height"), results.get("width"))
        if None not in expected and expected != (h, w):
            raise ValueError(
                f"image {path} decodes to h={h}, w={w} but its annotation says "
                f"h={expected[0]}, w={expected[1]} (EXIF-rotated photo? try "
                f"LoadImage(ignore_orientation=True))"
            )
        results.update(
            img=img,
            ori_shape=(h, w),
            img_shape=(h, w),
            scale_factor=(1.0, 1.0),
            flip=False,
            flip_direction=None,
            homography_matrix=np.eye(3, dtype=np.float32),
        )
        return results

    def _rgb_array(self, img: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB of an image array (see the class doc)."""
        channels = img.shape[2] if img.ndim == 3 else 1
        if img.dtype == np.uint8 and img.ndim in (2, 3) and channels in (1, 3, 4):
            if channels == 1:
                return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
            if channels == 4:
                if not self._alpha_noted:
                    self._note_alpha(f"an RGBA image array of shape {img.shape}")
                return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
            return img
        hint = ""
        if img.ndim == 3 and img.shape[0] in (1, 3, 4) and channels not in (1, 3, 4):
            hint = "; it looks channel-first (C, H, W): pass img.transpose(1, 2, 0)"
        elif img.ndim == 4:
            hint = "; for several images pass a list of (H, W, 3) arrays"
        elif img.dtype.kind == "f":
            hint = "; floats in [0, 1]: pass (img * 255).round().astype(np.uint8)"
        elif img.dtype == np.uint16:
            hint = "; 16-bit: pass (img >> 8).astype(np.uint8), as 16-bit files are read"
        raise ValueError(
            f"image array of shape {img.shape} and dtype {img.dtype}: expected uint8 RGB "
            f"(H, W, 3), grey (H, W) / (H, W, 1) or RGBA (H, W, 4){hint}"
        )

    def _note_alpha(self, what: str) -> None:
        self._alpha_noted = True
        print_log(
            f"{what} has an alpha channel (transparency): it was dropped, the image is read "
            f"as RGB; later images with one through this pipeline are read the same way "
            f"without a note",
            logger="current",
            level=logging.WARNING,
        )

    def __repr__(self) -> str:
        return f"LoadImage(ignore_orientation={self.ignore_orientation})"


def decode_segmentation(segm: list | dict, height: int, width: int) -> np.ndarray | None:
    """COCO ``segmentation`` (polygons, uncompressed or compressed RLE) -> bool (H, W).

    Same semantics as pycocotools' ``COCO.annToMask``; returns None for an empty polygon list.
    """
    if isinstance(segm, list):
        polys = [p for p in segm if len(p) >= 6]  # a polygon needs 3 points
        if not polys:
            return None
        rle = mask_util.merge(mask_util.frPyObjects(polys, height, width))
    elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        rle = mask_util.frPyObjects(segm, height, width)
    elif isinstance(segm, dict) and "counts" in segm:
        if list(segm["size"]) != [height, width]:
            raise ValueError(f"RLE size {segm['size']} differs from the image's {[height, width]}")
        rle = segm
    else:
        raise ValueError(f"unknown COCO segmentation format: {type(segm).__name__}")
    return mask_util.decode(rle).astype(bool)


def _box_mask(bbox: list[float], height: int, width: int) -> np.ndarray:
    """Filled box as a mask, for instances without a segmentation."""
    mask = np.zeros((height, width), dtype=bool)
    x1, y1, x2, y2 = (int(round(v)) for v in bbox)
    mask[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    return mask


@TRANSFORMS.register_module()
class LoadAnnotations:
    """Turn a dataset's ``instances`` and file paths into ``gt_*`` arrays (see module doc).

    Args:
        with_bbox / with_label: write ``gt_bboxes`` + ``gt_ignore_flags`` / ``gt_labels``.
        with_mask: decode ``gt_masks`` from COCO polygons / RLE at ``height`` x ``width``;
            an instance without a segmentation gets its filled box.
        with_keypoints: write ``gt_keypoints`` (N, K, 3) with K = ``results['num_keypoints']``.
        with_seg: read ``seg_map_path`` (8/16-bit single-channel PNG of class indices).
        with_depth: read ``depth_path`` (16-bit PNG, see :func:`read_depth_file`) and
            divide by ``depth_scale``; 0 stays 0 = invalid. The map must have the decoded
            image's size (``ori_shape``). depth_scale None: the dataset's
            (``results['depth_scale']``, e.g. 256 for KITTI), else 1000 (millimetres).
        reduce_zero_label: map seg label 0 to 255 (ignore) and shift the others down by one.
            None: follow the dataset (``results['reduce_zero_label']``, else False); a
            value that contradicts the dataset's raises.

    Semantic masks are checked against what the dataset puts in ``results``: the mask must
    have the decoded image's size (``ori_shape``, so this transform may come after
    ``Resize`` to keep the ground truth at the original size for evaluation), and with
    ``results['num_classes']`` every label must be < num_classes or 255. Errors name the file.
    """

    def __init__(
        self,
        with_bbox: bool = True,
        with_label: bool = True,
        with_mask: bool = False,
        with_keypoints: bool = False,
        with_seg: bool = False,
        with_depth: bool = False,
        depth_scale: float | None = None,
        reduce_zero_label: bool | None = None,
    ) -> None:
        self.with_bbox = with_bbox
        self.with_label = with_label
        self.with_mask = with_mask
        self.with_keypoints = with_keypoints
        self.with_seg = with_seg
        self.with_depth = with_depth
        self.depth_scale = depth_scale
        self.reduce_zero_label = reduce_zero_label

    def __call__(self, results: dict) -> dict:
        instances = results.get("instances", [])
        if self.with_bbox:
            boxes = [inst["bbox"] for inst in instances]
            results["gt_bboxes"] = np.array(boxes, dtype=np.float32).reshape(-1, 4)
            flags = [bool(inst.get("ignore_flag", 0)) for inst in instances]
            results["gt_ignore_flags"] = np.array(flags, dtype=bool)
        if self.with_label:
            labels = [inst["bbox_label"] for inst in instances]
            results["gt_labels"] = np.array(labels, dtype=np.int64)
        if self.with_mask:
            results["gt_masks"] = self._masks(results, instances)
        if self.with_keypoints:
            results["gt_keypoints"] = self._keypoints(results, instances)
        if self.with_seg:
            results["gt_sem_seg"] = self._sem_seg(results["seg_map_path"], results)
        if self.with_depth:
            results["gt_depth"] = self._depth(results["depth_path"], results)
        return results

    def _masks(self, results: dict, instances: list[dict]) -> np.ndarray:
        """(N, H, W) bool at the annotated size (``height``/``width``, else the image's)."""
        h = results.get("height") or results["img_shape"][0]
        w = results.get("width") or results["img_shape"][1]
        masks = np.zeros((len(instances), h, w), dtype=bool)
        for i, inst in enumerate(instances):
            segm = inst.get("mask")
            try:
                mask = decode_segmentation(segm, h, w) if segm else None
            except ValueError as e:
                where = f"{results.get('img_path')}, annotation id {inst.get('ann_id')}"
                raise ValueError(f"{where}: {e}") from e
            masks[i] = _box_mask(inst["bbox"], h, w) if mask is None else mask
        return masks

    @staticmethod
    def _keypoints(results: dict, instances: list[dict]) -> np.ndarray:
        """(N, K, 3) float32 [x, y, visibility]; missing keypoints are all zero."""
        k = results.get("num_keypoints", 0)
        if not k:
            raise ValueError(
                f"with_keypoints=True but the dataset has no keypoint categories "
                f"(image {results.get('img_path')})"
            )
        kps = np.zeros((len(instances), k, 3), dtype=np.float32)
        for i, inst in enumerate(instances):
            if inst.get("keypoints"):
                flat = np.asarray(inst["keypoints"], dtype=np.float32).reshape(-1)
                if flat.size != 3 * k:
                    raise ValueError(
                        f"{results.get('img_path')}, annotation id {inst.get('ann_id')}: "
                        f"keypoints has {flat.size} numbers, expected 3 * {k} = {3 * k} "
                        f"(x, y, visibility per keypoint)"
                    )
                kps[i] = flat.reshape(k, 3)
        return kps

    def _sem_seg(self, path: str, results: dict) -> np.ndarray:
        """(H, W) labels of ``path``, reduced and checked (see the class doc)."""
        seg = read_image_file(path, cv2.IMREAD_UNCHANGED)
        if seg.ndim != 2:
            raise ValueError(f"semantic mask must be single-channel, got shape {seg.shape}: {path}")
        ori = results.get("ori_shape")
        if ori is not None and tuple(seg.shape) != tuple(ori[:2]):
            raise ValueError(
                f"semantic mask {path} is h={seg.shape[0]}, w={seg.shape[1]} but its image "
                f"{results.get('img_path')} is h={ori[0]}, w={ori[1]}"
            )
        given = results.get("reduce_zero_label")
        if self.reduce_zero_label is not None and given is not None:
            if bool(given) != self.reduce_zero_label:
                raise ValueError(
                    f"LoadAnnotations(reduce_zero_label={self.reduce_zero_label}) contradicts "
                    f"the dataset's reduce_zero_label={given} ({path})"
                )
        reduce = self.reduce_zero_label if self.reduce_zero_label is not None else bool(given)
        if reduce:
            seg = seg.copy()
            seg[seg == 0] = 255
            seg = np.where(seg == 255, seg, seg - 1).astype(seg.dtype)
        num_classes = results.get("num_classes")
        if num_classes is not None and int(seg.max()) >= num_classes:
            bad = np.unique(seg[(seg >= num_classes) & (seg != 255)])
            if len(bad):
                hint = "" if reduce else " (should reduce_zero_label be True?)"
                raise ValueError(
                    f"semantic mask {path} has label values {bad[:10].tolist()} >= "
                    f"num_classes={num_classes} (after reduce_zero_label={reduce}); labels "
                    f"must be 0..{num_classes - 1} or 255 = ignore{hint}"
                )
        return seg

    def _depth(self, path: str, results: dict) -> np.ndarray:
        """(H, W) float32 metres of ``path``, checked against the image's size."""
        scale = self.depth_scale or results.get("depth_scale") or 1000.0
        depth = read_depth_file(path, scale)
        ori = results.get("ori_shape")
        if ori is not None and tuple(depth.shape) != tuple(ori[:2]):
            raise ValueError(
                f"depth map {path} is h={depth.shape[0]}, w={depth.shape[1]} but its image "
                f"{results.get('img_path')} is h={ori[0]}, w={ori[1]}"
            )
        return depth

    def __repr__(self) -> str:
        flags = ("bbox", "label", "mask", "keypoints", "seg", "depth")
        on = [f for f in flags if getattr(self, f"with_{f}")]
        return f"LoadAnnotations(with={on}, depth_scale={self.depth_scale})"


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
