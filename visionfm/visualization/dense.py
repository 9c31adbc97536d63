"""Drawing dense results: semantic label maps, panoptic maps, depth colour maps.

Pure numpy/cv2, RGB uint8 in and out; see ``visionfm.visualization`` for the overview.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR

from .instances import _FONT, _blend, _class_colors, _font_scale, _put_label, _to_rgb

_COLORMAPS = {"turbo": cv2.COLORMAP_TURBO, "viridis": cv2.COLORMAP_VIRIDIS}


def draw_sem_seg(
    image: np.ndarray,
    seg: np.ndarray,
    class_names: Sequence[str],
    palette: np.ndarray | None = None,
    alpha: float = 0.5,
    ignore_index: int = 255,
    draw_labels: bool = True,
) -> np.ndarray:
    """Blend an (H, W) integer label map over ``image``; pixels = ``ignore_index`` stay as they are.

    palette: (C, 3) uint8, default ``palette(len(class_names))``. With ``draw_labels``
    each class present is captioned at the point of its largest region farthest
    from the region's border.
    """
    out = _to_rgb(image)
    seg = np.asarray(seg)
    if seg.shape != out.shape[:2]:
        raise ValueError(f"seg shape {seg.shape} != image shape {out.shape[:2]}")
    colors = _class_colors(palette, len(class_names))
    present = [int(c) for c in np.unique(seg) if c != ignore_index]
    if present and (present[0] < 0 or present[-1] >= len(class_names)):
        raise ValueError(
            f"labels {present} outside [0, {len(class_names)}) (ignore_index={ignore_index})"
        )
    for c in present:
        _blend(out, seg == c, colors[c], alpha)
    if draw_labels:
        for c in present:
            _label_region(out, seg == c, class_names[c], colors[c])
    return out


def _label_region(image: np.ndarray, region: np.ndarray, text: str, color: Sequence[int]) -> None:
    """Caption ``text`` at the point of the (H, W) bool ``region`` farthest from its border,
    in place."""
    dist = cv2.distanceTransform(np.pad(region.astype(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    (tw, th), _ = cv2.getTextSize(text, _FONT, _font_scale(image), 1)
    _put_label(image, text, x - tw // 2, y + th // 2, color)


# brightness steps of a thing's instances: the k-th instance of a class in an image is its
# class colour mixed towards black (< 0) or white (> 0) by _SHADES[k % len]
_SHADES = (0.0, -0.35, 0.35, -0.55, 0.55, -0.2, 0.2, -0.45, 0.45, -0.65, 0.65, -0.1, 0.1)


def _shade(color: Sequence[int], k: int) -> np.ndarray:
    """The k-th shade of ``color`` (k = 0: the colour itself), (3,) uint8."""
    t = _SHADES[k % len(_SHADES)]
    c = np.asarray(color, np.float64)
    c = c * (1 + t) if t < 0 else c + (255 - c) * t
    return np.round(c).astype(np.uint8)


def panoptic_colors(
    segment_ids: Sequence[int],
    colors: np.ndarray,
    divisor: int = PANOPTIC_LABEL_DIVISOR,
) -> dict[int, np.ndarray]:
    """Colour of each panoptic segment id (``label * divisor + instance``): stuff (instance
    0) takes its class colour ``colors[label]``; the things of one class take successive
    shades of it, in order of instance id, so two instances of a class never share a colour
    (up to 13 per class)."""
    out: dict[int, np.ndarray] = {}
    rank: dict[int, int] = {}
    for sid in sorted(int(s) for s in segment_ids):
        label, instance = divmod(sid, divisor)
        if instance == 0:
            out[sid] = np.asarray(colors[label], np.uint8)
        else:
            k = rank.get(label, 0)
            rank[label] = k + 1
            out[sid] = _shade(colors[label], k)
    return out


def segment_outlines(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a 4-neighbour of another id (both sides of each boundary)."""
    edge = np.zeros(ids.shape, bool)
    diff = ids[:, 1:] != ids[:, :-1]
    edge[:, 1:] |= diff
    edge[:, :-1] |= diff
    diff = ids[1:] != ids[:-1]
    edge[1:] |= diff
    edge[:-1] |= diff
    return edge


