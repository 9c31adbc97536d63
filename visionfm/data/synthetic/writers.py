"""Write the synthetic world to disk in the formats real datasets use.

Layout under ``out_dir`` (names are fixed; readers rely on them)::

    images/{split}/000000.jpg            RGB, JPEG quality 95, 128-256 px, never square
    semantic/{split}/000000.png          uint8, 0 = background, k = category id k
    depth/{split}/000000.png             uint16 depth in millimetres
    panoptic/{split}/000000.png          RGB segment ids (COCO panoptic, see ``panoptic``)
    annotations/instances_{split}.json   COCO instances (+ person keypoints)
    annotations/panoptic_{split}.json    COCO panoptic (5 things + 'background' stuff)
    annotations/refs_{split}.json        RefCOCO-style list of refs
    annotations/label_map.json           ODVG label map (see ``grounding``)
    annotations/odvg_{split}.jsonl       ODVG detection + grounding json lines
    annotations/refcoco_{split}.json     MDETR-style RefCOCO json, one entry per expression
    videos/{split}/video_000.mp4         mp4v, 10 fps
    videos/{split}/video_000.txt         its ground-truth tracks, MOT-challenge text
    annotations/videos_{split}.json      COCO-VID-style per-frame annotations

COCO details: image ``id`` = index + 1 (file ``{index:06d}.jpg``); annotation ids
start at 1; ``bbox`` is the tight box of the VISIBLE mask (``pycocotools.mask.toBbox``),
``area`` its pixel count; ``segmentation`` is a polygon for an unoccluded circle,
square or triangle and a compressed RLE (``counts`` as a str) otherwise; every
annotation also carries ``attributes`` = {color, size, depth_m}. Video frames are
``images`` entries with ``video_id``, ``frame_id`` and ``file_name`` = the clip's mp4;
annotations add ``video_id`` and ``instance_id`` (unique within the split file). The
``.txt`` beside each clip holds the same boxes as ``frame,id,x,y,w,h,1,-1,-1,-1`` lines
(``visionfm.data.mot_format``: frames from 1, ``id`` = the clip's ``instance_id``, 1..N).

Every image and clip draws from its own generator seeded by ``(seed, stream,
index)``, so outputs are byte-identical for a given seed and image k does not
depend on how many images are made. One process renders ~90 images/s
(128-256 px), so there is no worker pool.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_utils
from tqdm import tqdm

from ..mot_format import write_mot
from .grounding import HOLDOUT_PAIRS, write_grounding, write_label_map
from .panoptic import panoptic_categories, panoptic_segments
from .refer import Referent, referring_expressions
from .scene import Scene, SceneObject, render_scene
from .video import render_video
from .world import coco_categories

_IMAGE_STREAM = {"train": 0, "val": 1}
_VIDEO_STREAM = {"train": 2, "val": 3}
_INFO = {"description": "visionfm synthetic world", "version": "1.0"}


def mask_to_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO compressed RLE with a str ``counts`` (json-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def object_annotation(obj: SceneObject) -> dict:
    """COCO annotation of one object, without ``id`` and ``image_id``."""
    rle = mask_to_rle(obj.mask)
    if obj.polygon is not None and not obj.occluded:
        segmentation = [[float(v) for v in obj.polygon.reshape(-1)]]
    else:
        segmentation = rle
    ann = {
        "category_id": obj.category_id,
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "area": obj.area,
        "iscrowd": 0,
        "segmentation": segmentation,
    }
    if obj.keypoints is not None:
        ann["keypoints"] = [
            round(float(v), 2) if j < 2 else int(v)
            for kp in obj.keypoints
            for j, v in enumerate(kp)
        ]
        ann["num_keypoints"] = int((obj.keypoints[:, 2] > 0).sum())
    ann["attributes"] = {"color": obj.color, "size": obj.size, "depth_m": obj.depth}
    return ann


def scene_referents(scene: Scene) -> list[Referent]:
    return [Referent(o.category, o.color, o.size, tuple(o.bbox.tolist())) for o in scene.objects]


def _sample_size(
    rng: np.random.Generator, size_range: tuple[int, int], even: bool = False
) -> tuple[int, int]:
    """(height, width) uniform in ``size_range`` (even numbers if ``even``), never square."""
    step = 2 if even else 1
    h, w = (int(v) - int(v) % step for v in rng.integers(size_range[0], size_range[1] + 1, 2))
    if h < size_range[0]:  # an odd minimum rounded down
        h += step
    if w < size_range[0]:
        w += step
    if h == w:
        w = w + step if w + step <= size_range[1] else w - step
    return h, w


def dataset_scene(
    seed: int,
    split: str,
    index: int,
    image_size: tuple[int, int] = (128, 256),
    max_objects: int = 6,
) -> Scene:
    """The in-memory scene behind image ``index`` of ``split`` written by ``make_synthetic``."""
    rng = np.random.default_rng([seed, _IMAGE_STREAM[split], index])
    h, w = _sample_size(rng, image_size)
    return render_scene(rng, h, w, max_objects=max_objects)


def dataset_video(
    seed: int,
    split: str,
    index: int,
    image_size: tuple[int, int] = (128, 256),
    video_frames: tuple[int, int] = (24, 48),
    max_objects: int = 6,
) -> list[Scene]:
    """The in-memory frames behind clip ``index`` of ``split`` written by ``make_synthetic``."""
    rng = np.random.default_rng([seed, _VIDEO_STREAM[split], index])
    h, w = _sample_size(rng, image_size, even=True)  # even sizes for the video codec
    num_frames = int(rng.integers(video_frames[0], video_frames[1] + 1))
    return render_video(rng, h, w, num_frames, max_objects=max_objects)


def _write_image(job: tuple) -> tuple[dict, list[dict], list[list[str]], dict]:
    """Render and write image ``index`` of ``split``; returns its COCO entries, refs and
    COCO panoptic annotation."""
    root, split, index, seed, size_range, max_objects = job
    scene = dataset_scene(seed, split, index, size_range, max_objects)
    h, w = scene.height, scene.width
    stem = f"{index:06d}"
    cv2.imwrite(
        str(root / "images" / split / f"{stem}.jpg"),
        np.ascontiguousarray(scene.image[:, :, ::-1]),
        [cv2.IMWRITE_JPEG_QUALITY, 95],
    )
    cv2.imwrite(str(root / "semantic" / split / f"{stem}.png"), scene.semantic)
    depth_mm = np.clip(np.round(scene.depth * 1000), 0, 65535).astype(np.uint16)
    cv2.imwrite(str(root / "depth" / split / f"{stem}.png"), depth_mm)
    pan_rgb, segments = panoptic_segments(scene.masks, scene.category_ids)
    cv2.imwrite(str(root / "panoptic" / split / f"{stem}.png"), pan_rgb[:, :, ::-1])
    image = {"id": index + 1, "file_name": f"{stem}.jpg", "width": w, "height": h}
    anns = [object_annotation(o) for o in scene.objects]
    panoptic = {"image_id": image["id"], "file_name": f"{stem}.png", "segments_info": segments}
    return image, anns, referring_expressions(scene_referents(scene)), panoptic


def _write_video(job: tuple) -> tuple[dict, list[tuple[dict, list[dict]]]]:
    """Render and write clip ``index`` of ``split``; returns its video entry and frames."""
    root, split, index, seed, size_range, frame_range, fps, max_objects = job
    scenes = dataset_video(seed, split, index, size_range, frame_range, max_objects)
    h, w, num_frames = scenes[0].height, scenes[0].width, len(scenes)
    name = f"video_{index:03d}"
    writer = cv2.VideoWriter(
        str(root / "videos" / split / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)
    )
    if not writer.isOpened():
        raise RuntimeError("cv2.VideoWriter cannot write mp4v here (OpenCV built without FFmpeg?)")
    for scene in scenes:
        writer.write(np.ascontiguousarray(scene.image[:, :, ::-1]))
    writer.release()
    video = {
        "name": name,
        "file_name": f"{name}.mp4",
        "width": w,
        "height": h,
        "fps": fps,
        "num_frames": num_frames,
    }
    frames = []
    for t, scene in enumerate(scenes):
        anns = []
        for o in scene.objects:
            ann = object_annotation(o)
            ann["instance_id"] = o.instance_id  # local; made split-unique by the caller
            anns.append(ann)
        image = {"frame_id": t, "file_name": video["file_name"], "width": w, "height": h}
        frames.append((image, anns))
    tracks = [
        {
            "ids": [a["instance_id"] for a in anns],
            "bboxes": [[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in anns)],
        }
        for _, anns in frames
    ]
    write_mot(root / "videos" / split / f"{name}.txt", tracks)
    return video, frames


def _run(fn, jobs: list, desc: str, progress: bool) -> Iterator:
    """Map ``fn`` over ``jobs`` in order, with a progress bar."""
    yield from tqdm(map(fn, jobs), total=len(jobs), desc=desc, disable=not progress or not jobs)


def _dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")))


def _remove_stale(folder: Path, pattern: str, keep: int) -> None:
    """Delete files named like ours (``pattern``, numbered) beyond the ``keep`` written now."""
    for p in folder.iterdir():
        m = re.fullmatch(pattern, p.name)
        if m and int(m.group(1)) >= keep:
            p.unlink()


def _make_split(
    root, split, num_images, seed, size_range, max_objects, progress
) -> tuple[list[dict], list[dict], list[dict]]:
    """Write the split's images and COCO / panoptic / refs json; return its COCO ``images``,
    ``annotations`` and refs."""
    for sub in ("images", "semantic", "depth", "panoptic"):
        (root / sub / split).mkdir(parents=True, exist_ok=True)
    _remove_stale(root / "images" / split, r"(\d{6})\.jpg", num_images)
    _remove_stale(root / "semantic" / split, r"(\d{6})\.png", num_images)
    _remove_stale(root / "depth" / split, r"(\d{6})\.png", num_images)
    _remove_stale(root / "panoptic" / split, r"(\d{6})\.png", num_images)
    jobs = [(root, split, i, seed, size_range, max_objects) for i in range(num_images)]
    images, annotations, refs, panoptic = [], [], [], []
    for image, anns, expressions, pan in _run(_write_image, jobs, f"{split} images", progress):
        images.append(image)
        panoptic.append(pan)
        for ann, sentences in zip(anns, expressions):
            ann_id = len(annotations) + 1
            annotations.append({"id": ann_id, "image_id": image["id"], **ann})
            if sentences:
                first = refs[-1]["sent_ids"][-1] + 1 if refs else 0
                sent_ids = list(range(first, first + len(sentences)))
                refs.append(
                    _ref(len(refs), image, ann_id, ann["category_id"], split, sent_ids, sentences)
                )
    info = {**_INFO, "seed": seed, "split": split}
    coco = {"info": info, "licenses": [], "images": images, "annotations": annotations}
    _dump(
        {**coco, "categories": coco_categories()}, root / "annotations" / f"instances_{split}.json"
    )
    _dump(refs, root / "annotations" / f"refs_{split}.json")
    pan = {**coco, "annotations": panoptic, "categories": panoptic_categories()}
    _dump(pan, root / "annotations" / f"panoptic_{split}.json")
    return images, annotations, refs


def _ref(ref_id, image, ann_id, category_id, split, sent_ids, sentences) -> dict:
    """One RefCOCO-style ref: an annotation and its expressions."""
    return {
        "ref_id": ref_id,
        "image_id": image["id"],
        "ann_id": ann_id,
        "category_id": category_id,
        "split": split,
        "file_name": image["file_name"],
        "sent_ids": sent_ids,
        "sentences": [
            {"sent_id": i, "sent": s, "tokens": s.split(), "raw": s}
            for i, s in zip(sent_ids, sentences)
        ],
    }


def _make_videos(
    root, split, num_videos, seed, size_range, frame_range, fps, max_objects, progress
):
    (root / "videos" / split).mkdir(parents=True, exist_ok=True)
    _remove_stale(root / "videos" / split, r"video_(\d{3})\.(?:mp4|txt)", num_videos)
    jobs = [
        (root, split, i, seed, size_range, frame_range, fps, max_objects) for i in range(num_videos)
    ]
    videos, images, annotations = [], [], []
    instance_base = 0
    for video, frames in _run(_write_video, jobs, f"{split} videos", progress):
        video = {"id": len(videos) + 1, **video}
        videos.append(video)
        for image, anns in frames:
            image = {"id": len(images) + 1, "video_id": video["id"], **image}
            images.append(image)
            for ann in anns:
                ann = {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "video_id": video["id"],
                    **ann,
                }
                ann["instance_id"] += instance_base
                annotations.append(ann)
        instance_base += max((a["instance_id"] for _, anns in frames for a in anns), default=0)
    info = {**_INFO, "seed": seed, "split": split}
    out = {"info": info, "videos": videos, "images": images, "annotations": annotations}
    _dump({**out, "categories": coco_categories()}, root / "annotations" / f"videos_{split}.json")


def make_synthetic(
    out_dir: str | Path,
    num_train: int,
    num_val: int,
    seed: int = 0,
    image_size: tuple[int, int] = (128, 256),
    num_videos: int = 1,
    num_train_videos: int = 0,
    video_frames: tuple[int, int] = (24, 48),
    fps: int = 10,
    max_objects: int = 6,
    progress: bool = True,
    holdout_pairs: Sequence[tuple[str, str]] = HOLDOUT_PAIRS,
) -> dict:
    """Render the synthetic world into ``out_dir`` (layout in the module docstring).

    image_size: (min, max) side length in px; num_videos / num_train_videos: clips
    for val / train; video_frames: (min, max) frames per clip; holdout_pairs: (colour,
    category) pairs whose expressions are left out of the train split's ODVG grounding
    lines and refcoco json and flagged ``held_out`` in val (see ``grounding``; ``()``: none).
    Files of ours left from a larger earlier run in the same folders are deleted.

    Returns ``{"root": Path, split: {"images", "semantic", "depth", "instances",
    "panoptic", "panoptic_json", "refs", "label_map", "odvg", "refcoco"[, "videos",
    "video_annotations"]}}`` for split in train/val.
    """
    root = Path(out_dir)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    size_range = (int(image_size[0]), int(image_size[1]))
    if size_range[0] < 16 or size_range[1] // 2 - (size_range[0] + 1) // 2 < 1:
        raise ValueError(f"image_size (min, max) needs 16 <= min and two even sizes: {image_size}")
    paths: dict = {"root": root}
    label_map = write_label_map(root)
    for split, n, nv in (("train", num_train, num_train_videos), ("val", num_val, num_videos)):
        images, annotations, refs = _make_split(
            root, split, n, seed, size_range, max_objects, progress
        )
        grounding = write_grounding(root, split, images, annotations, refs, holdout_pairs)
        paths[split] = {
            "images": root / "images" / split,
            "semantic": root / "semantic" / split,
            "depth": root / "depth" / split,
            "instances": root / "annotations" / f"instances_{split}.json",
            "panoptic": root / "panoptic" / split,
            "panoptic_json": root / "annotations" / f"panoptic_{split}.json",
            "refs": root / "annotations" / f"refs_{split}.json",
            "label_map": label_map,
            **grounding,
        }
        if nv > 0:
            _make_videos(
                root, split, nv, seed, size_range, video_frames, fps, max_objects, progress
            )
            paths[split]["videos"] = root / "videos" / split
            paths[split]["video_annotations"] = root / "annotations" / f"videos_{split}.json"
    return paths
