"""Box operations for detection: format conversion, IoU, generalized IoU, rescaling.

Generalized IoU follows Rezatofighi et al., "Generalized Intersection over Union: A Metric
and A Loss for Bounding Box Regression", CVPR 2019.

Formats: ``xyxy`` is ``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2``; ``cxcywh`` is
``(centre x, centre y, width, height)``. "Normalised" boxes are divided by the image's width
(x values) and height (y values), so they lie in ``[0, 1]``; "absolute" boxes are in pixels
(continuous coordinates, see ``visionfm.data.data_sample``). Every function works on any
leading batch shape unless its docstring gives exact shapes, and keeps dtype and device.

Degenerate boxes (zero width or height, or two identical points) are allowed: the
denominators of IoU and GIoU are clamped at ``eps``, so the results stay finite where the
exact value is 0 / 0 (``torchvision.ops`` gives NaN there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "box_area",
    "box_cxcywh_to_xyxy",
    "box_iou",
    "box_xyxy_to_cxcywh",
    "clip_boxes",
    "generalized_box_iou",
    "generalized_box_iou_paired",
    "inverse_sigmoid",
    "rescale_boxes",
]

_EPS = 1e-7


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(..., 4) cxcywh -> (..., 4) xyxy."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (..., 4) cxcywh."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """(..., 4) xyxy -> (...) areas (width * height, not clamped)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _intersection_union(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Broadcast ``a`` (..., 4) against ``b`` (..., 4) xyxy -> (intersection, union) (...)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a) + box_area(b) - inter
    return inter, union


def _enclosing_area(a: Tensor, b: Tensor) -> Tensor:
    """Area of the smallest box holding both ``a`` and ``b`` (broadcast, xyxy) -> (...)."""
    lt = torch.minimum(a[..., :2], b[..., :2])
    rb = torch.maximum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = _EPS) -> tuple[Tensor, Tensor]:
    """Pairwise IoU of ``boxes1`` (N, 4) and ``boxes2`` (M, 4), both xyxy.

    Returns ``(iou, union)``, each (N, M). ``iou = intersection / max(union, eps)``.
    """
    inter, union = _intersection_union(boxes1[:, None, :], boxes2[None, :, :])
    return inter / union.clamp(min=eps), union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = _EPS) -> Tensor:
    """Pairwise GIoU of ``boxes1`` (N, 4) and ``boxes2`` (M, 4), both xyxy -> (N, M) in [-1, 1].

    ``giou = iou - (enclosing - union) / enclosing``, with ``enclosing`` the area of the
    smallest box holding both.
    """
    a, b = boxes1[:, None, :], boxes2[None, :, :]
    inter, union = _intersection_union(a, b)
    enclosing = _enclosing_area(a, b)
    iou = inter / union.clamp(min=eps)
    return iou - (enclosing - union) / enclosing.clamp(min=eps)


def generalized_box_iou_paired(boxes1: Tensor, boxes2: Tensor, eps: float = _EPS) -> Tensor:
    """GIoU of matching rows: ``boxes1`` (N, 4) and ``boxes2`` (N, 4), both xyxy -> (N,).

    Equals the diagonal of ``generalized_box_iou(boxes1, boxes2)`` without building (N, N).
    """
    if boxes1.shape != boxes2.shape:
        raise ValueError(f"paired GIoU needs equal shapes, got {boxes1.shape} and {boxes2.shape}")
    inter, union = _intersection_union(boxes1, boxes2)
    enclosing = _enclosing_area(boxes1, boxes2)
    iou = inter / union.clamp(min=eps)
    return iou - (enclosing - union) / enclosing.clamp(min=eps)


def clip_boxes(boxes: Tensor, size: Sequence[float]) -> Tensor:
    """Clip (..., 4) xyxy absolute boxes to an image of ``size = (h, w)`` pixels."""
    h, w = size
    x = boxes[..., 0::2].clamp(min=0, max=w)
    y = boxes[..., 1::2].clamp(min=0, max=h)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def _whwh(sizes: Tensor | Sequence[float], boxes: Tensor) -> Tensor:
    """Scale factors ``(w, h, w, h)`` shaped to broadcast against ``boxes``."""
    sizes = torch.as_tensor(sizes, dtype=boxes.dtype, device=boxes.device)
    if sizes.shape[-1:] != (2,):
        raise ValueError(f"image sizes must end in (h, w), got shape {tuple(sizes.shape)}")
    h, w = sizes.unbind(-1)
    scale = torch.stack((w, h, w, h), dim=-1)  # (*S, 4)
    # sizes (B, 2) with boxes (B, Q, 4) -> (B, 1, 4); sizes (2,) -> (1, ..., 4)
    extra = boxes.dim() - scale.dim()
    if extra < 0:
        raise ValueError(
            f"image sizes of shape {tuple(sizes.shape)} have more batch dimensions than "
            f"boxes of shape {tuple(boxes.shape)}"
        )
    return scale.reshape(scale.shape[:-1] + (1,) * extra + (4,))


def rescale_boxes(
    boxes: Tensor,
    sizes: Tensor | Sequence[float],
    to: Literal["absolute", "normalized"],
) -> Tensor:
    """Convert between normalised cxcywh and absolute (pixel) xyxy boxes.

    Args:
        boxes: (..., 4). Normalised cxcywh when ``to='absolute'``; absolute xyxy when
            ``to='normalized'``.
        sizes: image size ``(h, w)`` as a pair / (2,) tensor for all boxes, or one size per
            image as (B, 2) for ``boxes`` (B, Q, 4).
        to: ``'absolute'``: normalised cxcywh -> absolute xyxy; ``'normalized'``: absolute
            xyxy -> normalised cxcywh.

    Returns:
        (..., 4) boxes in the other format. Nothing is clipped (see ``clip_boxes``).
    """
    scale = _whwh(sizes, boxes)
    if to == "absolute":
        return box_cxcywh_to_xyxy(boxes) * scale
    if to == "normalized":
        return box_xyxy_to_cxcywh(boxes / scale)
    raise ValueError(f"to must be 'absolute' or 'normalized', got {to!r}")


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Logit of ``x`` (any shape, values in [0, 1]); ``x`` and ``1 - x`` are clamped at
    ``eps`` so 0 and 1 give finite values (about -/+ log(1 / eps))."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
