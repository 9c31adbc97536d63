"""Point-cloud transforms: callables on a results dict, registered in ``TRANSFORMS``.

A point results dict holds the per-point fields of a cloud (``visionfm.data.points_io``):
``coord`` float32 (N, 3) and, when present, ``color`` (N, 3) in 0..255, ``normal`` (N, 3)
unit vectors, ``segment`` int64 (N,) (-1 = ignored), ``instance`` int64 (N,); absent fields
are None or missing. Every transform keeps them consistent: a rotation or flip turns the
normals too, a scale renormalises them, and a transform that drops or picks points
(dropout, crop, grid sampling) takes the labels with the points. Randomness is drawn from
``np.random`` as the image transforms do. ``PackPointInputs`` ends the pipeline.

The random ones are named ``Point*`` to stay apart from the image transforms::

    train_pipeline = [
        dict(type='CentreShift'),
        dict(type='PointRandomRotate', axis='z', angle=(-180, 180)),
        dict(type='PointRandomScale', scale=(0.9, 1.1)),
        dict(type='PointRandomFlip', axis='x'),
        dict(type='PointRandomJitter', sigma=0.005, clip=0.02),
        dict(type='PointGridSample', grid_size=0.02),
        dict(type='SphereCrop', max_points=80000),
        dict(type='NormalizeColor'),
        dict(type='PackPointInputs', features=('color', 'normal')),
    ]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from visionfm.data.data_sample import DataSample
from visionfm.data.points_io import FIELD_WIDTHS
from visionfm.ops.point_grid import grid_sample
from visionfm.registry import TRANSFORMS

__all__ = [
    "CentreShift",
    "ElasticDistortion",
    "NormalizeColor",
    "NormalizeCoord",
    "PackPointInputs",
    "PointGridSample",
    "PointRandomDropout",
    "PointRandomFlip",
    "PointRandomJitter",
    "PointRandomRotate",
    "PointRandomScale",
    "SphereCrop",
    "take_points",
]

_AXES = {"x": 0, "y": 1, "z": 2}
POINT_META_KEYS = ("file", "num_points", "scene", "sample_idx", "grid_inverse", "fragments")


def _axis(axis: str) -> int:
    if axis not in _AXES:
        raise ValueError(f"axis must be one of {tuple(_AXES)}, got {axis!r}")
    return _AXES[axis]


def take_points(results: dict, keep: np.ndarray) -> dict:
    """Keep the points ``keep`` (index array or (N,) bool mask) of every per-point field."""
    for name in FIELD_WIDTHS:
        if results.get(name) is not None:
            results[name] = results[name][keep]
    return results


def rotation_matrix(axis: str, angle: float) -> np.ndarray:
    """(3, 3) right-handed rotation by ``angle`` radians about ``axis``."""
    i = _axis(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    c, s = np.cos(angle), np.sin(angle)
    rot = np.eye(3)
    rot[j, j], rot[j, k], rot[k, j], rot[k, k] = c, -s, s, c
    return rot


@TRANSFORMS.register_module()
class CentreShift:
    """Move the centre of the bounding box to the origin; ``apply_z=False`` moves the lowest
    z to 0 instead (Pointcept's ``CenterShift``, for scenes standing on a floor)."""

    def __init__(self, apply_z: bool = True) -> None:
        self.apply_z = apply_z

    def __call__(self, results: dict) -> dict:
        coord = results["coord"]
        lo, hi = coord.min(0), coord.max(0)
        shift = (lo + hi) / 2
        if not self.apply_z:
            shift[2] = lo[2]
        results["coord"] = (coord - shift).astype(coord.dtype)
        return results


@TRANSFORMS.register_module()
class NormalizeCoord:
    """Centroid to the origin, then scale so the farthest point is at distance 1 (Point-MAE's
    / PointNet++'s ``pc_normalize`` of ModelNet40 and ShapeNet shapes)."""

    def __call__(self, results: dict) -> dict:
        coord = results["coord"] - results["coord"].mean(0)
        radius = float(np.sqrt((coord**2).sum(1)).max())
        results["coord"] = (coord / max(radius, 1e-12)).astype(results["coord"].dtype)
        return results


@TRANSFORMS.register_module()
class PointRandomRotate:
    """With probability ``prob``, rotate coords and normals about ``axis`` through ``centre``
    (default the origin) by an angle drawn uniformly from ``angle`` (degrees, (lo, hi))."""

    def __init__(
        self,
        axis: str = "z",
        angle: tuple[float, float] = (-180.0, 180.0),
        centre: Sequence[float] | None = None,
        prob: float = 1.0,
    ) -> None:
        _axis(axis)
        self.axis, self.angle, self.prob = axis, tuple(angle), prob
        self.centre = np.zeros(3) if centre is None else np.asarray(centre, np.float64)

    def __call__(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        rot = rotation_matrix(self.axis, np.deg2rad(np.random.uniform(*self.angle)))
        coord = results["coord"]
        results["coord"] = ((coord - self.centre) @ rot.T + self.centre).astype(coord.dtype)
        if results.get("normal") is not None:
            results["normal"] = (results["normal"] @ rot.T).astype(results["normal"].dtype)
        return results


@TRANSFORMS.register_module()
class PointRandomScale:
    """Multiply coords by a factor drawn uniformly from ``scale`` (one per axis when
    ``anisotropic``); normals follow the inverse scaling and are renormalised."""

    def __init__(self, scale: tuple[float, float] = (0.9, 1.1), anisotropic: bool = False):
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {scale}")
        self.scale, self.anisotropic = tuple(scale), anisotropic

    def __call__(self, results: dict) -> dict:
        factor = np.random.uniform(*self.scale, 3 if self.anisotropic else 1)
        coord = results["coord"]
        results["coord"] = (coord * factor).astype(coord.dtype)
        normal = results.get("normal")
        if normal is not None and self.anisotropic:
            n = normal / factor
            results["normal"] = (n / np.linalg.norm(n, axis=1, keepdims=True)).astype(normal.dtype)
        return results


@TRANSFORMS.register_module()
class PointRandomFlip:
    """With probability ``prob``, mirror ``axis`` (``x -> -x``) of coords and normals."""

    def __init__(self, axis: str = "x", prob: float = 0.5) -> None:
        self.axis, self.prob = _axis(axis), prob

    def __call__(self, results: dict) -> dict:
        if np.random.rand() < self.prob:
            for name in ("coord", "normal"):
                if results.get(name) is not None:
                    results[name] = results[name].copy()
                    results[name][:, self.axis] *= -1
        return results


@TRANSFORMS.register_module()
class PointRandomJitter:
    """Add Gaussian noise of std ``sigma`` clipped to ``[-clip, clip]`` to every coord."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        if sigma < 0 or clip <= 0:
            raise ValueError(f"need sigma >= 0 and clip > 0, got sigma={sigma}, clip={clip}")
        self.sigma, self.clip = sigma, clip

    def __call__(self, results: dict) -> dict:
        coord = results["coord"]
        noise = np.clip(self.sigma * np.random.randn(*coord.shape), -self.clip, self.clip)
        results["coord"] = (coord + noise).astype(coord.dtype)
        return results


@TRANSFORMS.register_module()
class PointRandomDropout:
    """With probability ``prob``, drop a random ``ratio`` of the points (at least one is kept),
    with their colours, normals and labels."""

    def __init__(self, ratio: float = 0.2, prob: float = 0.5) -> None:
        if not 0 <= ratio < 1:
            raise ValueError(f"ratio must lie in [0, 1), got {ratio}")
        self.ratio, self.prob = ratio, prob

    def __call__(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        n = len(results["coord"])
        keep = np.sort(np.random.permutation(n)[: max(1, int(n * (1 - self.ratio)))])
        return take_points(results, keep)


@TRANSFORMS.register_module()
class ElasticDistortion:
    """Smooth random displacement of the coords, as Pointcept's ``ElasticDistortion``: for
    each ``(granularity, magnitude)``, Gaussian noise on a grid of spacing ``granularity``
    over the cloud's box is smoothed (3 voxels), interpolated at each point and added times
    ``magnitude``. Applied with probability ``prob``."""

    def __init__(
        self,
        params: Sequence[tuple[float, float]] = ((0.2, 0.4), (0.8, 1.6)),
        prob: float = 0.95,
    ) -> None:
        self.params, self.prob = [tuple(p) for p in params], prob

    def __call__(self, results: dict) -> dict:
        from scipy.interpolate import RegularGridInterpolator
        from scipy.ndimage import uniform_filter

        if np.random.rand() >= self.prob:
            return results
        coord = results["coord"].astype(np.float64)
        for granularity, magnitude in self.params:
            lo = coord.min(0) - granularity * 3
            dim = ((coord.max(0) - lo) // granularity).astype(int) + 4
            noise = uniform_filter(np.random.randn(*dim, 3), size=(3, 3, 3, 1), mode="constant")
            axes = [lo[d] + granularity * np.arange(dim[d]) for d in range(3)]
            interp = RegularGridInterpolator(axes, noise, bounds_error=False, fill_value=0)
            coord = coord + interp(coord) * magnitude
        results["coord"] = coord.astype(results["coord"].dtype)
        return results


@TRANSFORMS.register_module()
class SphereCrop:
    """Keep at most ``max_points``: the ones nearest to a centre, which is ``centre`` if
    given, else a random point (``mode='random'``) or the box centre (``mode='centre'``)."""

    def __init__(
        self, max_points: int = 80000, mode: str = "random", centre: Sequence[float] | None = None
    ) -> None:
        if mode not in ("random", "centre"):
            raise ValueError(f"mode must be 'random' or 'centre', got {mode!r}")
        self.max_points, self.mode = max_points, mode
        self.centre = None if centre is None else np.asarray(centre, np.float64)

    def __call__(self, results: dict) -> dict:
        coord = results["coord"]
        if len(coord) <= self.max_points:
            return results
        centre = self.centre
        if centre is None:
            lo, hi = coord.min(0), coord.max(0)
            centre = (
                coord[np.random.randint(len(coord))] if self.mode == "random" else (lo + hi) / 2
            )
        dist = np.sum((coord - centre) ** 2, axis=1)
        keep = np.sort(np.argsort(dist, kind="stable")[: self.max_points])
        return take_points(results, keep)


@TRANSFORMS.register_module()
class PointGridSample:
    """One point per voxel of side ``grid_size`` (``visionfm.ops.point_grid.grid_sample``).

    ``mode='train'``: a random point per voxel. ``mode='test'``: the first point of each voxel
    (fragment 0), with ``grid_inverse`` (N_in,) set so per-voxel predictions can be spread
    back over every input point (``pred[grid_inverse]``) and ``origin_segment`` keeping the
    input's labels (the metric compares them with those predictions). ``mode='test',
    fragments=True``: every point is kept and ``fragments`` lists the test fragments as
    index arrays (S,) into the cloud (each one point per voxel, together every point): the
    model runs each and votes per point (``PointModel``). The sampling modes set
    ``grid_coord`` (S, 3), the voxel of each sampled point.
    """

    def __init__(self, grid_size: float = 0.02, mode: str = "train", fragments: bool = False):
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
        if fragments and mode != "test":
            raise ValueError("PointGridSample: fragments=True needs mode='test'")
        self.grid_size, self.mode, self.fragments = grid_size, mode, fragments

    def __call__(self, results: dict) -> dict:
        coord = torch.from_numpy(np.ascontiguousarray(results["coord"]))
        offsets = torch.tensor([len(coord)])
        gen = torch.Generator().manual_seed(int(np.random.randint(2**31)))
        out = grid_sample(coord, offsets, self.grid_size, self.mode, generator=gen)
        if self.mode == "test":
            if self.fragments:
                results["fragments"] = [part.indices.numpy() for part in out]
                return results
            out = out[0]
            # fragment 0 holds every voxel in voxel order: sample v is voxel v
            results["grid_inverse"] = out.inverse.numpy()
            if results.get("segment") is not None:
                results["origin_segment"] = results["segment"]
        take_points(results, out.indices.numpy())
        results["grid_coord"] = out.grid_coords.numpy()
        return results


@TRANSFORMS.register_module()
class NormalizeColor:
    """Colours 0..255 -> -1..1 (``color / 127.5 - 1``, Pointcept's ``NormalizeColor``)."""

    def __call__(self, results: dict) -> dict:
        if results.get("color") is not None:
            results["color"] = (results["color"] / 127.5 - 1).astype(np.float32)
        return results


@TRANSFORMS.register_module()
class PackPointInputs:
    """results -> ``dict(inputs=float32 (N, 3 + C), data_samples=DataSample)``.

    ``inputs`` is ``coord`` followed by the ``features`` fields in order (each must be
    present). ``label`` -> ``gt_label`` long scalar; ``segment`` -> ``gt_segment`` long (N,)
    (-1 = ignored), or ``origin_segment`` (N_orig,) when a test-time grid sampling kept the
    labels of the cloud before it (predictions come back on those points); ``meta_keys``
    present in results -> metainfo (``num_points`` is set to the packed count).
    """

    def __init__(
        self, features: Sequence[str] = (), meta_keys: Sequence[str] = POINT_META_KEYS
    ) -> None:
        bad = [f for f in features if f not in ("color", "normal")]
        if bad:
            raise ValueError(f"features must be among ('color', 'normal'), got {bad}")
        self.features, self.meta_keys = tuple(features), tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        missing = [f for f in self.features if results.get(f) is None]
        if missing:
            raise ValueError(
                f"{results.get('file', 'point cloud')}: has no {missing} for "
                f"PackPointInputs(features={self.features}); drop them from features"
            )
        parts = [results["coord"], *(results[f] for f in self.features)]
        inputs = torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32))
        sample = DataSample()
        if results.get("label") is not None:
            sample.gt_label = torch.as_tensor(int(results["label"]), dtype=torch.long)
        segment = results.get("origin_segment", results.get("segment"))
        if segment is not None:
            sample.gt_segment = torch.from_numpy(np.asarray(segment, np.int64))
        results["num_points"] = len(inputs)
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=sample)
