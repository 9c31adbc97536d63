"""Drawing point clouds: depth-sorted splats seen from a turning camera, coloured by RGB, by
class label (the class palette masks use) or by height; a legend, a title, a turntable video.

- ``render_points``: one view of a cloud as an (H, W, 3) uint8 RGB image;
- ``write_turntable``: an mp4 of the view turning 360 degrees about the vertical (z) axis;
- ``draw_point_sample``: what a point ``DataSample`` holds (``{prefix}_segment`` per point,
  or ``{prefix}_label`` / ``pred_score`` as the title), what the tools draw with;
- ``sample_coords``: the coordinates a sample's per-point labels belong to (the packed
  points, or the original cloud through ``grid_inverse``).

The camera looks at the centre of the cloud's bounding box from ``view = (azimuth,
elevation)`` degrees (azimuth about +z from +x, elevation above the xy plane; z is up); the
cloud's bounding sphere (centred there) fills 90 % of the image's shorter side in every view,
so a turntable does not zoom. Points nearer the camera hide farther ones (a z-buffer over
the splats' pixels, vectorised: 100k points render in a fraction of a second) and are shaded
darker with distance.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np

from visionfm.data.video import VideoWriter

from .dense import colorize_depth
from .instances import _FONT, _class_colors, _font_scale, _put_label

__all__ = [
    "draw_point_sample",
    "point_sample_style",
    "render_points",
    "sample_coords",
    "write_turntable",
]

IGNORE_COLOR = (160, 160, 160)  # points labelled -1 (ignored / unlabelled)
_FILL = 0.9  # the bounding sphere's diameter over the image's shorter side
_CAMERA_DISTANCE = 2.5  # perspective camera distance in bounding-sphere radii


def _camera(azimuth: float, elevation: float) -> np.ndarray:
    """(3, 3) rows: right, up and towards-the-camera unit vectors (a right-handed frame)."""
    a, e = math.radians(azimuth), math.radians(elevation)
    return np.array(
        [
            [-math.sin(a), math.cos(a), 0.0],
            [-math.sin(e) * math.cos(a), -math.sin(e) * math.sin(a), math.cos(e)],
            [math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)],
        ]
    )


def _disc(radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel offsets (K,) dy, (K,) dx of a filled disc of ``radius`` px and their shading
    (K,) in [0.75, 1]: darker towards the rim, so splats read as small spheres."""
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    d2 = dy**2 + dx**2
    inside = d2 <= radius * radius + radius
    rim = d2[inside] / max(radius * radius + radius, 1)
    return dy[inside], dx[inside], 1.0 - 0.25 * rim


def _point_colors(
    n: int,
    coord: np.ndarray,
    colors: np.ndarray | None,
    labels: np.ndarray | None,
    palette: np.ndarray,
) -> np.ndarray:
    """(N, 3) uint8: ``colors`` (uint8, or floats in 0..255), else the ``palette`` colour of
    each label (-1: grey), else the height z through the turbo colour map."""
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (n, 3):
            raise ValueError(f"colors must have shape (N, 3) = ({n}, 3), got {colors.shape}")
        return np.clip(np.round(colors), 0, 255).astype(np.uint8)
    if labels is not None:
        out = np.empty((n, 3), np.uint8)
        valid = labels >= 0
        out[valid] = palette[labels[valid]]
        out[~valid] = IGNORE_COLOR
        return out
    return colorize_depth(coord[None, :, 2], valid=np.ones((1, n), bool))[0]


def _draw_legend(image: np.ndarray, names: Sequence[str], colors: np.ndarray, top: int) -> None:
    """One caption per class (its name on a box of its colour) down the left edge, in place."""
    (_, th), base = cv2.getTextSize("Ag", _FONT, _font_scale(image), 1)
    step = th + base + 4
    for i, (name, color) in enumerate(zip(names, colors, strict=True)):
        _put_label(image, name, 4, top + (i + 1) * step, color)


