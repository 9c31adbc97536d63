"""Textured backgrounds: gradients, smooth noise, stripes and checkerboards in muted colours."""

from __future__ import annotations

import cv2
import numpy as np

TEXTURES = ("gradient", "noise", "stripes", "checker")


def muted_color(rng: np.random.Generator) -> np.ndarray:
    """(3,) float RGB, desaturated and mid-bright so the saturated objects stand out."""
    c = rng.uniform(50, 200, 3)
    return 0.45 * c + 0.55 * c.mean()


def render_background(
    rng: np.random.Generator, height: int, width: int, texture: str | None = None
) -> np.ndarray:
    """(H, W, 3) float32 RGB background in [0, 255] with a random (or the given) texture."""
    texture = texture or TEXTURES[rng.integers(len(TEXTURES))]
    c0, c1 = muted_color(rng).astype(np.float32), muted_color(rng).astype(np.float32)
    xs = np.arange(width, dtype=np.float32)[None, :]  # (1, W)
    ys = np.arange(height, dtype=np.float32)[:, None]  # (H, 1)
    phi = rng.uniform(0, np.pi)
    along = xs * np.float32(np.cos(phi)) + ys * np.float32(np.sin(phi))  # (H, W) along a direction
    if texture == "gradient":
        t = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    elif texture == "noise":
        cells = rng.uniform(0, 1, (int(rng.integers(3, 8)), int(rng.integers(3, 8))))
        t = cv2.resize(cells.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        t = np.clip(t, 0, 1)
    elif texture == "stripes":
        period = rng.uniform(8, 32)
        t = 0.5 + 0.5 * np.sin(along * np.float32(2 * np.pi / period))
    elif texture == "checker":
        cell = rng.uniform(10, 28)
        t = (np.floor(xs / cell) + np.floor(ys / cell)) % 2
        t = 0.25 + 0.5 * t  # soften the contrast so it is not mistaken for a square
    else:
        raise ValueError(f"unknown texture {texture!r}; choose from {TEXTURES}")
    t = t[..., None] + rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(0.04)
    bg = c0 + (c1 - c0) * t  # fine grain rides on the blend
    return np.clip(bg, 0, 255, out=bg)
