"""Geometry and rasterization of the shape classes and of the articulated stick figure.

Coordinates are image pixels, x right and y down; pixel (i, j) covers
[j, j + 1) x [i, i + 1), as in COCO. Polygons are rasterized with pycocotools,
so a polygon written to a COCO json decodes (``annToMask``) to exactly the mask
that was painted.
"""

from __future__ import annotations

import cv2
import numpy as np
import pycocotools.mask as mask_utils

from .world import KEYPOINT_NAMES

# Geometry of each shape relative to its ``scale`` (the object's nominal extent, px).
CIRCLE_VERTICES = 48
SQUARE_SIDE = 0.8
TRIANGLE_RADIUS = 0.58
STAR_OUTER, STAR_INNER = 0.6, 0.3

# Stick-figure proportions as fractions of the figure's height.
HEAD_R = 0.085
NECK_LEN = 0.13  # neck joint -> head centre
TORSO_LEN = 0.33  # neck joint -> pelvis
SHOULDER_HALF, HIP_HALF = 0.12, 0.075
UPPER_ARM, FOREARM = 0.16, 0.15
THIGH, SHIN = 0.23, 0.22
LIMB_WIDTH = 0.05

# Person pose vector (radians, except yaw which is a -1..1 factor):
# [l_arm, l_elbow, r_arm, r_elbow, l_leg, l_knee, r_leg, r_knee, yaw]. Arm/leg angles
# are measured from straight down, positive = away from the body.
POSE_LOW = np.array([-0.2, -1.6, -0.2, -1.6, 0.0, -0.6, 0.0, -0.6, -0.6])
POSE_HIGH = np.array([2.6, 1.6, 2.6, 1.6, 0.45, 0.6, 0.45, 0.6, 0.6])


def regular_polygon(n: int, radius: float, center: tuple[float, float], angle: float) -> np.ndarray:
    """(n, 2) vertices of a regular n-gon, first vertex at ``angle`` radians from +x."""
    t = angle + 2 * np.pi * np.arange(n) / n
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], axis=1)


def shape_polygon(
    category: str, center: tuple[float, float], scale: float, angle: float
) -> np.ndarray:
    """(V, 2) outline of a circle / square / triangle / star of nominal extent ``scale`` px."""
    if category == "circle":
        return regular_polygon(CIRCLE_VERTICES, scale / 2, center, angle)
    if category == "square":
        return regular_polygon(4, SQUARE_SIDE * scale / np.sqrt(2), center, angle + np.pi / 4)
    if category == "triangle":
        return regular_polygon(3, TRIANGLE_RADIUS * scale, center, angle - np.pi / 2)
    if category == "star":
        outer = regular_polygon(5, STAR_OUTER * scale, center, angle - np.pi / 2)
        inner = regular_polygon(5, STAR_INNER * scale, center, angle - np.pi / 2 + np.pi / 5)
        return np.stack([outer, inner], axis=1).reshape(10, 2)
    raise ValueError(f"not a polygon shape: {category!r}")


