"""Drawing helpers for ground truth and predictions: pure numpy/cv2, RGB uint8 in and out.

- ``palette(n)``: n distinct, deterministic colours;
- ``draw_instances``: boxes with labelled captions, instance masks, keypoints + skeleton;
- ``draw_sem_seg``: a label map blended over the image, class names at region centres;
- ``draw_panoptic_seg``: a panoptic map (``label * PANOPTIC_LABEL_DIVISOR + instance``):
  stuff in its class colour, each thing instance in its own shade of its class colour,
  outlines between segments, class names;
- ``colorize_depth``: a depth map through a colormap (turbo or viridis);
- ``draw_depth``: ``colorize_depth`` with a colour bar and the min / max values beneath;
- ``side_by_side``: images in one row;
- ``draw_sample``: everything a ``DataSample`` holds (what every tool draws with).

None of them modifies its input; each returns a new (H, W, 3) uint8 RGB image (``draw_depth``
and ``draw_sample`` a taller / wider one: see there).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_COLORMAPS = {"turbo": cv2.COLORMAP_TURBO, "viridis": cv2.COLORMAP_VIRIDIS}


def palette(n: int) -> np.ndarray:
    """(n, 3) uint8 RGB colours; colour i is the same for every n.

    Hues step by the golden ratio so neighbours differ strongly; saturation and
    value alternate so colours stay apart when hues come round again.
    """
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        hue = (0.07 + i * 0.618033988749895) % 1.0
        sat = (0.85, 0.6)[(i // 7) % 2]
        val = (0.95, 0.75)[(i // 3) % 2]
        out[i] = np.round(np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255)
    return out


_default_palette = palette  # for the functions whose ``palette`` argument shadows it


def _class_colors(palette: Sequence | np.ndarray | None, n: int) -> np.ndarray:
    """(max(n, len(palette)), 3) uint8: ``palette`` (a dataset's RGB triples), extended by
    ``palette(n)`` when it has fewer than n colours."""
    if palette is None or len(palette) == 0:
        return _default_palette(n)
    given = np.asarray(palette, np.uint8).reshape(-1, 3)
    if len(given) >= n:
        return given
    return np.concatenate([given, _default_palette(n)[len(given) :]])


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """Copy of an (H, W) or (H, W, 3) image as contiguous (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return np.ascontiguousarray(image).copy()


def _text_color(rgb: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``rgb``."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _font_scale(image: np.ndarray) -> float:
    return float(np.clip(min(image.shape[:2]) / 500, 0.3, 1.0))


def _put_label(image: np.ndarray, text: str, x: int, y: int, color: Sequence[int]) -> None:
    """Draw ``text`` on a filled ``color`` box whose bottom-left corner is (x, y), kept in frame."""
    scale = _font_scale(image)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    h, w = image.shape[:2]
    x = int(np.clip(x, 0, max(w - tw - 2, 0)))
    y = int(np.clip(y, th + base + 2, h))  # move below the top edge when it would not fit
    cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 2, y), tuple(int(c) for c in color), -1)
    cv2.putText(
        image, text, (x + 1, y - base - 1), _FONT, scale, _text_color(color), 1, cv2.LINE_AA
    )


def _blend(image: np.ndarray, mask: np.ndarray, color: Sequence[int], alpha: float) -> None:
    """Blend ``color`` into ``image`` at the True pixels of the (H, W) ``mask``, in place."""
    pixels = image[mask].astype(np.float32)
    image[mask] = np.round((1 - alpha) * pixels + alpha * np.asarray(color, np.float32)).astype(
        np.uint8
    )


def draw_instances(
    image: np.ndarray,
    bboxes: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    scores: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    keypoints: np.ndarray | None = None,
    skeleton: Sequence[tuple[int, int]] | None = None,
    score_thr: float = 0.0,
    kpt_thr: float = 0.0,
    mask_alpha: float = 0.5,
    line_width: int | None = None,
    palette: Sequence | np.ndarray | None = None,
) -> np.ndarray:
    """Draw instances on a copy of ``image`` ((H, W, 3) uint8 RGB).

    bboxes: (N, 4) xyxy pixels (x1/y1 exclusive); labels: (N,) 0-based indices into
    ``class_names``; scores: (N,) or None, instances below ``score_thr`` are skipped
    and the rest captioned "name 0.87"; masks: (N, H, W) bool; keypoints: (N, K, 3)
    with the third column a visibility flag or score, points at or below ``kpt_thr``
    are not drawn; skeleton: 0-based (i, j) keypoint pairs (COCO's ``skeleton`` is
    1-based: subtract 1). Colours follow ``palette[label]`` ((C, 3) RGB, e.g. the dataset's
    ``metainfo['palette']``), default ``palette(len(class_names))[label]``.
    """
    out = _to_rgb(image)
    h, w = out.shape[:2]
    bboxes = np.asarray(bboxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    n = len(bboxes)
    if len(labels) != n:
        raise ValueError(f"{n} boxes but {len(labels)} labels")
    if n and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(
            f"labels must lie in [0, {len(class_names)}), got {labels.min()}..{labels.max()}"
        )
    keep = np.ones(n, bool) if scores is None else np.asarray(scores).reshape(-1) >= score_thr
    if masks is not None:
        masks = np.asarray(masks, bool)
        if masks.shape != (n, h, w):
            raise ValueError(f"masks must be {(n, h, w)}, got {masks.shape}")
    if keypoints is not None:
        keypoints = np.asarray(keypoints, np.float64)
        if keypoints.ndim != 3 or keypoints.shape[0] != n or keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must be ({n}, K, 3), got {keypoints.shape}")
        bad = [
            p
            for p in skeleton or ()
            if not (0 <= p[0] < keypoints.shape[1] and 0 <= p[1] < keypoints.shape[1])
        ]
        if bad:
            raise ValueError(
                f"skeleton pairs {bad} out of range for {keypoints.shape[1]} keypoints (0-based)"
            )
    colors = _class_colors(palette, len(class_names))
    lw = line_width or max(1, int(round(min(h, w) / 200)))

    for i in np.nonzero(keep)[0]:
        if masks is not None:
            _blend(out, masks[i], colors[labels[i]], mask_alpha)
    for i in np.nonzero(keep)[0]:
        color = tuple(int(c) for c in colors[labels[i]])
        x0, y0, x1, y1 = (int(round(v)) for v in bboxes[i])
        cv2.rectangle(out, (x0, y0), (max(x1 - 1, x0), max(y1 - 1, y0)), color, lw)
        if keypoints is not None:
            kp = keypoints[i]
            shown = kp[:, 2] > kpt_thr
            for a, b in skeleton or ():
                if shown[a] and shown[b]:
                    pa, pb = np.round(kp[[a, b], :2]).astype(int)
                    cv2.line(out, tuple(pa), tuple(pb), color, lw, cv2.LINE_AA)
            radius = max(2, lw + 1)
            for x, y in np.round(kp[shown, :2]).astype(int):
                cv2.circle(out, (x, y), radius, (255, 255, 255), -1, cv2.LINE_AA)
                cv2.circle(out, (x, y), radius, color, 1, cv2.LINE_AA)
    for i in np.nonzero(keep)[0]:  # captions last, so nothing covers them
        text = class_names[labels[i]] + ("" if scores is None else f" {float(scores[i]):.2f}")
        x0, y0 = int(round(bboxes[i, 0])), int(round(bboxes[i, 1]))
        _put_label(out, text, x0, y0, colors[labels[i]])
    return out


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


def side_by_side(*images: np.ndarray, gap: int = 4, fill: int = 255) -> np.ndarray:
    """Images ((H, W) or (H, W, 3) uint8) in one row, top-aligned, ``gap`` px of ``fill`` between."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    rgb = [_to_rgb(im) for im in images]
    height = max(im.shape[0] for im in rgb)
    width = sum(im.shape[1] for im in rgb) + gap * (len(rgb) - 1)
    out = np.full((height, width, 3), fill, np.uint8)
    x = 0
    for im in rgb:
        out[: im.shape[0], x : x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out


def _numpy(value) -> np.ndarray:
    """Tensor (any device) or array -> numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _dense(value) -> np.ndarray:
    """An (H, W) map from a tensor / array of shape (H, W) or (1, H, W)."""
    value = _numpy(value)
    return value[0] if value.ndim == 3 and value.shape[0] == 1 else value


def _names_for(class_names: Sequence[str], labels: np.ndarray) -> Sequence[str]:
    """``class_names``, extended with the label numbers themselves for labels past its end."""
    needed = int(labels.max()) + 1 if labels.size else 0
    if needed <= len(class_names):
        return class_names
    return [*class_names, *(str(i) for i in range(len(class_names), needed))]


def _boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) xyxy boxes around each mask (zeros for an empty mask)."""
    boxes = np.zeros((len(masks), 4), np.float64)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            boxes[i] = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return boxes


def draw_sample(
    image: np.ndarray,
    sample,
    class_names: Sequence[str] | None = None,
    skeleton: Sequence[tuple[int, int]] | None = None,
    prefix: str = "gt",
    score_thr: float = 0.3,
    palette: Sequence | np.ndarray | None = None,
    kpt_thr: float = 0.0,
) -> np.ndarray:
    """Everything a ``DataSample`` holds for ``prefix`` ('gt' or 'pred'), drawn with ``image``.

    image: (H, W, 3) uint8 RGB in the coordinates of the sample's fields (the original image
    for predictions). One panel per kind of result the sample holds, side by side in this
    order (a field that is present always gets its panel, even when empty, so every frame
    of a video has the same size):

    - ``{prefix}_instances``: boxes (from the masks if there are none), captions
      "name score", masks, keypoints + ``skeleton`` (0-based pairs); predictions below
      ``score_thr`` and keypoints at or below ``kpt_thr`` are left out;
    - ``{prefix}_sem_seg``: class colours blended over the image, class names on the regions;
    - ``{prefix}_panoptic_seg``: :func:`draw_panoptic_seg` (things in shades of their class
      colour, outlines between segments);
    - ``{prefix}_depth`` (metres) and ``{prefix}_disparity`` (relative): the colourised map
      with a colour bar and its min / max values, beside the image.

    The first three are drawn over the image (a sample holding none of them shows the plain
    image first). class_names: label -> name, default the sample's ``metainfo['classes']``;
    labels without a name are written as numbers. palette: (C, 3) RGB class colours (a
    dataset's ``metainfo['palette']``), default :func:`palette`.

    Returns an (H', W', 3) uint8 RGB image: ``image``'s size for a single overlay, wider (and,
    with a depth panel, taller by the colour bar) otherwise.
    """
    base = _to_rgb(image)
    if class_names is None:
        class_names = sample.metainfo.get("classes") or ()
    class_names = tuple(class_names)
    panels: list[np.ndarray] = []

    instances = getattr(sample, f"{prefix}_instances", None)
    if instances is not None and ("bboxes" in instances or "masks" in instances):

        def arr(name):
            return _numpy(instances[name]) if name in instances else None

        masks, labels = arr("masks"), arr("labels")
        if labels is None:
            labels = np.zeros(len(instances), np.int64)
        bboxes = arr("bboxes") if "bboxes" in instances else _boxes_from_masks(masks)
        panels.append(
            draw_instances(
                base,
                bboxes,
                labels,
                _names_for(class_names, labels),
                scores=arr("scores"),
                masks=masks,
                keypoints=arr("keypoints"),
                skeleton=skeleton,
                score_thr=score_thr if prefix == "pred" else 0.0,
                kpt_thr=kpt_thr,
                palette=palette,
            )
        )
    sem_seg = getattr(sample, f"{prefix}_sem_seg", None)
    if sem_seg is not None:
        seg = _dense(sem_seg).astype(np.int64)
        names = _names_for(class_names, seg[seg != 255])
        panels.append(draw_sem_seg(base, seg, names, palette=palette))
    panoptic = getattr(sample, f"{prefix}_panoptic_seg", None)
    if panoptic is not None:
        pan = _dense(panoptic).astype(np.int64)
        names = _names_for(class_names, pan[pan >= 0] // PANOPTIC_LABEL_DIVISOR)
        panels.append(draw_panoptic_seg(base, pan, names, palette=palette))

    if not panels:
        panels.append(base)
    for field, unit in (("depth", "m"), ("disparity", "")):
        depth = getattr(sample, f"{prefix}_{field}", None)
        if depth is not None:
            panels.append(draw_depth(_dense(depth), unit=unit))
    return panels[0] if len(panels) == 1 else side_by_side(*panels)