def render_points(
    coord: np.ndarray,
    colors: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    palette: Sequence | np.ndarray | None = None,
    view: tuple[float, float] = (45.0, 25.0),
    size: tuple[int, int] = (480, 640),
    point_radius: int | None = None,
    projection: str = "perspective",
    title: str | None = None,
    legend: bool = True,
    background: Sequence[int] = (255, 255, 255),
) -> np.ndarray:
    """One view of a point cloud -> (H, W, 3) uint8 RGB.

    coord: (N, 3) float. Colours, first given wins: ``colors`` (N, 3) uint8 (or floats in
    0..255, as point files hold them); ``labels`` (N,) int class ids coloured by ``palette``
    ((C, 3) RGB, default :func:`~visionfm.visualization.palette`, the colours masks get),
    -1 grey; else the height z through the turbo colour map. view: (azimuth, elevation) in
    degrees (see the module doc); size: (H, W). point_radius: splat radius in px (0 = one
    pixel); default from the point density, 1..6 px. projection: 'perspective' or
    'orthographic'. When the points take their class colours and ``legend`` is set, the
    classes present are listed at the left with their colours (named by ``class_names``,
    else by number); ``title`` is written at the top left.
    """
    coord = np.asarray(coord, np.float64)
    if coord.ndim != 2 or coord.shape[1] != 3 or len(coord) == 0:
        raise ValueError(f"coord must have shape (N > 0, 3), got {coord.shape}")
    if not np.all(np.isfinite(coord)):
        raise ValueError("coord holds NaN / inf values; remove those points before drawing")
    if projection not in ("perspective", "orthographic"):
        raise ValueError(f"projection must be 'perspective' or 'orthographic', got {projection!r}")
    n, (h, w) = len(coord), size
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != n:
            raise ValueError(f"labels has {len(labels)} entries for {n} points")
        if labels.size and labels.min() < -1:
            raise ValueError(f"labels must be class ids >= 0 (or -1 = ignored), got {labels.min()}")
    num_classes = max(len(class_names or ()), int(labels.max()) + 1 if labels is not None else 0)
    class_colors = _class_colors(palette, num_classes)
    rgb = _point_colors(n, coord, colors, labels, class_colors)

    lo, hi = coord.min(0), coord.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(coord - centre, axis=1).max()) or 1.0
    cam = (coord - centre) @ _camera(*view).T  # (N, 3): right, up, towards the camera
    half = _FILL * min(h, w) / 2
    if projection == "perspective":
        distance = _CAMERA_DISTANCE * radius
        depth = distance - cam[:, 2]  # > 0: the whole sphere is in front of the camera
        focal = half * math.sqrt(distance**2 - radius**2) / radius  # sphere's silhouette
        scale = focal / depth
    else:
        depth = radius - cam[:, 2]
        scale = np.full(n, half / radius)
    px = np.round(w / 2 - 0.5 + cam[:, 0] * scale).astype(np.int64)
    py = np.round(h / 2 - 0.5 - cam[:, 1] * scale).astype(np.int64)

    if point_radius is None:
        point_radius = int(np.clip(round(0.3 * min(h, w) / math.sqrt(n)), 1, 6))
    dy, dx, rim = _disc(max(int(point_radius), 0))
    order = np.argsort(depth, kind="stable")  # nearest first
    ys = (py[order, None] + dy).reshape(-1)
    xs = (px[order, None] + dx).reshape(-1)
    owner = np.repeat(order, len(dy))  # the point each splat pixel belongs to
    shade_rim = np.tile(rim, n)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    pixel = ys[inside] * w + xs[inside]
    # z-buffer: each pixel keeps its first splat entry, the nearest point's (listed nearest
    # first); np.minimum.at is a scatter-min over repeated pixels, ~25x np.unique's sort
    first = np.full(h * w, len(pixel), np.int64)
    np.minimum.at(first, pixel, np.arange(len(pixel)))
    pixel = np.flatnonzero(first < len(pixel))
    first = first[pixel]
    point = owner[inside][first]
    span = max(float(np.ptp(depth)), 1e-12)
    shade = (1.0 - 0.45 * (depth[point] - depth.min()) / span) * shade_rim[inside][first]

    out = np.empty((h * w, 3), np.uint8)
    out[:] = np.asarray(background, np.uint8)
    out[pixel] = np.round(rgb[point] * shade[:, None]).astype(np.uint8)
    out = out.reshape(h, w, 3)

    top = 0
    if title:
        (_, th), base = cv2.getTextSize(title, _FONT, _font_scale(out), 1)
        _put_label(out, title, 4, th + base + 6, (40, 40, 40))
        top = th + base + 8
    if labels is not None and colors is None and legend:  # the points show class colours
        present = [int(c) for c in np.unique(labels) if c >= 0]
        names = [
            class_names[c] if class_names and c < len(class_names) else str(c) for c in present
        ]
        _draw_legend(out, names, class_colors[present], top)
    return out


