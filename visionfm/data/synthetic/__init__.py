"""A deterministic synthetic world for tests, demos and learning checks.

Shapes of five classes (``circle, square, triangle, star, person``; COCO ids 1..5)
in named colours and sizes on textured backgrounds, with occlusion in depth
order. Two ways in:

- in memory: ``render_scene(rng, height, width) -> Scene`` (image, per-object
  visible masks / boxes / labels / keypoints / depths, semantic and depth maps),
  ``render_video(rng, height, width, num_frames) -> list[Scene]``, and
  ``referring_expressions(...)`` for grounding, ``detection_batch(num, size)`` a detector's
  input batch with ground truth;
- on disk: ``make_synthetic(out_dir, num_train, num_val, seed)`` writes COCO json,
  COCO panoptic json + PNGs, semantic and depth PNGs, RefCOCO-style refs, ODVG json
  lines, MDETR-style refcoco json and mp4 clips in the standard layouts (see ``writers``);
  ``tools/make_synthetic.py`` is its command line.

Modules: ``world`` (vocabulary), ``background``, ``shapes``, ``scene``, ``batch``, ``refer``,
``video``, ``panoptic``, ``grounding`` (ODVG / refcoco files, open-set hold-out),
``writers``.
"""

from .batch import detection_batch
from .refer import Description, Referent, describe, referring_expressions, relation_holds, resolve
from .scene import ObjectSpec, Scene, SceneObject, compose, render_scene, sample_objects
from .video import render_video
from .world import (
    CLASSES,
    COLORS,
    KEYPOINT_NAMES,
    SEMANTIC_CLASSES,
    SIZES,
    SKELETON,
    coco_categories,
)
from .writers import (
    dataset_scene,
    dataset_video,
    make_synthetic,
    mask_to_rle,
    object_annotation,
    scene_referents,
)

__all__ = [
    "CLASSES",
    "COLORS",
    "KEYPOINT_NAMES",
    "SEMANTIC_CLASSES",
    "SIZES",
    "SKELETON",
    "Description",
    "ObjectSpec",
    "Referent",
    "Scene",
    "SceneObject",
    "coco_categories",
    "compose",
    "dataset_scene",
    "dataset_video",
    "describe",
    "detection_batch",
    "make_synthetic",
    "mask_to_rle",
    "object_annotation",
    "referring_expressions",
    "relation_holds",
    "render_scene",
    "render_video",
    "resolve",
    "sample_objects",
    "scene_referents",
]
