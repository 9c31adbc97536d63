"""In-memory scenes: sample objects, draw them far to near, derive every annotation.

``render_scene(rng, height, width)`` returns a :class:`Scene` whose image,
instance masks, boxes, keypoints, semantic map and depth map all come from the
same rasterized masks, so they agree exactly:

- objects are painted in painter's order (farthest first); an object's visible
  mask is its in-image mask minus the masks of all nearer objects;
- objects left with fewer than ``min_visible_pixels`` visible pixels are removed
  from the scene altogether (not painted, not annotated);
- boxes are tight around the VISIBLE mask, for every class including persons,
  as ``(x0, y0, x1, y1)`` with exclusive right/bottom edges (COCO ``x, y, x + w, y + h``);
- person keypoints carry honest visibility: v=2 visible, v=1 inside the image but
  the pixel ``(int(y), int(x))`` belongs to a nearer object, v=0 outside the image
  (then x = y = 0);
- depth: the background is a plane receding upwards (5 m top row to 3.2 m bottom
  row), each object is a camera-facing plate at its own depth (0.8-3 m, distinct
  by at least 5 cm; larger objects tend to be nearer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .background import render_background
from .shapes import (
    POSE_HIGH,
    POSE_LOW,
    clip_polygon,
    person_extent,
    person_keypoints,
    rasterize_person,
    rasterize_polygon,
    shape_polygon,
)
from .world import (
    CLASSES,
    COLORS,
    CONVEX_IDS,
    MIN_DEPTH_GAP,
    MIN_VISIBLE_PIXELS,
    OBJECT_DEPTH,
    PERSON_ID,
    PERSON_SCALE,
    SIZES,
    background_depth,
)

SIZE_NAMES = tuple(SIZES)
COLOR_NAMES = tuple(COLORS)
SHAPE_HALF_EXTENT = 0.6  # circumradius of every polygon shape, as a fraction of its scale
RIM_DARKEN = 0.6
_RIM_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class ObjectSpec:
    """What to draw: class, attributes and geometry of one object.

    center: (x, y) px (the pelvis for persons); scale: nominal extent in px (the
    height for persons); angle: in-plane rotation / body tilt, radians; pose: the
    person pose 9-vector (see ``shapes.POSE_LOW``); shade: brightness slope across
    the object (-0.25..0.25); instance_id: track id in videos.
    """

    category_id: int
    color: str
    size: str
    depth: float
    center: tuple[float, float]
    scale: float
    angle: float = 0.0
    pose: tuple[float, ...] | None = None
    shade: float = 0.0
    instance_id: int | None = None

    @property
    def category(self) -> str:
        return CLASSES[self.category_id - 1]


@dataclass
class SceneObject:
    """One drawn object and its annotations.

    mask: (H, W) bool visible pixels; full_mask: (H, W) bool in-image pixels before
    occlusion; polygon: (V, 2) in-image outline for convex shapes, else None;
    keypoints: (17, 3) float64 (x, y, v) for persons, else None.
    """

    spec: ObjectSpec
    mask: np.ndarray
    full_mask: np.ndarray
    polygon: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    category_id = property(lambda self: self.spec.category_id)
    category = property(lambda self: self.spec.category)
    color = property(lambda self: self.spec.color)
    size = property(lambda self: self.spec.size)
    depth = property(lambda self: self.spec.depth)
    instance_id = property(lambda self: self.spec.instance_id)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def occluded(self) -> bool:
        """True when a nearer object hides part of this one."""
        return bool((self.full_mask != self.mask).any())

    @property
    def bbox(self) -> np.ndarray:
        """(4,) float32 tight xyxy box of the visible mask, right/bottom exclusive."""
        ys, xs = np.nonzero(self.mask)
        return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@dataclass
class Scene:
    """A rendered image with everything known about it.

    image: (H, W, 3) uint8 RGB; depth: (H, W) float32 metres; semantic: (H, W)
    uint8 with 0 = background and k = category id k; objects: far to near.
    """

    image: np.ndarray
    depth: np.ndarray
    semantic: np.ndarray
    objects: list[SceneObject] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def width(self) -> int:
        return self.image.shape[1]

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool visible masks."""
        masks = [o.mask for o in self.objects]
        return np.stack(masks) if masks else np.zeros((0, self.height, self.width), bool)

    @property
    def bboxes(self) -> np.ndarray:
        """(N, 4) float32 xyxy tight boxes of the visible masks."""
        return np.array([o.bbox for o in self.objects], np.float32).reshape(-1, 4)

    @property
    def category_ids(self) -> np.ndarray:
        """(N,) int64 COCO category ids, 1..5."""
        return np.array([o.category_id for o in self.objects], np.int64)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 0-based class indices into CLASSES (= category id - 1)."""
        return self.category_ids - 1

    @property
    def keypoints(self) -> np.ndarray:
        """(N, 17, 3) float32 (x, y, v); all zeros for non-person objects."""
        out = np.zeros((len(self.objects), 17, 3), np.float32)
        for i, o in enumerate(self.objects):
            if o.keypoints is not None:
                out[i] = o.keypoints
        return out

    @property
    def depths(self) -> np.ndarray:
        """(N,) float32 object depths in metres."""
        return np.array([o.depth for o in self.objects], np.float32)


def rasterize(
    spec: ObjectSpec, height: int, width: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Draw one object alone: (H, W) bool mask, (V, 2) polygon or None, (17, 2) keypoints or None."""
    if spec.category_id == PERSON_ID:
        kpts = np.round(
            person_keypoints(spec.center, spec.scale, spec.angle, np.array(spec.pose)), 2
        )
        return rasterize_person(kpts, spec.scale, height, width), None, kpts
    poly = shape_polygon(spec.category, spec.center, spec.scale, spec.angle)
    if spec.category_id in CONVEX_IDS:
        poly = np.round(clip_polygon(poly, width, height), 2)
        return rasterize_polygon(poly, height, width), poly, None
    return rasterize_polygon(np.round(poly, 2), height, width), None, None


