"""Multi-object tracking by detection: :class:`ByteTracker` (two-stage association with a
constant-velocity :class:`KalmanFilter`); its MOT-challenge text files are
read and written by :mod:`visionfm.data.mot_format`.

Not a registry family: the tracker is built by the tools from command-line flags, with plain
values (``ByteTracker(high_thr=0.5, ...)``).
"""

from .byte_tracker import ByteTracker, Track, linear_assignment
from .kalman import KalmanFilter, xyah_to_xyxy, xyxy_to_xyah

__all__ = [
    "ByteTracker",
    "KalmanFilter",
    "Track",
    "linear_assignment",
    "xyah_to_xyxy",
    "xyxy_to_xyah",
]
