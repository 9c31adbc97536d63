"""Constant-velocity Kalman filter on boxes as (cx, cy, aspect, h), as in SORT / DeepSORT /
ByteTrack (Zhang et al. 2022, "ByteTrack: Multi-Object Tracking by Associating Every Detection
Box").

State (8,): ``(cx, cy, a, h, vcx, vcy, va, vh)`` with ``a = w / h``; measurements (4,):
``(cx, cy, a, h)``. Process and measurement noise scale with the box height (ByteTrack's
weights 1/20 for positions, 1/160 for velocities); the aspect ratio gets fixed small noise.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) x1, y1, x2, y2 -> (..., 4) cx, cy, w / h, h."""
    boxes = np.asarray(boxes, np.float64)
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    cx, cy = boxes[..., 0] + w / 2, boxes[..., 1] + h / 2
    return np.stack([cx, cy, w / h, h], axis=-1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(..., 4) cx, cy, w / h, h -> (..., 4) x1, y1, x2, y2."""
    xyah = np.asarray(xyah, np.float64)
    w, h = xyah[..., 2] * xyah[..., 3], xyah[..., 3]
    return np.stack(
        [xyah[..., 0] - w / 2, xyah[..., 1] - h / 2, xyah[..., 0] + w / 2, xyah[..., 1] + h / 2],
        axis=-1,
    )


class KalmanFilter:
    """Predict / update of one track's ``(mean (8,), covariance (8, 8))``; one frame per step."""

    def __init__(
        self,
        std_weight_position: float = STD_WEIGHT_POSITION,
        std_weight_velocity: float = STD_WEIGHT_VELOCITY,
    ):
        self.motion = np.eye(8)  # F: position += velocity (dt = 1 frame)
        self.motion[:4, 4:] = np.eye(4)
        self.observation = np.eye(4, 8)  # H: the measurement is the position part
        self.w_pos, self.w_vel = std_weight_position, std_weight_velocity

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A new track at ``measurement`` (4,) (cx, cy, a, h), at rest: mean (8,), cov (8, 8)."""
        h = measurement[3]
        std = [
            *(2 * self.w_pos * h, 2 * self.w_pos * h, 1e-2, 2 * self.w_pos * h),
            *(10 * self.w_vel * h, 10 * self.w_vel * h, 1e-5, 10 * self.w_vel * h),
        ]
        mean = np.concatenate([np.asarray(measurement, np.float64), np.zeros(4)])
        return mean, np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead: ``F mean``, ``F cov F^T + Q`` (Q from the mean's height)."""
        h = mean[3]
        std = [
            *(self.w_pos * h, self.w_pos * h, 1e-2, self.w_pos * h),
            *(self.w_vel * h, self.w_vel * h, 1e-5, self.w_vel * h),
        ]
        mean = self.motion @ mean
        cov = self.motion @ cov @ self.motion.T + np.diag(np.square(std))
        return mean, cov

    def project(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The state in measurement space: ``H mean`` (4,), ``H cov H^T + R`` (4, 4)."""
        h = mean[3]
        std = [self.w_pos * h, self.w_pos * h, 1e-1, self.w_pos * h]
        projected = self.observation @ cov @ self.observation.T + np.diag(np.square(std))
        return self.observation @ mean, projected

    def update(
        self, mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct the predicted ``(mean, cov)`` by ``measurement`` (4,) (cx, cy, a, h)."""
        projected_mean, projected_cov = self.project(mean, cov)
        factor = scipy.linalg.cho_factor(projected_cov, lower=True, check_finite=False)
        # K = P H^T S^-1, solved as S K^T = H P  (S symmetric positive definite)
        gain = scipy.linalg.cho_solve(factor, self.observation @ cov, check_finite=False).T
        innovation = np.asarray(measurement, np.float64) - projected_mean
        return mean + gain @ innovation, cov - gain @ projected_cov @ gain.T