def _occlusion(full_masks: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Visible masks and nearer-object cover, for (H, W) masks given far to near."""
    cover = np.zeros_like(full_masks[0]) if full_masks else None
    visible, nearer = [None] * len(full_masks), [None] * len(full_masks)
    for i in range(len(full_masks) - 1, -1, -1):
        nearer[i] = cover.copy()
        visible[i] = full_masks[i] & ~cover
        cover |= full_masks[i]
    return visible, nearer


def _keypoint_visibility(kpts: np.ndarray, nearer: np.ndarray) -> np.ndarray:
    """(17, 2) keypoints + (H, W) cover of nearer objects -> (17, 3) COCO (x, y, v) keypoints."""
    h, w = nearer.shape
    x, y = kpts[:, 0], kpts[:, 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    xi = np.clip(x.astype(np.int64), 0, w - 1)
    yi = np.clip(y.astype(np.int64), 0, h - 1)
    v = np.where(inside, np.where(nearer[yi, xi], 1, 2), 0)
    out = np.zeros((len(kpts), 3))
    out[inside, :2] = kpts[inside]
    out[:, 2] = v
    return out


def compose(
    background: np.ndarray,
    specs: list[ObjectSpec],
    min_visible_pixels: int = MIN_VISIBLE_PIXELS,
) -> Scene:
    """Paint ``specs`` over a (H, W, 3) float background far to near and annotate the result."""
    h, w = background.shape[:2]
    specs = sorted(specs, key=lambda s: -s.depth)
    drawn = [(s, *rasterize(s, h, w)) for s in specs]
    while True:  # drop objects left (nearly) invisible; removal only uncovers others
        visible, nearer = _occlusion([d[1] for d in drawn])
        keep = [int(v.sum()) >= min_visible_pixels for v in visible]
        if all(keep):
            break
        drawn = [d for d, k in zip(drawn, keep) if k]

    image = background.astype(np.float32).copy()
    depth = np.repeat(background_depth(h)[:, None], w, axis=1).astype(np.float32)
    semantic = np.zeros((h, w), np.uint8)
    objects = []
    for (spec, full, poly, kpts), vis, near in zip(drawn, visible, nearer):
        ys, xs = np.nonzero(full)
        shading = 1 + spec.shade * (ys - spec.center[1]) / max(spec.scale, 1.0)
        image[ys, xs] = np.asarray(COLORS[spec.color], np.float32) * shading[:, None]
        rim = full & ~cv2.erode(full.astype(np.uint8), _RIM_KERNEL).astype(bool)
        image[rim] *= RIM_DARKEN  # a darker 1-px outline separates same-coloured neighbours
        depth[ys, xs] = spec.depth
        semantic[ys, xs] = spec.category_id
        kp = None if kpts is None else _keypoint_visibility(kpts, near)
        objects.append(SceneObject(spec, vis, full, poly, kp))
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return Scene(image, depth, semantic, objects)


def _separate_depths(depths: np.ndarray) -> np.ndarray:
    """Push (N,) depths apart to at least MIN_DEPTH_GAP within OBJECT_DEPTH, keeping their order."""
    lo, hi = OBJECT_DEPTH
    order = np.argsort(depths, kind="stable")
    d = np.clip(depths[order], lo, hi)
    for i in range(1, len(d)):
        d[i] = max(d[i], d[i - 1] + MIN_DEPTH_GAP)
    d[-1:] = np.minimum(d[-1:], hi)
    for i in range(len(d) - 2, -1, -1):
        d[i] = min(d[i], d[i + 1] - MIN_DEPTH_GAP)
    out = np.empty_like(d)
    out[order] = np.round(d, 3)
    return out


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def sample_objects(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_objects: int,
    max_iou: float = 0.35,
) -> list[ObjectSpec]:
    """Random object specs for an image: class, colour, size, depth and placement.

    Objects may stick out of the image by up to about half their extent; rough
    boxes overlap by at most ``max_iou`` when a placement can be found in 30 tries.
    """
    short = min(height, width)
    cats = rng.integers(1, len(CLASSES) + 1, num_objects)
    sizes = [SIZE_NAMES[i] for i in rng.integers(len(SIZE_NAMES), size=num_objects)]
    colors = [COLOR_NAMES[i] for i in rng.integers(len(COLOR_NAMES), size=num_objects)]
    fracs = np.array([rng.uniform(*SIZES[s]) for s in sizes])
    lo, hi = SIZES["small"][0], SIZES["large"][1]
    near_far = OBJECT_DEPTH[1] - (OBJECT_DEPTH[1] - OBJECT_DEPTH[0]) * (fracs - lo) / (hi - lo)
    depths = _separate_depths(near_far + rng.normal(0, 0.2, num_objects))

    specs, boxes = [], []
    for i in range(num_objects):
        person = cats[i] == PERSON_ID
        scale = float(fracs[i] * short * (PERSON_SCALE if person else 1.0))
        if person:
            hx, hy = person_extent(scale)
            y_range = (0.6 * hy, height - 0.5 * hy)
        else:
            hx = hy = SHAPE_HALF_EXTENT * scale
            y_range = (0.5 * hy, height - 0.5 * hy)
        x_range = (0.5 * hx, width - 0.5 * hx)
        for _ in range(30):
            cx = rng.uniform(*x_range) if x_range[0] < x_range[1] else width / 2
            cy = rng.uniform(*y_range) if y_range[0] < y_range[1] else height / 2
            box = np.array([cx - hx, cy - hy, cx + hx, cy + hy])
            if all(_box_iou(box, b) <= max_iou for b in boxes):
                break
        boxes.append(box)
        if person:
            angle = float(np.clip(rng.normal(0, 0.12), -0.3, 0.3))
            pose = tuple(float(p) for p in rng.uniform(POSE_LOW, POSE_HIGH))
        else:
            angle, pose = float(rng.uniform(0, 2 * np.pi)), None
        specs.append(
            ObjectSpec(
                category_id=int(cats[i]),
                color=colors[i],
                size=sizes[i],
                depth=float(depths[i]),
                center=(round(float(cx), 2), round(float(cy), 2)),
                scale=round(scale, 2),
                angle=angle,
                pose=pose,
                shade=float(rng.uniform(-0.25, 0.25)),
            )
        )
    return specs


def render_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_objects: int | None = None,
    max_objects: int = 6,
    texture: str | None = None,
    min_visible_pixels: int = MIN_VISIBLE_PIXELS,
) -> Scene:
    """Render one random scene of ``num_objects`` (default: 1..max_objects) objects.

    Deterministic given the generator's state. Fewer objects may come back when
    some end up (nearly) fully occluded; at least one always does.
    """
    if num_objects is None:
        num_objects = int(rng.integers(1, max_objects + 1))
    background = render_background(rng, height, width, texture)
    specs = sample_objects(rng, height, width, num_objects)
    return compose(background, specs, min_visible_pixels)
