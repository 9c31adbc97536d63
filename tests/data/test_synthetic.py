"""The synthetic world: determinism, and that every written format agrees with what was drawn."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest
from pycocotools.coco import COCO

from visionfm.data.synthetic import (
    CLASSES,
    KEYPOINT_NAMES,
    SKELETON,
    Referent,
    dataset_scene,
    dataset_video,
    describe,
    make_synthetic,
    render_scene,
)
from visionfm.data.synthetic.shapes import person_keypoints
from visionfm.data.synthetic.world import BACKGROUND_DEPTH_BOTTOM, BACKGROUND_DEPTH_TOP

SEED = 3
N_TRAIN, N_VAL = 16, 6
FRAMES = (24, 26)
COLOR_WORDS = {"red", "green", "blue", "yellow", "purple", "orange", "cyan"}
SIZE_WORDS = {"small", "medium", "large"}


def _make(out: Path, seed: int = SEED) -> dict:
    return make_synthetic(
        out, N_TRAIN, N_VAL, seed=seed, num_videos=1, video_frames=FRAMES, progress=False
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return _make(tmp_path_factory.mktemp("synthetic"))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _xyxy(bbox: list[float]) -> np.ndarray:
    x, y, w, h = bbox
    return np.array([x, y, x + w, y + h])


def _image_anns(coco: COCO, image_id: int) -> list[dict]:
    return coco.loadAnns(coco.getAnnIds(imgIds=image_id))


# ------------------------------------------------------------------ determinism


def test_render_scene_is_deterministic():
    a = render_scene(np.random.default_rng(7), 150, 200)
    b = render_scene(np.random.default_rng(7), 150, 200)
    c = render_scene(np.random.default_rng(8), 150, 200)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.depth, b.depth) and np.array_equal(a.semantic, b.semantic)
    assert not np.array_equal(a.image, c.image)


def test_make_synthetic_is_byte_identical_per_seed(data, tmp_path):
    root = data["root"]
    again = _files(_make(tmp_path / "same")["root"])
    first = _files(root)
    json_names = [k for k in first if k.endswith((".json", ".jsonl"))]
    # instances, panoptic, refs, refcoco, odvg x2 splits + videos_val + label_map
    assert len(json_names) == 12
    assert {k: first[k] for k in json_names} == {k: again[k] for k in json_names}
    for k in first:
        if k.endswith((".jpg", ".png")):
            assert first[k] == again[k], k
    other_paths = make_synthetic(
        tmp_path / "other", 2, 0, seed=SEED + 1, num_videos=0, progress=False
    )
    other = _files(other_paths["root"])
    assert other["annotations/instances_train.json"] != first["annotations/instances_train.json"]
    assert other["images/train/000000.jpg"] != first["images/train/000000.jpg"]


# ------------------------------------------------------------------ COCO instances


def test_layout_and_image_files(data):
    coco = COCO(str(data["train"]["instances"]))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    person = coco.loadCats(5)[0]
    assert person["keypoints"] == list(KEYPOINT_NAMES)
    assert person["skeleton"] == [list(p) for p in SKELETON]
    assert len(coco.imgs) == N_TRAIN
    for img in coco.imgs.values():
        stem = Path(img["file_name"]).stem
        image = cv2.imread(str(data["train"]["images"] / img["file_name"]))
        assert image.shape == (img["height"], img["width"], 3)
        assert img["height"] != img["width"] and 128 <= min(image.shape[:2]) <= 256
        sem = cv2.imread(str(data["train"]["semantic"] / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(str(data["train"]["depth"] / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert sem.dtype == np.uint8 and sem.shape == image.shape[:2]
        assert depth.dtype == np.uint16 and depth.shape == image.shape[:2]


def test_masks_boxes_areas_match_the_rendered_scene(data):
    coco = COCO(str(data["train"]["instances"]))
    kinds = set()
    for index in range(N_TRAIN):
        scene = dataset_scene(SEED, "train", index)
        anns = _image_anns(coco, index + 1)
        assert len(anns) == len(scene.objects) >= 1
        for ann, obj in zip(anns, scene.objects):
            mask = coco.annToMask(ann).astype(bool)
            assert np.array_equal(mask, obj.mask)
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            assert ann["bbox"] == mask_utils.toBbox(rle).tolist()
            assert np.array_equal(_xyxy(ann["bbox"]), obj.bbox)
            assert ann["area"] == mask.sum() >= 20
            assert ann["category_id"] == obj.category_id and ann["iscrowd"] == 0
            polygon = isinstance(ann["segmentation"], list)
            kinds.add(polygon)
            if polygon:  # only for unoccluded convex shapes
                assert CLASSES[ann["category_id"] - 1] in ("circle", "square", "triangle")
                assert not obj.occluded
    assert kinds == {True, False}  # both encodings are exercised


def test_semantic_png_agrees_with_instances(data):
    coco = COCO(str(data["val"]["instances"]))
    for img in coco.imgs.values():
        sem = cv2.imread(
            str(data["val"]["semantic"] / img["file_name"].replace(".jpg", ".png")),
            cv2.IMREAD_UNCHANGED,
        )
        covered = np.zeros(sem.shape, bool)
        for ann in _image_anns(coco, img["id"]):
            mask = coco.annToMask(ann).astype(bool)
            assert (sem[mask] == ann["category_id"]).all()
            assert not (covered & mask).any()  # visible masks are disjoint
            covered |= mask
        assert (sem[~covered] == 0).all()


def test_depth_png_follows_occlusion_and_background_slope(data):
    coco = COCO(str(data["train"]["instances"]))
    occlusions = 0
    for index in range(N_TRAIN):
        img = coco.imgs[index + 1]
        depth = cv2.imread(
            str(data["train"]["depth"] / img["file_name"].replace(".jpg", ".png")),
            cv2.IMREAD_UNCHANGED,
        ).astype(np.int64)
        scene = dataset_scene(SEED, "train", index)
        anns = _image_anns(coco, img["id"])
        covered = np.zeros(depth.shape, bool)
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            covered |= mask
            mm = round(ann["attributes"]["depth_m"] * 1000)
            assert (depth[mask] == mm).all() and 800 <= mm <= 3000
        # wherever two objects overlap, the visible one is the nearer one
        for a, oa in zip(anns, scene.objects):
            for b, ob in zip(anns, scene.objects):
                overlap = oa.full_mask & ob.full_mask & coco.annToMask(a).astype(bool)
                if a is not b and overlap.any():
                    occlusions += 1
                    assert a["attributes"]["depth_m"] < b["attributes"]["depth_m"]
                    assert (depth[overlap] < round(b["attributes"]["depth_m"] * 1000)).all()
        rows = np.linspace(BACKGROUND_DEPTH_TOP, BACKGROUND_DEPTH_BOTTOM, depth.shape[0]) * 1000
        expected = np.broadcast_to(np.round(rows)[:, None], depth.shape)
        assert np.array_equal(depth[~covered], expected[~covered])
        assert (depth[~covered] > 3000).all()  # behind every object
    assert occlusions > 0


def test_keypoint_visibility_is_honest(data):
    """v=2 on no nearer object's pixels, v=1 on a nearer object, v=0 outside (x=y=0)."""
    counts = np.zeros(3, int)
    for split in ("train", "val"):
        coco = COCO(str(data[split]["instances"]))
        for img in coco.imgs.values():
            anns = _image_anns(coco, img["id"])
            for ann in anns:
                if "keypoints" not in ann:
                    assert ann["category_id"] != 5
                    continue
                kp = np.array(ann["keypoints"]).reshape(17, 3)
                assert ann["num_keypoints"] == (kp[:, 2] > 0).sum()
                nearer = np.zeros((img["height"], img["width"]), bool)
                for other in anns:
                    if other["attributes"]["depth_m"] < ann["attributes"]["depth_m"]:
                        nearer |= coco.annToMask(other).astype(bool)
                for x, y, v in kp:
                    counts[int(v)] += 1
                    if v == 0:
                        assert x == 0 and y == 0
                        continue
                    assert 0 <= x < img["width"] and 0 <= y < img["height"]
                    assert nearer[int(y), int(x)] == (v == 1)
    assert (counts > 0).all(), counts  # all three flags occur


