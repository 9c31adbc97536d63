"""Drawing everything a ``DataSample`` holds (``draw_sample``, what every tool draws with),
putting images in one row (``side_by_side``) and writing text beneath one (``add_caption``)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR

from .dense import draw_depth, draw_panoptic_seg, draw_sem_seg
from .instances import _FONT, _font_scale, _to_rgb, draw_instances


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
    dataset's ``metainfo['palette']``), default :func:`palette`. A grounding sample (one with
    ``phrases``) names and colours its instances by its phrases instead, which their labels
    index (the prompt's class names, or the words a free-text prediction matched); long
    names are shortened (:func:`~visionfm.visualization.instances.draw_instances`).

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
        phrases = sample.get("phrases")
        names = class_names if phrases is None else tuple(phrases)
        panels.append(
            draw_instances(
                base,
                bboxes,
                labels,
                _names_for(names, labels),
                scores=arr("scores"),
                masks=masks,
                keypoints=arr("keypoints"),
                skeleton=skeleton,
                score_thr=score_thr if prefix == "pred" else 0.0,
                kpt_thr=kpt_thr,
                palette=palette if phrases is None else None,
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


def add_caption(image: np.ndarray, text: str, fill: int = 255) -> np.ndarray:
    """``image`` ((H, W) or (H, W, 3) uint8) with ``text`` written beneath it, black on a
    strip of ``fill``, wrapped at spaces to the image's width (a word wider than that is
    cut into pieces that fit). Returns (H + strip, W, 3) uint8 RGB."""
    out = _to_rgb(image)
    scale = _font_scale(out)
    (_, th), base = cv2.getTextSize("Ag", _FONT, scale, 1)
    lines = _wrap(text, out.shape[1] - 4, scale)
    step = th + base + 4
    strip = np.full((step * len(lines) + 2, out.shape[1], 3), fill, np.uint8)
    for k, line in enumerate(lines):
        y = k * step + th + 3
        cv2.putText(strip, line, (2, y), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([out, strip])


def _wrap(text: str, width: int, scale: float) -> list[str]:
    """``text`` in lines of at most ``width`` px at font ``scale`` (at least one line)."""

    def fits(s: str) -> bool:
        return cv2.getTextSize(s, _FONT, scale, 1)[0][0] <= width

    lines: list[str] = []
    line = ""
    for word in text.split():
        while not fits(word) and len(word) > 1:  # cut a word wider than a line
            cut = max(k for k in range(1, len(word)) if fits(word[:k]) or k == 1)
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{line} {word}" if line else word
        if line and not fits(candidate):
            lines.append(line)
            candidate = word
        line = candidate
    return [*lines, line]
