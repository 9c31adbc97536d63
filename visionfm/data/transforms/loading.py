"""Transforms that read files: images (OpenCV), COCO annotations, sem-seg and depth PNGs.

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
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
from mmengine.logging import print_log
from PIL import Image
from pycocotools import mask as mask_util

from visionfm.registry import TRANSFORMS

__all__ = [
    "LoadImage",
    "LoadAnnotations",
    "decode_segmentation",
    "has_alpha",
    "read_depth_file",
    "read_image_file",
]

_MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"RIFF": "WEBP",
}


def _read_bytes(path: str) -> bytes:
    """The file's bytes; errors name the file and what was wrong."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected a file but found a directory: {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OSError(f"cannot read file {path}: {e}") from e
    if not data:
        raise ValueError(f"file is empty (0 bytes): {path}")
    return data


def _check_complete(data: bytes, path: str) -> str | None:
    """Detect truncated JPEG / PNG files (some OpenCV builds decode them silently).

    A JPEG must have an end-of-image marker (FF D9) after its last start-of-scan marker
    (FF DA); FF D9 cannot occur inside entropy-coded data, so this ignores trailing junk and
    embedded thumbnails. A PNG must contain its IEND chunk.
    """
    fmt = next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)
    if fmt == "JPEG" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
        raise ValueError(f"truncated JPEG (no end-of-image marker after the last scan): {path}")
    if fmt == "PNG" and data.rfind(b"IEND") < 0:
        raise ValueError(f"truncated PNG (no IEND chunk): {path}")
    return fmt


def read_image_file(path: str, flags: int) -> np.ndarray:
    """Decode ``path`` with ``cv2.imdecode(flags)``; missing / truncated / corrupt files raise.

    ``cv2.IMREAD_COLOR`` applies the EXIF orientation tag (as ``cv2.imread`` does); add
    ``cv2.IMREAD_IGNORE_ORIENTATION`` to get the raw pixel layout.
    """
    data = _read_bytes(path)
    fmt = _check_complete(data, path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        what = f"corrupt {fmt} data" if fmt else "unknown or unsupported image format"
        raise ValueError(f"cannot decode image file ({what}, {len(data)} bytes): {path}")
    return img


def has_alpha(path: str) -> bool:
    """Whether the image file ``path`` has an alpha channel or a transparent colour, from its
    header (read by Pillow; False for files Pillow cannot identify). OpenCV's
    ``IMREAD_COLOR`` drops both."""
    try:
        with Image.open(path) as img:
            return img.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    except OSError:  # includes PIL.UnidentifiedImageError
        return False


def read_depth_file(path: str, depth_scale: float = 1000.0) -> np.ndarray:
    """A depth PNG (single-channel, 16-bit: depth * ``depth_scale``) -> float32 (H, W) metres.

    0 stays 0 (invalid). Float images (e.g. 32-bit TIFF) are divided by ``depth_scale`` too.
    An 8-bit file raises: it cannot hold metric depth (usually a visualisation saved by
    mistake, or a map converted with a lossy tool).
    """
    depth = read_image_file(path, cv2.IMREAD_UNCHANGED)
    if depth.ndim != 2:
        raise ValueError(f"depth map must be single-channel, got shape {depth.shape}: {path}")
    if depth.dtype in (np.uint8, np.int8):
        raise ValueError(
            f"depth map {path} is 8-bit; expected a 16-bit PNG holding depth * depth_scale "
            f"(e.g. millimetres for depth_scale=1000, KITTI: metres * 256). Write it with "
            f"cv2.imwrite(path, depth_array.astype(np.uint16))"
        )
    return depth.astype(np.float32) / np.float32(depth_scale)


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