def test_truncated_keypoints_are_outside_the_image():
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(40):
        scene = render_scene(rng, 128, 160)
        for obj in scene.objects:
            if obj.keypoints is None:
                continue
            s = obj.spec
            raw = person_keypoints(s.center, s.scale, s.angle, np.array(s.pose))
            outside = (raw[:, 0] < 0) | (raw[:, 0] >= 160) | (raw[:, 1] < 0) | (raw[:, 1] >= 128)
            assert np.array_equal(obj.keypoints[:, 2] == 0, outside)
            seen += outside.sum()
    assert seen > 0


# ------------------------------------------------------------------ referring expressions


def _parse(sentence: str) -> list[dict]:
    """'the [size] [colour] cat [rel the [size] [colour] cat]' -> [target, (landmark)] dicts."""
    words = sentence.split()
    phrases, relation, i = [], None, 0
    while i < len(words):
        assert words[i] == "the", sentence
        i += 1
        phrase = {"size": None, "color": None, "relation": relation}
        if words[i] in SIZE_WORDS:
            phrase["size"], i = words[i], i + 1
        if words[i] in COLOR_WORDS:
            phrase["color"], i = words[i], i + 1
        assert words[i] in CLASSES, sentence
        phrase["category"], i = words[i], i + 1
        phrases.append(phrase)
        if i < len(words):
            relation = " ".join(words[i : i + 2]) if words[i] in ("left", "right") else words[i]
            i += len(relation.split())
    assert len(phrases) in (1, 2), sentence
    return phrases


