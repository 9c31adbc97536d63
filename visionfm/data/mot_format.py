"""MOT-challenge text files (Milan et al. 2016, "MOT16: A Benchmark for Multi-Object Tracking"):
one box per line, ``frame,id,x,y,w,h,conf,-1,-1,-1``.

``frame`` counts from 1; ``id`` is the track (or ground-truth object) id; ``x, y, w, h`` is the
box's top-left corner and size in the image's pixels (as COCO's ``bbox``); ``conf`` is the
detection score in predictions and 1 in ground truth (0 there marks a box to ignore, which
:func:`read_mot` drops, as the MOT-challenge evaluation does). The last three columns are
not used for 2D boxes (-1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["read_mot", "write_mot"]


def write_mot(path: str | os.PathLike, frames: Iterable[Mapping[str, np.ndarray]]) -> None:
    """Write ``frames`` (the first is frame 1) to ``path``: each a mapping with ``ids`` (M,),
    ``bboxes`` (M, 4) xyxy pixels and optionally ``scores`` (M,) (default 1)."""
    lines = []
    for frame, tracks in enumerate(frames, start=1):
        ids = np.asarray(tracks["ids"]).reshape(-1)
        boxes = np.asarray(tracks["bboxes"], np.float64).reshape(-1, 4)
        scores = tracks.get("scores")
        scores = np.ones(len(ids)) if scores is None else np.asarray(scores).reshape(-1)
        for track_id, (x1, y1, x2, y2), score in zip(ids, boxes, scores):
            lines.append(
                f"{frame},{int(track_id)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                f"{float(score):.4f},-1,-1,-1\n"
            )
    with open(path, "w") as f:
        f.writelines(lines)


def read_mot(path: str | os.PathLike) -> np.ndarray:
    """The boxes of a MOT-challenge file as (N, 7) float64 rows ``frame, id, x, y, w, h,
    conf``, sorted by frame then id; rows with ``conf == 0`` are left out.

    A line that is not at least 6 comma-separated numbers, a frame below 1, a non-integer
    frame or id, a box without area or an id twice in one frame is refused (ValueError
    naming the file and line); blank lines are skipped.
    """
    rows, seen = [], {}
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                values = [float(v) for v in line.strip().split(",")]
            except ValueError:
                values = []
            if len(values) < 6:
                raise ValueError(
                    f"{where}: expected 'frame,id,x,y,w,h,conf,...' (at least 6 numbers), "
                    f"got {line.strip()!r}"
                )
            frame, track_id, x, y, w, h = values[:6]
            conf = values[6] if len(values) > 6 else 1.0
            if frame < 1 or frame != int(frame) or track_id != int(track_id):
                raise ValueError(
                    f"{where}: frame (from 1) and id must be integers, got {frame:g}, {track_id:g}"
                )
            if not (w > 0 and h > 0):
                raise ValueError(f"{where}: the box has no area (w={w:g}, h={h:g})")
            key = (int(frame), int(track_id))
            if key in seen:
                raise ValueError(
                    f"{where}: id {key[1]} is already in frame {key[0]} (line {seen[key]})"
                )
            seen[key] = number
            if conf != 0:
                rows.append([frame, track_id, x, y, w, h, conf])
    out = np.array(rows, np.float64).reshape(-1, 7)
    return out[np.lexsort((out[:, 1], out[:, 0]))]
