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
- ``dense_to_original``: per-pixel maps (segmentation logits, mask logits, depth): every
  original pixel centre is mapped into the input and sampled there, so resize, flip, crop
  and padding are undone in one ``grid_sample``. The one implementation every dense head
  calls; ``visionfm.data.batch.batch_input_shape`` gives the padded input size its maps cover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


def _original_to_input(metainfo: Mapping) -> Tensor:
    """(3, 3) float64 map from original-image to network-input pixel coordinates:
    ``homography_matrix`` if recorded, else ``scale_factor`` (w, h) then the horizontal
    ``flip`` of the ``img_shape`` image (metainfo written by hand, without a homography)."""
    matrix = metainfo.get("homography_matrix")
    if matrix is not None:
        return torch.as_tensor(matrix, dtype=torch.float64)
    sx, sy = metainfo.get("scale_factor", (1.0, 1.0))[:2]
    out = torch.diag(torch.tensor([sx, sy, 1.0], dtype=torch.float64))
    if metainfo.get("flip", False):
        w = metainfo["img_shape"][1]
        flip = torch.tensor([[-1.0, 0.0, w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        out = flip @ out
    return out


def dense_to_original(
    maps: Tensor,
    metainfo: Mapping,
    mode: str = "bilinear",
    *,
    input_shape: Sequence[int] | None = None,
    rescale: bool = True,
    fill: float | None = 0.0,
) -> Tensor:
    """Per-pixel maps over the padded network input -> over the original image.

    The one way every dense head (semantic segmentation, Mask2Former, depth) maps its output
    back. Each output pixel centre is mapped into the input (``homography_matrix``, else
    ``scale_factor`` then ``flip``) and ``maps`` is sampled there (``grid_sample``,
    ``align_corners=False``: for a plain resize this equals ``F.interpolate``). So resize,
    flip, crop and padding are undone in one step, at any resolution of ``maps``.

    - **Valid region**: the image's own part of the input, ``img_shape`` (top-left), not the
      padded batch. Sampling positions are clamped into it, so no output pixel ever reads,
      or blends in at the bottom / right border, the network's output over the batch
      padding (exact at input resolution; a coarser map's last row / column may still
      straddle the padding).
    - **Outside**: output pixels whose centre maps outside ``img_shape`` (cropped away,
      e.g. by ``KBCrop`` or ``RandomCrop``), whether or not the position lies inside the
      padded batch, get ``fill`` (0 by default: "unknown" for depth), or with
      ``fill=None`` the nearest valid value (segmentation: every pixel gets a label).
    - **Modes**: ``'bilinear'`` for continuous maps (logits, depth, ...), ``'nearest'`` for
      label maps (cast to float first; labels are read unchanged, never blended).

    Args:
        maps: (C, h, w) or (h, w) floating-point maps covering the whole padded input.
            float16 / bfloat16 (autocast outputs) are sampled in float32.
        metainfo: ``ori_shape`` (H0, W0), ``img_shape``, and ``homography_matrix``
            (original -> input) or ``scale_factor`` / ``flip``.
        mode: ``'bilinear'`` or ``'nearest'``.
        input_shape: (H, W) of the padded input ``maps`` covers (see
            :func:`visionfm.data.batch.batch_input_shape`); None: ``pad_shape``, else
            ``batch_input_shape``, else ``img_shape`` metainfo, else the size of ``maps``.
        rescale: False: return the maps over the unpadded input (``img_shape``) instead of
            the original image (padding removed, nothing else undone).
        fill: value of output pixels outside the valid region; None: the nearest valid value.

    Returns:
        (C, H0, W0) or (H0, W0) like ``maps``, dtype of ``maps`` (float32 for half types);
        (H0, W0) = ``ori_shape`` (``img_shape`` if not ``rescale`` or without ``ori_shape``).
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if maps.dim() not in (2, 3):
        raise ValueError(f"maps must be (C, h, w) or (h, w), got shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise TypeError(f"maps must be floating point (cast label maps to float), got {maps.dtype}")
    if maps.dtype in (torch.float16, torch.bfloat16):
        maps = maps.float()
    if input_shape is None:
        input_shape = next(
            (metainfo[k] for k in ("pad_shape", "batch_input_shape", "img_shape") if k in metainfo),
            maps.shape[-2:],
        )
    in_h, in_w = (int(v) for v in input_shape[:2])
    img_h, img_w = (int(v) for v in metainfo.get("img_shape", (in_h, in_w))[:2])
    if rescale and "ori_shape" in metainfo:
        out_h, out_w = (int(v) for v in metainfo["ori_shape"][:2])
        matrix = _original_to_input(metainfo)
    else:
        (out_h, out_w), matrix = (img_h, img_w), torch.eye(3, dtype=torch.float64)

    ys = torch.arange(out_h, dtype=torch.float64) + 0.5
    xs = torch.arange(out_w, dtype=torch.float64) + 0.5
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (H0, W0, 2) as (x, y)
    xy = _apply(matrix, centres)  # (H0, W0, 2) in input pixels
    x, y = xy.unbind(-1)
    tol = 1e-6
    inside = (x > -tol) & (x < img_w + tol) & (y > -tol) & (y < img_h + tol)  # (H0, W0)
    x, y = x.clamp(0.5, img_w - 0.5), y.clamp(0.5, img_h - 0.5)
    # continuous input coordinates -> grid_sample's [-1, 1] (align_corners=False)
    grid = torch.stack((2 * x / in_w - 1, 2 * y / in_h - 1), -1)  # (H0, W0, 2)
    grid = grid.to(device=maps.device, dtype=maps.dtype)[None]
    batched = maps[None] if maps.dim() == 3 else maps[None, None]  # (1, C, h, w)
    out = F.grid_sample(batched, grid, mode=mode, padding_mode="border", align_corners=False)[0]
    if fill is not None:
        out = torch.where(inside.to(out.device), out, out.new_tensor(fill))
    return out if maps.dim() == 3 else out[0]