def clip_polygon(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip a convex (V, 2) polygon to the image rectangle [0, width] x [0, height].

    Sutherland-Hodgman against the four borders; returns (V', 2), V' may be 0.
    """
    out = poly
    for axis, limit, keep_below in (
        (0, 0.0, False),
        (0, width, True),
        (1, 0.0, False),
        (1, height, True),
    ):
        if len(out) == 0:
            break
        inside = out[:, axis] <= limit if keep_below else out[:, axis] >= limit
        clipped = []
        for i in range(len(out)):
            cur, prev = out[i], out[i - 1]
            if inside[i] != inside[i - 1]:  # edge crosses the border: add the crossing
                t = (limit - prev[axis]) / (cur[axis] - prev[axis])
                clipped.append(prev + t * (cur - prev))
            if inside[i]:
                clipped.append(cur)
        out = np.array(clipped).reshape(-1, 2)
    return out


def rasterize_polygon(poly: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a (V, 2) polygon, exactly as pycocotools decodes it from json."""
    if len(poly) < 3:
        return np.zeros((height, width), bool)
    rles = mask_utils.frPyObjects([poly.reshape(-1).tolist()], height, width)
    return mask_utils.decode(rles)[:, :, 0].astype(bool)


def person_keypoints(
    center: tuple[float, float], height: float, angle: float, pose: np.ndarray
) -> np.ndarray:
    """(17, 2) COCO keypoints of a stick figure facing the camera.

    center: the pelvis (midpoint of the hips), px; height: head top to ankles, px;
    angle: body tilt in radians (0 = upright); pose: the 9-vector described above.
    """
    c, s = np.cos(angle), np.sin(angle)
    up = np.array([s, -c])  # towards the head
    right = np.array([c, s])  # image right = the person's left
    down = -up

    def limb_dir(theta: float, side: float) -> np.ndarray:  # side +1: person's left
        return down * np.cos(theta) + side * right * np.sin(theta)

    pelvis = np.asarray(center, float)
    neck = pelvis + TORSO_LEN * height * up
    head = neck + NECK_LEN * height * up
    r = HEAD_R * height
    yaw = pose[8]
    kp = {}
    kp["nose"] = head + 0.45 * yaw * r * right - 0.1 * r * up
    for side, name in ((1, "left"), (-1, "right")):
        kp[f"{name}_eye"] = head + (0.45 * yaw + 0.38 * side) * r * right + 0.25 * r * up
        kp[f"{name}_ear"] = head + (0.1 * yaw + 0.95 * side) * r * right + 0.05 * r * up
        shoulder = neck + side * SHOULDER_HALF * height * right
        hip = pelvis + side * HIP_HALF * height * right
        i = 0 if side == 1 else 2
        arm, elbow_bend = pose[i], pose[i + 1]
        leg, knee_bend = pose[4 + i], pose[5 + i]
        elbow = shoulder + UPPER_ARM * height * limb_dir(arm, side)
        wrist = elbow + FOREARM * height * limb_dir(arm + elbow_bend, side)
        knee = hip + THIGH * height * limb_dir(leg, side)
        ankle = knee + SHIN * height * limb_dir(leg + knee_bend, side)
        kp.update(
            {
                f"{name}_shoulder": shoulder,
                f"{name}_elbow": elbow,
                f"{name}_wrist": wrist,
                f"{name}_hip": hip,
                f"{name}_knee": knee,
                f"{name}_ankle": ankle,
            }
        )
    return np.stack([kp[n] for n in KEYPOINT_NAMES])


def rasterize_person(keypoints: np.ndarray, height: float, img_h: int, img_w: int) -> np.ndarray:
    """(H, W) bool mask of the stick figure drawn from its (17, 2) keypoints.

    Head disc around the eyes/ears, neck, filled torso quadrilateral, and limbs
    as thick round-capped lines.
    """
    canvas = np.zeros((img_h, img_w), np.uint8)
    shift = 4  # sub-pixel precision of cv2's drawing: coordinates in 1/16 px

    def pt(p: np.ndarray) -> tuple[int, int]:
        return int(round(p[0] * 16)), int(round(p[1] * 16))

    k = keypoints
    width = max(2, int(round(LIMB_WIDTH * height)))
    shoulders_mid = (k[5] + k[6]) / 2
    ears_mid = (k[3] + k[4]) / 2
    head_r = np.linalg.norm(k[3] - k[4]) / 2 / 0.95
    cv2.circle(canvas, pt(ears_mid), int(round(head_r * 16)), 1, -1, cv2.LINE_8, shift)
    cv2.line(canvas, pt(shoulders_mid), pt(ears_mid), 1, width, cv2.LINE_8, shift)
    torso = np.stack([k[5], k[6], k[12], k[11]])
    cv2.fillConvexPoly(canvas, np.round(torso * 16).astype(np.int32), 1, cv2.LINE_8, shift)
    for a, b, w in ((5, 7, width), (7, 9, width), (6, 8, width), (8, 10, width)):
        cv2.line(canvas, pt(k[a]), pt(k[b]), 1, w, cv2.LINE_8, shift)
    leg_w = max(2, int(round(1.2 * width)))
    for a, b in ((11, 13), (13, 15), (12, 14), (14, 16)):
        cv2.line(canvas, pt(k[a]), pt(k[b]), 1, leg_w, cv2.LINE_8, shift)
    return canvas.astype(bool)


def person_extent(height: float) -> tuple[float, float]:
    """Half-width and half-height (px) of the box a figure of ``height`` px can occupy."""
    return 0.45 * height, 0.55 * height
