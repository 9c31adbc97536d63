"""Drawing primitives and instances: captions, blending, boxes / masks / keypoints (class
colours: ``visionfm.data.palette``, shared with the datasets' ``metainfo['palette']``).

Pure numpy/cv2, RGB uint8 in and out; see ``visionfm.visualization`` for the overview.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from visionfm.data.palette import palette

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_default_palette = palette  # for the functions whose ``palette`` argument shadows it
MAX_NAME_CHARS = 32  # longer names in captions (free-text phrases) are cut at a word


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


def _shorten(name: str, limit: int = MAX_NAME_CHARS) -> str:
    """``name`` if it has at most ``limit`` characters, else its leading words that fit with
    "..." (cut inside a word when whole words would fill less than half the limit)."""
    if len(name) <= limit:
        return name
    head = name[: limit - 2]  # one character more than fits: a space there ends a whole word
    space = head.rfind(" ")
    head = head[:space] if space >= limit // 2 else head[:-1]
    return head.rstrip() + "..."


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
    and the rest captioned "name 0.87" (a name longer than ``MAX_NAME_CHARS`` cut at a word,
    "..." marking the cut); masks: (N, H, W) bool; keypoints: (N, K, 3) with the third
    column a visibility flag or score, points at or below ``kpt_thr`` are not drawn;
    skeleton: 0-based (i, j) keypoint pairs (COCO's ``skeleton`` is 1-based: subtract 1).
    Colours follow ``palette[label]`` ((C, 3) RGB, e.g. the dataset's ``metainfo['palette']``),
    default ``palette(len(class_names))[label]``.
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
        text = _shorten(class_names[labels[i]])
        text += "" if scores is None else f" {float(scores[i]):.2f}"
        x0, y0 = int(round(bboxes[i, 0])), int(round(bboxes[i, 1]))
        _put_label(out, text, x0, y0, colors[labels[i]])
    return out
