"""Class colours: one deterministic palette for datasets' ``metainfo['palette']`` and drawing."""

from __future__ import annotations

import colorsys

import numpy as np


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


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``palette(n)`` as a dataset's ``metainfo['palette']``: a list of RGB tuples."""
    return [tuple(c) for c in palette(n).tolist()]
