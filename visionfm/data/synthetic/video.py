"""Short clips: objects move at constant velocity over a fixed background and bounce off the borders.

Polygon shapes also spin at a constant rate; persons swing arms and legs. Every
frame is a :class:`Scene` (annotated exactly like a still image); each object keeps
its ``instance_id`` (1..N within the clip) and its depth, so occlusion order is
fixed while the objects pass over each other.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .background import render_background
from .scene import SHAPE_HALF_EXTENT, Scene, compose, sample_objects
from .shapes import person_extent
from .world import PERSON_ID

# Pose components that swing in videos: arms in antiphase, legs in antiphase.
SWING = np.array([1.0, 0.3, -1.0, 0.3, -0.4, 0.2, 0.4, 0.2, 0.0])


def render_video(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_frames: int,
    num_objects: int | None = None,
    max_objects: int = 5,
) -> list[Scene]:
    """``num_frames`` scenes of 1..max_objects (or ``num_objects``) moving objects."""
    if num_objects is None:
        num_objects = int(rng.integers(1, max_objects + 1))
    background = render_background(rng, height, width)
    specs = sample_objects(rng, height, width, num_objects)

    tracks = []
    for i, spec in enumerate(specs):
        person = spec.category_id == PERSON_ID
        if person:
            hx, hy = person_extent(spec.scale)
        else:
            hx = hy = SHAPE_HALF_EXTENT * spec.scale
        # Bounce limits keep the whole object inside the frame (centre if it cannot fit).
        lo = np.array([min(hx, width / 2), min(hy, height / 2)])
        hi = np.array([max(width - hx, width / 2), max(height - hy, height / 2)])
        heading = rng.uniform(0, 2 * np.pi)
        tracks.append(
            {
                "spec": replace(spec, instance_id=i + 1),
                "pos": np.clip(np.array(spec.center), lo, hi),
                "vel": rng.uniform(1.5, 5.0) * np.array([np.cos(heading), np.sin(heading)]),
                "lo": lo,
                "hi": hi,
                "spin": 0.0 if person else float(rng.uniform(-0.06, 0.06)),
                "swing": (rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.7), rng.uniform(0, 2 * np.pi)),
            }
        )

    frames = []
    for t in range(num_frames):
        frame_specs = []
        for tr in tracks:
            spec = tr["spec"]
            pose = spec.pose
            if pose is not None:
                amp, freq, phase = tr["swing"]
                pose = tuple(
                    float(p) for p in np.array(pose) + amp * np.sin(freq * t + phase) * SWING
                )
            frame_specs.append(
                replace(
                    spec,
                    center=(round(float(tr["pos"][0]), 2), round(float(tr["pos"][1]), 2)),
                    angle=spec.angle + tr["spin"] * t,
                    pose=pose,
                )
            )
        frames.append(compose(background, frame_specs))
        for tr in tracks:  # constant velocity, reflect at the limits
            pos, vel = tr["pos"] + tr["vel"], tr["vel"]
            for axis in range(2):
                if pos[axis] < tr["lo"][axis]:
                    pos[axis], vel[axis] = 2 * tr["lo"][axis] - pos[axis], -vel[axis]
                elif pos[axis] > tr["hi"][axis]:
                    pos[axis], vel[axis] = 2 * tr["hi"][axis] - pos[axis], -vel[axis]
            tr["pos"] = np.clip(pos, tr["lo"], tr["hi"])
    return frames
