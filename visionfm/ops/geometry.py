"""Map predictions made on the network input back to the original image.

Transforms record ``metainfo['homography_matrix']`` (3, 3): original -> network-input
coordinates, composed over resize, flip, crop, ... (``visionfm.data.transforms``). All
coordinates are continuous pixel coordinates: the image spans ``[0, W] x [0, H]`` and pixel
``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)``. Without a homography, ``scale_factor``
``(w, h)`` is undone instead.

- ``boxes_to_original``: xyxy boxes (detection heads).
- ``points_to_original``: (x, y) points (keypoints).
- ``points_to_input`` / ``boxes_to_input``: the other way, original -> network input (e.g. a
  pose head reading a detection head's boxes, which are reported in original pixels).
- ``dense_to_original``: per-pixel maps (segmentation logits, depth): every original pixel
  centre is mapped into the input and sampled there, so resize, flip, crop and padding are
  undone in one ``grid_sample``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from .boxes import clip_boxes

__all__ = [
    "boxes_to_input",
    "boxes_to_original",
    "dense_to_original",
    "points_to_input",
    "points_to_original",
]


def _homography(metainfo: Mapping, device) -> Tensor | None:
    matrix = metainfo.get("homography_matrix")
    if matrix is None:
        return None
    return torch.as_tensor(matrix, dtype=torch.float64, device=device)


def _apply(matrix: Tensor, xy: Tensor) -> Tensor:
    """(3, 3) homography applied to (..., 2) points -> (..., 2), in float64."""
    xy = xy.double()
    mapped = torch.cat((xy, torch.ones_like(xy[..., :1])), -1) @ matrix.T
    return mapped[..., :2] / mapped[..., 2:]


def points_to_original(points: Tensor, metainfo: Mapping) -> Tensor:
    """(..., 2) (x, y) points in network-input pixels -> (..., 2) in the original image's.

    Not clipped: a keypoint may lie outside the image.
    """
    matrix = _homography(metainfo, points.device)
    if matrix is not None:
        return _apply(torch.linalg.inv(matrix), points).to(points.dtype)
    if "scale_factor" in metainfo:
        sw, sh = metainfo["scale_factor"][:2]
        return points / points.new_tensor([sw, sh])
    return points


def boxes_to_original(bboxes: Tensor, metainfo: Mapping) -> Tensor:
    """(N, 4) xyxy boxes in network-input pixels -> (N, 4) in the original image's pixels.

    The four corners are mapped back and their bounding box taken (a flip swaps x1 / x2).
    Clipped to ``ori_shape`` when present.
    """
    x1, y1, x2, y2 = bboxes.unbind(-1)
    corners = torch.stack(
        (torch.stack((x1, x2, x1, x2), -1), torch.stack((y1, y1, y2, y2), -1)), -1
    )  # (N, 4, 2)
    xy = points_to_original(corners.double(), metainfo)
    bboxes = torch.cat((xy.amin(-2), xy.amax(-2)), dim=-1).to(bboxes.dtype)
    if "ori_shape" in metainfo:
        bboxes = clip_boxes(bboxes, metainfo["ori_shape"][:2])
    return bboxes


def points_to_input(points: Tensor, metainfo: Mapping) -> Tensor:
    """(..., 2) (x, y) points in the original image's pixels -> (..., 2) in network-input
    pixels; the inverse of :func:`points_to_original`."""
    matrix = _homography(metainfo, points.device)
    if matrix is not None:
        return _apply(matrix, points).to(points.dtype)
    if "scale_factor" in metainfo:
        sw, sh = metainfo["scale_factor"][:2]
        return points * points.new_tensor([sw, sh])
    return points


def boxes_to_input(bboxes: Tensor, metainfo: Mapping) -> Tensor:
    """(N, 4) xyxy boxes in original pixels -> (N, 4) in network-input pixels (bounding box
    of the mapped corners; not clipped)."""
    x1, y1, x2, y2 = bboxes.unbind(-1)
    corners = torch.stack(
        (torch.stack((x1, x2, x1, x2), -1), torch.stack((y1, y1, y2, y2), -1)), -1
    )  # (N, 4, 2)
    xy = points_to_input(corners.double(), metainfo)
    return torch.cat((xy.amin(-2), xy.amax(-2)), dim=-1).to(bboxes.dtype)


def dense_to_original(maps: Tensor, metainfo: Mapping, mode: str = "bilinear") -> Tensor:
    """(C, h, w) maps over the network input -> (C, H0, W0) over the original image.

    ``maps`` may be at a lower resolution than the (padded) input: ``metainfo['pad_shape']``
    (else ``batch_input_shape``, else ``img_shape``) gives the input size it covers. Original
    pixels that fall outside the input (cropped away) read 0 with ``mode='bilinear'`` and
    the nearest border value with ``mode='nearest'``.

    Args:
        maps: (C, h, w) float maps (logits, depth, ...).
        metainfo: needs ``ori_shape``; uses ``homography_matrix`` or ``scale_factor``.
        mode: ``'bilinear'`` or ``'nearest'`` (for label maps cast to float).
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if "ori_shape" not in metainfo:
        raise KeyError("dense_to_original needs metainfo['ori_shape'] (the original (H, W))")
    height, width = metainfo["ori_shape"][:2]
    covered = next(
        (metainfo[k] for k in ("pad_shape", "batch_input_shape", "img_shape") if k in metainfo),
        maps.shape[-2:],
    )
    in_h, in_w = covered[:2]
    ys = torch.arange(height, device=maps.device, dtype=torch.float64) + 0.5
    xs = torch.arange(width, device=maps.device, dtype=torch.float64) + 0.5
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (H0, W0, 2)
    matrix = _homography(metainfo, maps.device)
    if matrix is not None:
        xy = _apply(matrix, centres)
    elif "scale_factor" in metainfo:
        sw, sh = metainfo["scale_factor"][:2]
        xy = centres * centres.new_tensor([sw, sh])
    else:
        xy = centres
    # continuous input coordinates -> grid_sample's [-1, 1] (align_corners=False)
    grid = xy / xy.new_tensor([in_w, in_h]) * 2 - 1
    if not maps.is_floating_point():
        raise TypeError(f"maps must be floating point (cast label maps to float), got {maps.dtype}")
    padding = "zeros" if mode == "bilinear" else "border"
    out = F.grid_sample(
        maps[None], grid[None].to(maps.dtype), mode=mode, padding_mode=padding, align_corners=False
    )
    return out[0]
