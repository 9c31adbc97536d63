"""ByteTrack (Zhang et al., ECCV 2022, "ByteTrack: Multi-Object Tracking by Associating Every
Detection Box"): tracking by detection with a Kalman motion model and two-stage association.

Per frame:

1. every track's box is predicted one frame ahead (:class:`~.kalman.KalmanFilter`);
2. high-score detections (``score >= high_thr``) are matched to the tracked and lost tracks
   by IoU with the predicted boxes (``IoU >= match_iou``);
3. low-score detections (``low_thr <= score < high_thr``: occluded, blurred objects) are
   matched to the tracks still unmatched that were tracked in the previous frame
   (``IoU >= low_match_iou``); the tracks left over become lost;
4. tentative tracks (born in the previous frame) are matched to the high-score detections
   left (``IoU >= tentative_match_iou``), which confirms them; the others are dropped;
5. high-score detections left with ``score >= new_track_thr`` start tentative tracks
   (confirmed at once in the first frame); lost tracks unmatched for more than
   ``max_lost_frames`` frames are removed.

Each assignment is optimal (``scipy.optimize.linear_sum_assignment``) with unmatched rows and
columns allowed, as ByteTrack's ``lap.lapjv(..., extend_cost=True, cost_limit=...)``.
Detections match tracks of their own label only. A track gets its id when it is confirmed;
ids count up from 1 and are never reused. ``low_thr == high_thr`` turns the second stage off
(then this is SORT with ByteTrack's track management).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from visionfm.ops.boxes import box_iou

from .kalman import KalmanFilter, xyah_to_xyxy, xyxy_to_xyah

TENTATIVE, TRACKED, LOST = "tentative", "tracked", "lost"


def linear_assignment(
    cost: np.ndarray, max_cost: float
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost matching of the rows and columns of ``cost`` (N, M) where a pair costs at
    most ``max_cost`` and leaving a row or a column unmatched costs ``max_cost / 2`` (the
    extended problem of ``lap.lapjv(cost, extend_cost=True, cost_limit=max_cost)``).

    Returns ``(matches [(row, col)], unmatched rows, unmatched cols)``.
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    big = 1e6 + max_cost  # forbidden: costlier than leaving both unmatched
    extended = np.full((n + m, m + n), big)
    extended[:n, :m] = np.where(cost <= max_cost, cost, big)
    extended[np.arange(n), m + np.arange(n)] = max_cost / 2  # row i unmatched
    extended[n + np.arange(m), np.arange(m)] = max_cost / 2  # col j unmatched
    extended[n:, m:] = 0
    rows, cols = linear_sum_assignment(extended)
    matches = [(int(r), int(c)) for r, c in zip(rows, cols) if r < n and c < m]
    matched_rows, matched_cols = {r for r, _ in matches}, {c for _, c in matches}
    return (
        matches,
        [r for r in range(n) if r not in matched_rows],
        [c for c in range(m) if c not in matched_cols],
    )


@dataclass
class Track:
    """One object's Kalman state, its latest detection's label and score, and bookkeeping."""

    mean: np.ndarray  # (8,) cx, cy, a, h and their velocities
    cov: np.ndarray  # (8, 8)
    label: int
    score: float
    state: str = TENTATIVE
    track_id: int = 0  # 0 until confirmed
    last_frame: int = 0  # the frame it was last matched in

    @property
    def box(self) -> np.ndarray:
        """(4,) xyxy of the current state."""
        return xyah_to_xyxy(self.mean[:4])


class ByteTracker:
    """Feed it one frame's detections at a time (:meth:`update`); see the module doc.

    Defaults are ByteTrack's for MOT17 (``track_thresh`` 0.5 -> ``high_thr``, new tracks from
    ``new_track_thr`` = ``high_thr + 0.1``, ``match_thresh`` 0.8 -> ``match_iou`` 0.2, 0.5 / 0.3 for the second stage and the
    tentative tracks, a 30-frame buffer).
    """

    def __init__(
        self,
        high_thr: float = 0.5,
        low_thr: float = 0.1,
        new_track_thr: float | None = None,
        match_iou: float = 0.2,
        low_match_iou: float = 0.5,
        tentative_match_iou: float = 0.3,
        max_lost_frames: int = 30,
        kalman: KalmanFilter | None = None,
    ):
        if not 0 <= low_thr <= high_thr:
            raise ValueError(f"need 0 <= low_thr <= high_thr, got {low_thr} and {high_thr}")
        self.high_thr, self.low_thr = high_thr, low_thr
        self.new_track_thr = high_thr + 0.1 if new_track_thr is None else new_track_thr
        self.match_iou, self.low_match_iou = match_iou, low_match_iou
        self.tentative_match_iou = tentative_match_iou
        self.max_lost_frames = max_lost_frames
        self.kalman = kalman or KalmanFilter()
        self.tracks: list[Track] = []
        self.frame = 0
        self.next_id = 1

    def update(
        self, bboxes: np.ndarray, scores: np.ndarray, labels: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Advance by one frame with its detections: ``bboxes`` (N, 4) xyxy pixels, ``scores``
        (N,), ``labels`` (N,) (None: one class).

        Returns the confirmed tracks matched in this frame: ``bboxes`` (M, 4) xyxy (the
        Kalman-corrected boxes), ``ids`` (M,) int64, ``scores`` (M,) and ``labels`` (M,) of
        their detections.
        """
        bboxes = np.asarray(bboxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        labels = np.zeros(len(bboxes), np.int64) if labels is None else np.asarray(labels)
        if not len(bboxes) == len(scores) == len(labels.reshape(-1)):
            raise ValueError(
                f"{len(bboxes)} boxes, {len(scores)} scores and {len(labels)} labels: need one each"
            )
        labels = labels.reshape(-1).astype(np.int64)
        if np.any(bboxes[:, 2:] <= bboxes[:, :2]):
            raise ValueError(f"boxes must be xyxy with x2 > x1 and y2 > y1, got {bboxes.tolist()}")
        self.frame += 1
        for track in self.tracks:
            if track.state != TRACKED:  # ByteTrack: no height change while not seen
                track.mean[7] = 0.0
            track.mean, track.cov = self.kalman.predict(track.mean, track.cov)

        high = np.nonzero(scores >= self.high_thr)[0]
        low = np.nonzero((scores >= self.low_thr) & (scores < self.high_thr))[0]
        pool = [t for t in self.tracks if t.state in (TRACKED, LOST)]
        tentative = [t for t in self.tracks if t.state == TENTATIVE]

        # 1. high-score detections <-> tracked and lost tracks
        left, high = self._associate(pool, high, bboxes, scores, labels, self.match_iou)
        # 2. low-score detections <-> the tracks tracked until now and still unmatched
        was_tracked = [t for t in left if t.state == TRACKED]
        unmatched, _ = self._associate(was_tracked, low, bboxes, scores, labels, self.low_match_iou)
        for track in unmatched:
            track.state = LOST
        # 3. high-score detections left <-> tentative tracks: confirmed, or dropped
        dropped, high = self._associate(
            tentative, high, bboxes, scores, labels, self.tentative_match_iou
        )
        # 4. births, and the end of tracks lost for too long
        for i in high:
            if scores[i] >= self.new_track_thr:
                mean, cov = self.kalman.initiate(xyxy_to_xyah(bboxes[i]))
                track = Track(mean, cov, int(labels[i]), float(scores[i]), last_frame=self.frame)
                if self.frame == 1:
                    self._confirm(track)
                self.tracks.append(track)
        self.tracks = [
            t
            for t in self.tracks
            if not any(t is d for d in dropped)
            and not (t.state == LOST and self.frame - t.last_frame > self.max_lost_frames)
        ]
        shown = [t for t in self.tracks if t.state == TRACKED and t.last_frame == self.frame]
        return {
            "bboxes": np.array([t.box for t in shown], np.float64).reshape(-1, 4),
            "ids": np.array([t.track_id for t in shown], np.int64),
            "scores": np.array([t.score for t in shown], np.float64),
            "labels": np.array([t.label for t in shown], np.int64),
        }

    def _associate(
        self,
        tracks: list[Track],
        candidates: np.ndarray,
        bboxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        min_iou: float,
    ) -> tuple[list[Track], np.ndarray]:
        """Match ``tracks`` to the detections ``candidates`` (indices) by IoU of their predicted
        boxes (same label only), update the matched ones; returns the unmatched tracks and the
        unmatched detection indices."""
        if tracks and len(candidates):
            predicted = torch.from_numpy(np.stack([t.box for t in tracks]))
            iou = box_iou(predicted, torch.from_numpy(bboxes[candidates]))[0].numpy()
            same = np.array([t.label for t in tracks])[:, None] == labels[candidates][None, :]
            cost = np.where(same, 1.0 - iou, np.inf)
        else:
            cost = np.zeros((len(tracks), len(candidates)))
        matches, rows, cols = linear_assignment(cost, 1.0 - min_iou)
        for r, c in matches:
            track, i = tracks[r], candidates[c]
            track.mean, track.cov = self.kalman.update(
                track.mean, track.cov, xyxy_to_xyah(bboxes[i])
            )
            track.label, track.score, track.last_frame = (
                int(labels[i]),
                float(scores[i]),
                self.frame,
            )
            if track.state == TENTATIVE:
                self._confirm(track)
            track.state = TRACKED
        return [tracks[r] for r in rows], candidates[cols]

    def _confirm(self, track: Track) -> None:
        track.state, track.track_id = TRACKED, self.next_id
        self.next_id += 1
