"""Reading image files: images (any OpenCV format), depth PNGs and COCO panoptic PNGs.

Missing, empty, truncated and undecodable files raise errors that name the file.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "has_alpha",
    "id_to_rgb",
    "read_depth_file",
    "read_image_file",
    "read_panoptic_png",
    "rgb_to_id",
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


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) int64 segment ids ``R + 256 G + 256^2 B``."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) segment ids in [0, 256^3) -> (H, W, 3) uint8 RGB."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack((ids % 256, ids // 256 % 256, ids // 65536 % 256), axis=-1).astype(np.uint8)


def read_panoptic_png(path: str) -> np.ndarray:
    """The (H, W) int64 segment ids of a COCO panoptic PNG; unreadable files raise naming
    ``path``."""
    bgr = read_image_file(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    return rgb_to_id(bgr[:, :, ::-1])
