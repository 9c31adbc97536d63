"""Fixed vocabulary of the synthetic world: classes, colours, sizes, keypoints, depth range.

Everything that other modules (and other people's readers) rely on lives here,
so the names and ids are written down once.
"""

from __future__ import annotations

import numpy as np

# Category names in id order: category id k (1-based, as in the COCO json and the
# semantic PNGs) is CLASSES[k - 1]. Model-side labels are 0-based: label = id - 1.
CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "person")
# Class names of the semantic PNGs: value k is SEMANTIC_CLASSES[k], 0 = background.
SEMANTIC_CLASSES: tuple[str, ...] = ("background", *CLASSES)
PERSON_ID = 5
# Shapes whose unoccluded visible mask is a convex polygon: written as COCO polygons.
CONVEX_IDS = frozenset({1, 2, 3})

# Object colours (name -> RGB). Saturated, so they stand out from the muted backgrounds.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (250, 140, 30),
    "cyan": (40, 210, 220),
}

# Size classes: object extent as a fraction of the image's shorter side (persons are
# PERSON_SCALE times taller than a shape of the same class). Gaps between the ranges
# keep "small/medium/large" unambiguous to a reader of the image.
SIZES: dict[str, tuple[float, float]] = {
    "small": (0.16, 0.22),  # a small square is >= 16 px wide in a 128 px image
    "medium": (0.27, 0.35),
    "large": (0.41, 0.50),
}
PERSON_SCALE = 1.8

# Depth (metres). Objects sit in front of a background plane that recedes upwards.
OBJECT_DEPTH = (0.8, 3.0)
BACKGROUND_DEPTH_TOP = 5.0  # at image row 0
BACKGROUND_DEPTH_BOTTOM = 3.2  # at the last image row
MIN_DEPTH_GAP = 0.05  # distinct objects differ by at least this much

# Objects with fewer visible pixels than this are removed from the scene entirely
# (not drawn, not annotated), so image, masks, semantic map and depth always agree.
MIN_VISIBLE_PIXELS = 20

# COCO person keypoints, in COCO order. "left" is the person's left: the figures face
# the camera, so left_* keypoints appear on the image's right.
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
# COCO skeleton: 1-based keypoint index pairs, exactly as in COCO's person category.
# Subtract 1 for 0-based drawing code (e.g. visionfm.visualization.draw_instances).
SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (9, 11),
    (2, 3),
    (1, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
)


def coco_categories() -> list[dict]:
    """The COCO ``categories`` list: ids 1..5 in CLASSES order; person carries keypoints."""
    cats = []
    for i, name in enumerate(CLASSES, start=1):
        cat = {"id": i, "name": name, "supercategory": "person" if i == PERSON_ID else "shape"}
        if i == PERSON_ID:
            cat["keypoints"] = list(KEYPOINT_NAMES)
            cat["skeleton"] = [list(pair) for pair in SKELETON]
        cats.append(cat)
    return cats


def background_depth(height: int) -> np.ndarray:
    """(height,) float64 depth in metres of the background plane, top row to bottom row."""
    return np.linspace(BACKGROUND_DEPTH_TOP, BACKGROUND_DEPTH_BOTTOM, height)
