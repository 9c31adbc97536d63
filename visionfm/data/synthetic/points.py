"""Synthetic point clouds: single shapes for classification, rooms for segmentation.

Shapes (``SHAPES``, label = index) are sampled uniformly on their surfaces with outward
unit normals, in a canonical frame (sphere of radius 1; cube ``[-1, 1]^3``; cylinder of
radius 1 over ``z in [-1, 1]``; cone with base radius 1 at ``z = -1`` and apex at
``z = 1``; torus of radii 1 and ``TORUS_MINOR``; square pyramid with base ``[-1, 1]^2`` at
``z = -1`` and apex ``(0, 0, 1)``), then scaled, rotated, shifted and jittered. A partial
view keeps only the points whose normals face a random viewing direction.

Scenes (``SCENE_CLASSES``: floor, wall, then the shapes) are a rectangular room with a
floor, four walls and several shapes standing on the floor, each point with a class label,
an instance id (-1 for floor and walls) and a colour.

``write_point_datasets(root, ...)`` writes them in the layouts real datasets use (see
``visionfm.data.points_io``), each item from its own generator seeded by
``(seed, stream, index)``::

    modelnet/                   ModelNet40 layout (txt + shape names + split files)
    scanobjectnn/{training,test}_objectdataset.h5   partial, noisy views
    scenes/{train,val}/scene_0000/  Pointcept folders (coord, color, normal, segment, instance)
    scenes_ply/{train,val}/scene_0000.ply           the same scenes as binary PLY
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionfm.data.points_io import (
    write_modelnet40,
    write_ply,
    write_pointcept_scene,
    write_scanobjectnn_h5,
)

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid")
SCENE_CLASSES = ("floor", "wall", *SHAPES)
TORUS_MINOR = 0.35
_STREAMS = {"modelnet": 0, "scanobjectnn": 1, "scene": 2}
_SCENE_COLORS = np.array(  # floor, wall, then one base colour per shape (RGB 0..255)
    [[150, 110, 70], [200, 200, 190], [220, 40, 40], [40, 160, 60], [40, 80, 220],
     [230, 200, 30], [160, 60, 200], [30, 200, 200]], np.float32
)  # fmt: skip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _triangles(rng: np.random.Generator, tris: np.ndarray, n: int):
    """Uniform samples on triangles ``tris`` (T, 3 corners, 3) -> (points, normals) (n, 3);
    normals are the right-handed ``(b - a) x (c - a)`` directions."""
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    cross = np.cross(b - a, c - a)
    area = np.linalg.norm(cross, axis=1)
    k = rng.choice(len(tris), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    points = a[k] + u[:, None] * (b - a)[k] + v[:, None] * (c - a)[k]
    return points, _unit(cross[k])


def sample_surface(rng: np.random.Generator, shape: str, n: int):
    """``n`` uniform surface samples of the canonical ``shape`` -> (points, unit normals),
    float64 (n, 3)."""
    theta = rng.uniform(0, 2 * np.pi, n)
    ring = np.stack([np.cos(theta), np.sin(theta), np.zeros(n)], axis=1)
    z = np.array([0.0, 0.0, 1.0])
    if shape == "sphere":
        points = _unit(rng.standard_normal((n, 3)))
        return points, points.copy()
    if shape == "cube":  # six faces of equal area
        axis, sign = rng.integers(0, 3, n), rng.choice([-1.0, 1.0], n)
        points = rng.uniform(-1, 1, (n, 3))
        points[np.arange(n), axis] = sign
        normals = np.zeros((n, 3))
        normals[np.arange(n), axis] = sign
        return points, normals
    if shape == "cylinder":  # side area 4 pi, caps pi each
        part = rng.choice(3, n, p=[2 / 3, 1 / 6, 1 / 6])
        radius = np.where(part == 0, 1.0, np.sqrt(rng.random(n)))
        height = np.where(part == 0, rng.uniform(-1, 1, n), np.where(part == 1, 1.0, -1.0))
        points = radius[:, None] * ring + height[:, None] * z
        normals = np.where((part == 0)[:, None], ring, np.where(part == 1, 1.0, -1.0)[:, None] * z)
        return points, normals
    if shape == "cone":  # lateral area pi sqrt(5), base pi
        side = rng.random(n) < np.sqrt(5) / (np.sqrt(5) + 1)
        t = np.sqrt(rng.random(n))  # distance from the apex (side) or centre (base), 0..1
        points = t[:, None] * ring + np.where(side, 1 - 2 * t, -1.0)[:, None] * z
        normals = np.where(side[:, None], _unit(2 * ring + z), -z)
        return points, normals
    if shape == "torus":  # area element ~ (1 + r cos phi): rejection sampling on phi
        phi = np.empty(0)
        while len(phi) < n:
            cand = rng.uniform(0, 2 * np.pi, 2 * n)
            keep = rng.uniform(0, 1 + TORUS_MINOR, 2 * n) < 1 + TORUS_MINOR * np.cos(cand)
            phi = np.concatenate([phi, cand[keep]])
        phi = phi[:n]
        normals = np.cos(phi)[:, None] * ring + np.sin(phi)[:, None] * z
        return ring + TORUS_MINOR * normals, normals
    if shape == "pyramid":
        base = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1]], np.float64)
        apex = np.array([0.0, 0.0, 1.0])
        sides = [[base[i], base[(i + 1) % 4], apex] for i in range(4)]
        bottom = [[base[0], base[2], base[1]], [base[0], base[3], base[2]]]
        return _triangles(rng, np.array(sides + bottom), n)
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (3, 3), determinant +1."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@dataclass
class ShapeCloud:
    """One posed shape: ``coord = scale * canonical @ rotation.T + translation + noise``."""

    coord: np.ndarray  # float32 (N, 3)
    normal: np.ndarray  # float32 (N, 3), unit length
    label: int  # index into SHAPES
    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)


def make_shape_cloud(
    rng: np.random.Generator,
    label: int,
    num_points: int,
    noise: float = 0.01,
    partial: bool = False,
    scale_range: tuple[float, float] = (0.6, 1.0),
) -> ShapeCloud:
    """Shape ``SHAPES[label]`` with ``num_points`` points in a random pose; ``noise`` is the
    Gaussian jitter's standard deviation (relative to the canonical size); ``partial``
    keeps only the side facing a random viewing direction."""
    points, normals = sample_surface(rng, SHAPES[label], 4 * num_points if partial else num_points)
    if partial:
        facing = np.flatnonzero(normals @ _unit(rng.standard_normal(3)) > 0)
        keep = rng.choice(facing, num_points, replace=len(facing) < num_points)
        points, normals = points[keep], normals[keep]
    scale = float(rng.uniform(*scale_range))
    rotation = random_rotation(rng)
    translation = rng.uniform(-0.1, 0.1, 3)
    points = points + noise * rng.standard_normal(points.shape)
    coord = scale * points @ rotation.T + translation
    normal = normals @ rotation.T
    return ShapeCloud(
        coord.astype(np.float32), normal.astype(np.float32), label, scale, rotation, translation
    )


def make_scene_cloud(
    rng: np.random.Generator, num_points: int, num_objects: tuple[int, int] = (2, 5)
) -> dict:
    """A room: floor at ``z = 0``, walls of height 1.5 around ``[0, W] x [0, D]``, and
    shapes standing on the floor -> cloud (``coord``, ``color``, ``normal``, ``segment``
    into ``SCENE_CLASSES``, ``instance``) with ``num_points`` points."""
    width, depth = rng.uniform(4, 6, 2)
    count = int(rng.integers(num_objects[0], num_objects[1] + 1))
    n_floor, n_wall = num_points // 4, num_points // 4
    per_object = np.full(count, (num_points - n_floor - n_wall) // count)
    per_object[: (num_points - n_floor - n_wall) % count] += 1
    parts = []  # (coord, normal, class id, instance id)
    floor = np.stack([rng.uniform(0, width, n_floor), rng.uniform(0, depth, n_floor)], 1)
    floor = np.concatenate([floor, np.zeros((n_floor, 1))], 1)
    parts.append((floor, np.tile([0.0, 0.0, 1.0], (n_floor, 1)), 0, -1))
    which = rng.choice(
        4, n_wall, p=np.array([width, depth, width, depth]) / (2 * width + 2 * depth)
    )
    along, up = rng.random(n_wall), rng.uniform(0, 1.5, n_wall)
    wall = np.stack([
        np.select([which == 0, which == 1, which == 2], [along * width, width, along * width], 0),
        np.select([which == 0, which == 1, which == 2], [0, along * depth, depth], along * depth),
        up,
    ], 1)  # fmt: skip
    inward = np.array([[0, 1, 0], [-1, 0, 0], [0, -1, 0], [1, 0, 0]], np.float64)[which]
    parts.append((wall, inward, 1, -1))
    cells = rng.permutation(16)[:count]  # objects on a 4 x 4 grid of cells, one each
    for i, (cell, n) in enumerate(zip(cells, per_object, strict=True)):
        label = int(rng.integers(len(SHAPES)))
        size = rng.uniform(0.25, 0.35)  # at most 0.5 wide across: inside its cell
        points, normals = sample_surface(rng, SHAPES[label], int(n))
        angle = rng.uniform(0, 2 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        lift = TORUS_MINOR if SHAPES[label] == "torus" else 1.0  # stand on z = 0
        centre = [(cell % 4 + 0.5) * width / 4, (cell // 4 + 0.5) * depth / 4, size * lift]
        parts.append((size * points @ rotation.T + centre, normals @ rotation.T, 2 + label, i))
    coord = np.concatenate([p[0] for p in parts])
    segment = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    instance = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
    color = _SCENE_COLORS[segment] + rng.normal(0, 12, (len(coord), 3))
    return {
        "coord": coord.astype(np.float32),
        "color": np.clip(np.round(color), 0, 255).astype(np.float32),
        "normal": np.concatenate([p[1] for p in parts]).astype(np.float32),
        "segment": segment.astype(np.int64),
        "instance": instance.astype(np.int64),
    }


def _rng(seed: int, stream: str, index: int) -> np.random.Generator:
    return np.random.default_rng((seed, _STREAMS[stream], index))


def _shapes(seed: int, stream: str, start: int, count: int, num_points: int, **kwargs):
    """Shapes ``start .. start + count`` of ``stream``; labels cycle through ``SHAPES``."""
    return [
        make_shape_cloud(_rng(seed, stream, i), i % len(SHAPES), num_points, **kwargs)
        for i in range(start, start + count)
    ]


def write_point_datasets(
    root: str | os.PathLike,
    num_train: int = 600,
    num_val: int = 240,
    num_points: int = 1024,
    num_scenes: tuple[int, int] = (48, 12),
    scene_points: int = 8192,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the classification shapes (ModelNet40 layout, ScanObjectNN ``.h5``) and the
    segmentation scenes (Pointcept folders, PLY) under ``root``; -> their paths. Labels
    cycle through the classes."""
    root = Path(root)
    splits = (("train", "training", num_train, 0), ("test", "test", num_val, num_train))
    modelnet = {}
    (root / "scanobjectnn").mkdir(parents=True, exist_ok=True)
    for split, h5_name, size, start in splits:
        clean = _shapes(seed, "modelnet", start, size, num_points, noise=0.01, partial=False)
        modelnet[split] = [(c.label, {"coord": c.coord, "normal": c.normal}) for c in clean]
        scans = _shapes(seed, "scanobjectnn", start, size, num_points, noise=0.02, partial=True)
        write_scanobjectnn_h5(
            root / "scanobjectnn" / f"{h5_name}_objectdataset.h5",
            np.stack([c.coord for c in scans]),
            np.array([c.label for c in scans]),
        )
    write_modelnet40(root / "modelnet", SHAPES, modelnet)
    for split, count, start in (("train", num_scenes[0], 0), ("val", num_scenes[1], num_scenes[0])):
        (root / "scenes_ply" / split).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            scene = make_scene_cloud(_rng(seed, "scene", start + k), scene_points)
            write_pointcept_scene(root / "scenes" / split / f"scene_{k:04d}", scene)
            write_ply(root / "scenes_ply" / split / f"scene_{k:04d}.ply", scene)
    return {
        "modelnet": root / "modelnet",
        "scanobjectnn": root / "scanobjectnn",
        "scenes": root / "scenes",
        "scenes_ply": root / "scenes_ply",
    }