def _matching(phrase: dict, anns: list[dict]) -> list[dict]:
    return [
        a
        for a in anns
        if CLASSES[a["category_id"] - 1] == phrase["category"]
        and phrase["color"] in (None, a["attributes"]["color"])
        and phrase["size"] in (None, a["attributes"]["size"])
    ]


def _holds(relation: str, a: np.ndarray, b: np.ndarray) -> bool:
    cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return {
        "left of": cx < b[0],
        "right of": cx > b[2],
        "above": cy < b[1],
        "below": cy > b[3],
    }[relation]


def test_referring_expressions_are_unambiguous(data):
    coco = COCO(str(data["train"]["instances"]))
    refs = json.loads(data["train"]["refs"].read_text())
    assert refs and len({r["ref_id"] for r in refs}) == len(refs)
    sent_ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert len(set(sent_ids)) == len(sent_ids)
    relational = 0
    for ref in refs:
        ann = coco.anns[ref["ann_id"]]
        assert ann["image_id"] == ref["image_id"] and ann["category_id"] == ref["category_id"]
        assert ref["split"] == "train" and ref["sent_ids"] == [
            s["sent_id"] for s in ref["sentences"]
        ]
        anns = _image_anns(coco, ref["image_id"])
        for sent in ref["sentences"]:
            assert sent["tokens"] == sent["sent"].split()
            phrases = _parse(sent["sent"])
            hits = _matching(phrases[0], anns)
            if len(phrases) == 2:
                relational += 1
                landmarks = _matching(phrases[1], anns)
                assert len(landmarks) == 1, sent["sent"]
                lm = _xyxy(landmarks[0]["bbox"])
                hits = [a for a in hits if _holds(phrases[1]["relation"], _xyxy(a["bbox"]), lm)]
            assert [a["id"] for a in hits] == [ref["ann_id"]], sent["sent"]
    assert relational > 0