def write_turntable(
    coord: np.ndarray,
    path: str | os.PathLike,
    frames: int = 60,
    fps: float = 20.0,
    elevation: float = 25.0,
    start_azimuth: float = 45.0,
    **render_kwargs,
) -> str:
    """An mp4 of ``coord`` turning a full circle: ``frames`` views at azimuths
    ``start_azimuth + 360 * i / frames`` (the last one just short of the first) and
    ``elevation``, each :func:`render_points` with ``render_kwargs`` (colors, labels,
    class_names, size, title, ...). Written by :class:`~visionfm.data.video.VideoWriter`
    (mp4v, ``fps`` frames per second). Returns the path."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    path = os.fspath(path)
    with VideoWriter(path, fps) as writer:
        for i in range(frames):
            view = (start_azimuth + 360.0 * i / frames, elevation)
            writer.write(render_points(coord, view=view, **render_kwargs))
    return path


def _numpy(value) -> np.ndarray:
    """Tensor (any device) or array -> numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def sample_coords(points: np.ndarray, sample, prefix: str = "pred") -> np.ndarray:
    """The (M, 3) coordinates that ``sample``'s ``{prefix}_segment`` (M,) labels, from the
    cloud the model saw, ``points`` (N, 3 + C) (the packed input): the points themselves
    when M = N; through ``metainfo['grid_inverse']`` (M,) when the test pipeline
    grid-sampled the cloud and the labels cover every original point (each takes its
    voxel's sample's coordinates); ``points`` when the sample has no segment."""
    points = _numpy(points)[:, :3]
    segment = sample.get(f"{prefix}_segment")
    if segment is None or len(segment) == len(points):
        return points
    inverse = sample.metainfo.get("grid_inverse")
    if inverse is not None and len(inverse) == len(segment):
        return points[_numpy(inverse)]
    raise ValueError(
        f"{sample.metainfo.get('file', 'sample')}: {prefix}_segment has {len(segment)} labels "
        f"but the cloud has {len(points)} points and no grid_inverse of that length"
    )


def point_sample_style(
    sample,
    class_names: Sequence[str] | None = None,
    prefix: str = "pred",
    palette: Sequence | np.ndarray | None = None,
    colors: np.ndarray | None = None,
) -> dict:
    """How :func:`render_points` draws a point ``DataSample`` (its keyword arguments).

    ``{prefix}_segment`` (N,): points coloured by class (``labels``, ``class_names``,
    ``palette``), with a legend; else the cloud in ``colors`` (its RGB; None: by height),
    titled, when the sample has ``{prefix}_label``, with the class name and, for predictions,
    ``pred_score[label]``. class_names default to the sample's ``metainfo['classes']``.
    """
    if class_names is None:
        class_names = sample.metainfo.get("classes") or ()
    class_names = tuple(class_names)
    segment = sample.get(f"{prefix}_segment")
    if segment is not None:
        return dict(labels=_numpy(segment), class_names=class_names, palette=palette)
    style: dict = dict(colors=colors)
    label = sample.get(f"{prefix}_label")
    if label is not None:
        label = int(_numpy(label))
        title = class_names[label] if label < len(class_names) else str(label)
        score = sample.get("pred_score") if prefix == "pred" else None
        if score is not None:
            title += f" {float(_numpy(score)[label]):.2f}"
        style["title"] = title
    return style


def draw_point_sample(
    coord: np.ndarray,
    sample,
    class_names: Sequence[str] | None = None,
    prefix: str = "pred",
    palette: Sequence | np.ndarray | None = None,
    colors: np.ndarray | None = None,
    **render_kwargs,
) -> np.ndarray:
    """A point ``DataSample`` drawn over its cloud ``coord`` (N, 3) -> (H, W, 3) uint8 RGB:
    segments coloured by class, or the class and score as the title
    (:func:`point_sample_style`); ``render_kwargs`` go to :func:`render_points` (view, size,
    point_radius, title, ...) and win over the style."""
    style = point_sample_style(sample, class_names, prefix, palette, colors)
    return render_points(coord, **{**style, **render_kwargs})
