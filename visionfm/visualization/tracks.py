"""Tracks and frame rates over video frames: boxes captioned with their track id, one colour
per id (``palette``'s colour of the id: the same in every frame), and an FPS caption.

Pure numpy/cv2, RGB uint8 in and out; see ``visionfm.visualization`` for the overview.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visionfm.data.palette import palette

from .instances import _put_label, _to_rgb, draw_instances


def draw_tracks(
    image: np.ndarray,
    bboxes: np.ndarray,
    ids: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    line_width: int | None = None,
) -> np.ndarray:
    """``image`` ((H, W, 3) uint8 RGB) with the tracks of one frame drawn: ``bboxes`` (N, 4)
    xyxy pixels, ``ids`` (N,) track ids (>= 1), ``labels`` (N,) indices into ``class_names``;
    each box is captioned ``"#id name"`` in its id's colour."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(ids) != len(labels) or (
        len(labels) and not 0 <= labels.min() <= labels.max() < len(class_names)
    ):
        raise ValueError(
            f"{len(ids)} ids and labels {labels.tolist()} for {len(class_names)} class names: "
            "need one label in [0, len(class_names)) per id"
        )
    captions = [f"#{i} {class_names[label]}" for i, label in zip(ids, labels)]
    colors = palette(int(ids.max(initial=0)) + 1)[ids]
    return draw_instances(
        image, bboxes, np.arange(len(ids)), captions, palette=colors, line_width=line_width
    )


def draw_fps(image: np.ndarray, fps: float) -> np.ndarray:
    """A copy of ``image`` ((H, W, 3) uint8 RGB) captioned ``"12.3 FPS"`` at its top left."""
    out = _to_rgb(image)
    _put_label(out, f"{fps:.1f} FPS", 0, 0, (0, 0, 0))
    return out
