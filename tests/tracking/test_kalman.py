"""The tracker's Kalman filter against a predict / update worked out by hand, and the box
conversions against a hand-made box."""

import numpy as np
import pytest

from visionfm.tracking import KalmanFilter, xyah_to_xyxy, xyxy_to_xyah


def test_box_conversions_round_trip():
    box = np.array([10.0, 20.0, 50.0, 120.0])  # w 40, h 100
    np.testing.assert_allclose(xyxy_to_xyah(box), [30.0, 70.0, 0.4, 100.0])
    np.testing.assert_allclose(xyah_to_xyxy(xyxy_to_xyah(box)), box)


def test_predict_then_update_matches_the_hand_computed_filter():
    """h = 100: position std 100/20 = 5, velocity std 100/160 = 0.625. Each coordinate (cx, cy,
    h) is a (position, velocity) pair independent of the others, so the numbers below are the
    2x2 filter written out."""
    kf = KalmanFilter()
    mean, cov = kf.initiate(np.array([50.0, 80.0, 0.5, 100.0]))
    p0, v0 = (2 * 5.0) ** 2, (10 * 0.625) ** 2  # 100, 39.0625
    np.testing.assert_allclose(np.diag(cov)[[0, 4]], [p0, v0])
    np.testing.assert_allclose(np.diag(cov)[[2, 6]], [1e-4, 1e-10])

    mean, cov = kf.predict(mean, cov)
    p, c, v = p0 + v0 + 5.0**2, v0, v0 + 0.625**2  # F P F^T + Q: 164.0625, 39.0625, 39.453125
    np.testing.assert_allclose(mean, [50.0, 80.0, 0.5, 100.0, 0, 0, 0, 0])
    np.testing.assert_allclose(cov[0, 0], p)
    np.testing.assert_allclose(cov[0, 4], c)
    np.testing.assert_allclose(cov[4, 4], v)
    np.testing.assert_allclose(cov[0, 1], 0.0)

    # the box moved 10 px right: innovation 10 on cx, S = p + R = 164.0625 + 25 = 189.0625
    mean, cov = kf.update(mean, cov, np.array([60.0, 80.0, 0.5, 100.0]))
    s = p + 5.0**2
    assert mean[0] == pytest.approx(50 + p / s * 10)  # 58.6777
    assert mean[4] == pytest.approx(c / s * 10)  # 2.0661 px / frame
    assert mean[1] == pytest.approx(80.0) and mean[5] == pytest.approx(0.0)
    assert cov[0, 0] == pytest.approx(p - p * p / s)  # (1 - K) P
    assert cov[0, 4] == pytest.approx(c - p * c / s)
    assert cov[4, 4] == pytest.approx(v - c * c / s)
    # aspect: S = P_a + 0.1^2, the measured aspect is the predicted one: the mean keeps it
    assert mean[2] == pytest.approx(0.5)

    mean, _ = kf.predict(mean, cov)  # constant velocity: cx moves on by its velocity
    assert mean[0] == pytest.approx(50 + p / s * 10 + c / s * 10)