def draw_panoptic_seg(
    image: np.ndarray,
    pan: np.ndarray,
    class_names: Sequence[str],
    palette: Sequence | np.ndarray | None = None,
    alpha: float = 0.6,
    divisor: int = PANOPTIC_LABEL_DIVISOR,
    draw_labels: bool = True,
    outline_color: Sequence[int] | None = (255, 255, 255),
) -> np.ndarray:
    """Blend an (H, W) panoptic map over ``image``.

    pan: ``label * divisor + instance`` per pixel (``DataSample.pred_panoptic_seg``:
    instance 0 for stuff, 1, 2, ... for things), negative = void, left as it is. Colours:
    :func:`panoptic_colors` from ``palette`` ((C, 3) RGB, default ``palette(len(class_names))``).
    Boundaries between segments (and void) are drawn in ``outline_color`` (None: none);
    with ``draw_labels`` each segment is captioned with its class name.
    """
    out = _to_rgb(image)
    pan = np.asarray(pan).astype(np.int64)
    if pan.shape != out.shape[:2]:
        raise ValueError(f"panoptic map shape {pan.shape} != image shape {out.shape[:2]}")
    ids = [int(i) for i in np.unique(pan) if i >= 0]
    labels = sorted({i // divisor for i in ids})
    if labels and labels[-1] >= len(class_names):
        raise ValueError(f"panoptic labels {labels} outside [0, {len(class_names)})")
    seg_colors = panoptic_colors(ids, _class_colors(palette, len(class_names)), divisor)
    for sid in ids:
        _blend(out, pan == sid, seg_colors[sid], alpha)
    if outline_color is not None:
        out[segment_outlines(pan)] = np.asarray(outline_color, np.uint8)
    if draw_labels:
        for sid in ids:
            _label_region(out, pan == sid, class_names[sid // divisor], seg_colors[sid])
    return out


def colorize_depth(
    depth: np.ndarray,
    valid: np.ndarray | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "turbo",
) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 RGB; vmin maps to the colormap's start, vmax to its end.

    valid: (H, W) bool, default finite and > 0; invalid pixels are black. vmin/vmax
    default to the valid range. cmap: "turbo" or "viridis".
    """
    depth = np.asarray(depth, np.float64)
    if depth.ndim != 2:
        raise ValueError(f"expected an (H, W) depth map, got shape {depth.shape}")
    if cmap not in _COLORMAPS:
        raise ValueError(f"unknown cmap {cmap!r}; choose from {sorted(_COLORMAPS)}")
    if valid is None:
        valid = np.isfinite(depth) & (depth > 0)
    valid = np.asarray(valid, bool)
    values = depth[valid]
    lo = vmin if vmin is not None else (float(values.min()) if values.size else 0.0)
    hi = vmax if vmax is not None else (float(values.max()) if values.size else lo + 1.0)
    t = np.clip((np.nan_to_num(depth) - lo) / max(hi - lo, 1e-12), 0, 1)
    index = np.round(t * 255).astype(np.uint8)
    out = cv2.applyColorMap(index, _COLORMAPS[cmap])[:, :, ::-1].copy()
    out[~valid] = 0
    return out


def draw_depth(
    depth: np.ndarray,
    valid: np.ndarray | None = None,
    unit: str = "m",
    cmap: str = "turbo",
) -> np.ndarray:
    """(H, W) depth (or disparity) -> (H + bar, W, 3) uint8 RGB: :func:`colorize_depth` over
    the valid range, and beneath it a colour bar captioned with that range's min (left) and
    max (right) in ``unit`` ('' for relative maps). Invalid pixels (default: not finite or
    <= 0) are black."""
    colored = colorize_depth(depth, valid=valid, cmap=cmap)
    depth = np.asarray(depth, np.float64)
    if valid is None:
        valid = np.isfinite(depth) & (depth > 0)
    values = depth[np.asarray(valid, bool)]
    suffix = f" {unit}" if unit else ""
    low, high = (
        (f"{values.min():.3g}{suffix}", f"{values.max():.3g}{suffix}")
        if values.size
        else ("-", "-")
    )
    h, w = colored.shape[:2]
    scale = _font_scale(colored)
    (_, th), base = cv2.getTextSize("0.9", _FONT, scale, 1)
    bar_h = max(12, th + base + 6)
    ramp = np.round(np.linspace(0, 255, w)).astype(np.uint8)[None].repeat(bar_h, 0)
    bar = cv2.applyColorMap(ramp, _COLORMAPS[cmap])[:, :, ::-1].copy()
    _put_label(bar, low, 0, bar_h - 2, bar[0, 0])
    (tw, _), _ = cv2.getTextSize(high, _FONT, scale, 1)
    _put_label(bar, high, w - tw - 2, bar_h - 2, bar[0, -1])
    return np.concatenate([colored, bar], axis=0)
