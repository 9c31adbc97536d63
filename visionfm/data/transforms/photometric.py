"""Photometric (colour) transforms: change ``img`` only, never geometry or annotations."""

from __future__ import annotations

import cv2
import numpy as np

from visionfm.registry import TRANSFORMS

__all__ = ["PhotoMetricDistortion"]


@TRANSFORMS.register_module()
class PhotoMetricDistortion:
    """Random brightness, contrast, saturation and hue on an RGB uint8 ``img`` (H, W, 3).

    Each distortion is applied with probability ``prob``, in the order brightness,
    contrast (before or after the colour ones, 50/50), saturation, hue; as in SSD.

    Args:
        brightness_delta: add a value drawn from U(-delta, delta), in 0-255 units.
        contrast_range: multiply by a factor drawn from U(lo, hi).
        saturation_range: multiply HSV saturation by a factor drawn from U(lo, hi).
        hue_delta: rotate the hue by U(-delta, delta) degrees (of 360).
        prob: probability of each distortion.
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: float = 18,
        prob: float = 0.5,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_range = tuple(contrast_range)
        self.saturation_range = tuple(saturation_range)
        self.hue_delta = hue_delta
        self.prob = prob

    def _maybe(self) -> bool:
        return np.random.rand() < self.prob

    def __call__(self, results: dict) -> dict:
        img = results["img"].astype(np.float32)
        if self._maybe():
            img += np.random.uniform(-self.brightness_delta, self.brightness_delta)
        contrast_first = np.random.rand() < 0.5
        if contrast_first and self._maybe():
            img *= np.random.uniform(*self.contrast_range)
        saturation, hue = self._maybe(), self._maybe()
        if saturation or hue:
            hsv = cv2.cvtColor(
                np.clip(img, 0, 255), cv2.COLOR_RGB2HSV
            )  # H in [0, 360), S in [0, 1]
            if saturation:
                hsv[..., 1] = np.clip(hsv[..., 1] * np.random.uniform(*self.saturation_range), 0, 1)
            if hue:
                hsv[..., 0] = (
                    hsv[..., 0] + np.random.uniform(-self.hue_delta, self.hue_delta)
                ) % 360
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not contrast_first and self._maybe():
            img *= np.random.uniform(*self.contrast_range)
        results["img"] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        return results

    def __repr__(self) -> str:
        return (
            f"PhotoMetricDistortion(brightness_delta={self.brightness_delta}, "
            f"contrast_range={self.contrast_range}, saturation_range={self.saturation_range}, "
            f"hue_delta={self.hue_delta}, prob={self.prob})"
        )