def test_describe_picks_the_shortest_unambiguous_expression():
    def obj(cat, color, size, x):
        return Referent(cat, color, size, (x, 10.0, x + 20.0, 30.0))

    objects = [
        obj("circle", "red", "small", 0.0),
        obj("circle", "red", "large", 40.0),
        obj("square", "blue", "small", 80.0),
    ]
    assert describe(objects, 0)[0] == "the small circle"
    assert describe(objects, 2)[0] == "the square"
    twins = [obj("circle", "red", "small", 0.0), obj("square", "blue", "small", 40.0)]
    twins.append(obj("circle", "red", "small", 80.0))
    assert describe(twins, 0) == ["the circle left of the square"]
    assert describe(twins, 2) == ["the circle right of the square"]
    identical = [obj("star", "red", "small", 0.0), obj("star", "red", "small", 40.0)]
    assert describe(identical, 0) == []


# ------------------------------------------------------------------ video


def test_video_file_and_tracks(data):
    meta = json.loads(data["val"]["video_annotations"].read_text())
    (video,) = meta["videos"]
    cap = cv2.VideoCapture(str(data["val"]["videos"] / video["file_name"]))
    assert cap.isOpened()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame[:, :, ::-1])
    cap.release()
    assert FRAMES[0] <= video["num_frames"] == len(frames) <= FRAMES[1]
    assert frames[0].shape == (video["height"], video["width"], 3)
    scenes = dataset_video(SEED, "val", 0, video_frames=FRAMES)
    for frame, scene in zip(frames, scenes):  # the mp4 shows what was annotated
        assert np.abs(frame.astype(int) - scene.image).mean() < 8

    frame_of = {img["id"]: img["frame_id"] for img in meta["images"] if img["video_id"] == 1}
    assert sorted(frame_of.values()) == list(range(video["num_frames"]))
    tracks: dict[int, dict[int, dict]] = {}
    for ann in meta["annotations"]:
        tracks.setdefault(ann["instance_id"], {})[frame_of[ann["image_id"]]] = ann
    moved = 0.0
    for track in tracks.values():
        assert len({a["category_id"] for a in track.values()}) == 1
        full = max(a["area"] for a in track.values())
        for t, ann in track.items():
            nxt = track.get(t + 1)
            if nxt is None or min(ann["area"], nxt["area"]) < 0.95 * full:
                continue  # occlusion changes the visible box; compare unoccluded frames only
            step = np.abs(_xyxy(nxt["bbox"]) - _xyxy(ann["bbox"]))
            assert step.max() <= 10, (t, ann["bbox"], nxt["bbox"])
        first, last = min(track), max(track)
        moved = max(moved, np.abs(_xyxy(track[last]["bbox"]) - _xyxy(track[first]["bbox"])).max())
    assert moved > 10


# ------------------------------------------------------------------ in-memory invariants


@pytest.mark.parametrize("seed", range(12))
def test_scene_invariants(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(128, 257, 2))
    scene = render_scene(rng, h, w)
    masks = scene.masks
    assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
    assert masks.shape == (len(scene.objects), h, w) and len(scene.objects) >= 1
    assert (masks.sum(0) <= 1).all()  # visible masks are disjoint
    assert np.array_equal(scene.semantic > 0, masks.any(0))
    for i, obj in enumerate(scene.objects):
        ys, xs = np.nonzero(obj.mask)
        assert np.array_equal(scene.bboxes[i], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert (scene.semantic[obj.mask] == obj.category_id).all()
        assert np.allclose(scene.depth[obj.mask], obj.depth)
        assert obj.area >= 20 and not (obj.mask & ~obj.full_mask).any()
    depths = scene.depths
    assert (np.diff(depths) < 0).all()  # far to near, all distinct
    assert ((depths >= 0.8) & (depths <= 3.0)).all()
    assert np.array_equal(scene.labels, scene.category_ids - 1)
    assert scene.keypoints.shape == (len(scene.objects), 17, 3)
