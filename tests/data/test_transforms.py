"""Transforms keep image, boxes, masks, keypoints, sem seg and depth consistent.

The property tests build a random "world": a textured background (blue channel in 1..200),
objects painted from COCO polygons in unique colours (blue 0), keypoints marked by 3x3
squares of unique colours (blue 255) centred on the keypoint's pixel, a sem-seg map, and a
depth map that traces content: depth = 1 + y * W + x of the ORIGINAL pixel (0 on some
pixels = invalid). After any pipeline, the depth at an output pixel names the source pixel,
so image, masks and seg can be checked pixel by pixel, and the recorded homography,
boxes and keypoints against an independent mapping of the original annotations.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_util

from visionfm.data.transforms import (
    COCO_FLIP_PAIRS,
    Compose,
    LoadAnnotations,
    LoadImage,
    PhotoMetricDistortion,
    RandomChoiceResize,
    RandomCrop,
    RandomFlip,
    Resize,
)

K = 4
FLIP_PAIRS = [(0, 1), (2, 3)]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- the world --------------------------------------------------------------------------
def _place_markers(rng: np.random.Generator, h: int, w: int, count: int) -> list[tuple]:
    """Up to ``count`` pixel centres (x, y) whose 3x3 squares fit and do not touch."""
    cands = [(x, y) for y in range(1, h - 1) for x in range(1, w - 1)]
    rng.shuffle(cands)
    chosen: list[tuple] = []
    for x, y in cands:
        if all(max(abs(x - a), abs(y - b)) >= 3 for a, b in chosen):
            chosen.append((x, y))
            if len(chosen) == count:
                break
    return chosen


def make_world(h: int, w: int, n: int, seed: int) -> dict:
    """Results dict (before LoadAnnotations) + reference arrays under 'ref_*' keys."""
    rng = np.random.default_rng(seed)
    img = np.stack(
        [rng.integers(0, 151, (h, w)), rng.integers(0, 256, (h, w)), rng.integers(1, 201, (h, w))],
        axis=-1,
    ).astype(np.uint8)
    seg = np.zeros((h, w), np.uint8)
    strip = w // n
    instances, masks, is_rect = [], [], []
    for i in range(n):
        bw, bh = int(rng.integers(4, strip + 1)), int(rng.integers(4, h + 1))
        x1 = int(rng.integers(i * strip, (i + 1) * strip - bw + 1))
        y1 = int(rng.integers(0, h - bh + 1))
        rect = bool(rng.random() < 0.5)
        if rect:
            poly = [x1, y1, x1 + bw, y1, x1 + bw, y1 + bh, x1, y1 + bh]
        else:
            apex = x1 + int(rng.integers(0, bw + 1))
            poly = [x1, y1 + bh, x1 + bw, y1 + bh, apex, y1]
        mask = mask_util.decode(mask_util.merge(mask_util.frPyObjects([poly], h, w))).astype(bool)
        ys, xs = np.nonzero(mask)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        img[mask] = (200 + 20 * i, 60 * i + 10, 0)
        seg[mask] = i + 1
        masks.append(mask)
        is_rect.append(rect)
        instances.append(dict(bbox=box, bbox_label=i, ignore_flag=0, mask=[poly], ann_id=i))
    kps = np.zeros((n, K, 3), np.float32)
    spots = iter(_place_markers(rng, h, w, n * K))
    for i in range(n):
        for k in range(K):
            v = int(rng.integers(0, 3))
            spot = next(spots, None)
            if v == 0 or spot is None:
                continue  # COCO writes an unlabelled keypoint as (0, 0, 0)
            x, y = spot
            img[y - 1 : y + 2, x - 1 : x + 2] = _marker_colour(i, k)
            kps[i, k] = (x + 0.5, y + 0.5, v)
        instances[i]["keypoints"] = kps[i].reshape(-1).tolist()
    depth = (1 + np.arange(h * w, dtype=np.float32)).reshape(h, w)
    depth[rng.random((h, w)) < 0.1] = 0
    world = dict(img=img, height=h, width=w, num_keypoints=K, instances=instances, gt_depth=depth)
    boxes = np.array([inst["bbox"] for inst in instances], np.float64)
    world.update(gt_sem_seg=seg, ref_img=img.copy(), ref_seg=seg.copy(), ref_kps=kps.copy())
    world.update(ref_masks=np.stack(masks), ref_boxes=boxes, ref_is_rect=is_rect)
    return world


def _marker_colour(i: int, k: int) -> tuple[int, int, int]:
    return (30 + 40 * k, 40 + 60 * i, 255)


LOAD = [LoadImage(), LoadAnnotations(with_mask=True, with_keypoints=True)]


@st.composite
def worlds(draw) -> dict:
    n = draw(st.integers(1, 3))
    w = draw(st.integers(max(24, 8 * n), 64))
    h = draw(st.integers(24, 64))
    return make_world(h, w, n, draw(st.integers(0, 2**31 - 1)))


@st.composite
def transforms(draw, kinds=("flip", "resize", "choice_resize", "crop", "photo")) -> object:
    """One random transform; resizes never shrink an axis below 0.55x (keeps 3x3 markers)."""
    kind = draw(st.sampled_from(kinds))
    if kind == "flip":
        return RandomFlip(prob=draw(st.sampled_from([0.5, 1.0])), flip_pairs=FLIP_PAIRS)
    if kind in ("resize", "choice_resize"):
        scales = []
        for _ in range(draw(st.integers(1, 3))):
            fx, fy = draw(st.floats(0.55, 2.0)), draw(st.floats(0.55, 2.0))
            scales.append((int(64 * fx + 1), int(64 * fy + 1)))  # >= 0.55 x any image here
        keep_ratio = draw(st.booleans())
        if kind == "resize":
            return Resize(scales[0], keep_ratio=keep_ratio, interpolation="nearest")
        return RandomChoiceResize(scales, keep_ratio=keep_ratio, interpolation="nearest")
    if kind == "crop":
        if draw(st.booleans()):
            size = (draw(st.integers(8, 64)), draw(st.integers(8, 64)))
            return RandomCrop(size, allow_negative_crop=draw(st.booleans()))
        size = (draw(st.floats(0.3, 1.0)), draw(st.floats(0.3, 1.0)))
        return RandomCrop(size, crop_type="relative_range", allow_negative_crop=True)
    return PhotoMetricDistortion(prob=1.0)


# ---- the checks -------------------------------------------------------------------------
def _apply(hom: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(..., 2) points through a (3, 3) homography."""
    pts = np.concatenate([xy, np.ones_like(xy[..., :1])], axis=-1) @ hom.T
    return pts[..., :2] / pts[..., 2:]


def check_consistent(world: dict, res: dict, exact_colours: bool) -> None:
    """Every geometric key of ``res`` agrees with the world's reference (see module doc)."""
    img, depth, seg, masks = res["img"], res["gt_depth"], res["gt_sem_seg"], res["gt_masks"]
    h, w = img.shape[:2]
    w0 = world["width"]
    hom = res["homography_matrix"].astype(np.float64)
    assert res["img_shape"] == (h, w) and depth.shape == seg.shape == (h, w)
    assert masks.shape[1:] == (h, w) and img.dtype == np.uint8
    # depth traces every valid output pixel to its source pixel: content follows it
    yy, xx = np.nonzero(depth > 0)
    src = depth[yy, xx].astype(np.int64) - 1
    sy, sx = src // w0, src % w0
    assert (seg[yy, xx] == world["ref_seg"][sy, sx]).all()
    if exact_colours:
        assert (img[yy, xx] == world["ref_img"][sy, sx]).all()
    back = _apply(np.linalg.inv(hom), np.stack([xx + 0.5, yy + 0.5], -1).astype(np.float64))
    assert np.abs(back - np.stack([sx + 0.5, sy + 0.5], -1)).max() <= 0.5 + 1e-3
    # which instances survive, and their boxes: the original box mapped by the homography
    corners = world["ref_boxes"][:, [0, 1, 2, 1, 0, 3, 2, 3]].reshape(-1, 4, 2)
    mapped = _apply(hom, corners)
    ref = np.concatenate([mapped.min(1), mapped.max(1)], axis=1)
    ref[:, 0::2], ref[:, 1::2] = ref[:, 0::2].clip(0, w), ref[:, 1::2].clip(0, h)
    area = (ref[:, 2] - ref[:, 0]) * (ref[:, 3] - ref[:, 1])
    labels = res["gt_labels"]
    sure_in, sure_out = set(np.nonzero(area > 1e-3)[0]), set(np.nonzero(area <= 0)[0])
    assert sure_in <= set(labels.tolist()) and not (sure_out & set(labels.tolist()))
    assert len(labels) == len(res["gt_bboxes"]) == len(masks) == len(res["gt_keypoints"])
    np.testing.assert_allclose(res["gt_bboxes"], ref[labels], atol=1e-3)
    tol = 0.0 if np.allclose(np.abs(hom[:2, :2]), np.eye(2)) else 1.0  # 1 px after a resize
    flipped = bool(res["flip"])
    for j, i in enumerate(labels):
        assert (masks[j][yy, xx] == world["ref_masks"][i][sy, sx]).all()
        _check_instance(world, res, j, i, tol, flipped, exact_colours)


def _check_instance(world, res, j, i, tol, flipped, exact_colours) -> None:
    """Mask <-> colour <-> box, and keypoints, of output instance j (world instance i)."""
    img, mask, box = res["img"], res["gt_masks"][j], res["gt_bboxes"][j]
    h, w = img.shape[:2]
    ys, xs = np.nonzero(mask)
    if len(xs):
        tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
        assert (tight[:2] >= box[:2] - tol - 1e-4).all() and (
            tight[2:] <= box[2:] + tol + 1e-4
        ).all()
        if world["ref_is_rect"][i]:
            np.testing.assert_allclose(tight, box, atol=tol + 1e-4)
    elif world["ref_is_rect"][i]:  # a clipped triangle's box may hold none of its pixels
        assert min(box[2] - box[0], box[3] - box[1]) <= 1 + tol
    if exact_colours:
        colour = np.array((200 + 20 * i, 60 * i + 10, 0), np.uint8)
        inside = img[mask]
        assert ((inside == colour).all(-1) | (inside[:, 2] == 255)).all()
        assert not ((img == colour).all(-1) & ~mask).any()
    # keypoints: original positions through the homography, slots swapped when mirrored
    hom = res["homography_matrix"].astype(np.float64)
    order = np.arange(K)
    if flipped:
        for a, b in FLIP_PAIRS:
            order[a], order[b] = b, a
    ref = world["ref_kps"][i][order]
    kps = res["gt_keypoints"][j]
    labelled = ref[:, 2] > 0
    np.testing.assert_allclose(kps[labelled, :2], _apply(hom, ref[labelled, :2]), atol=1e-3)
    x, y = kps[:, 0], kps[:, 1]
    in_img = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    np.testing.assert_array_equal(kps[:, 2], np.where(labelled & in_img, ref[:, 2], 0))
    for k in np.nonzero(kps[:, 2] > 0)[0]:
        px, py = int(np.floor(x[k])), int(np.floor(y[k]))
        if exact_colours:  # the keypoint lands on its own marker (of its ORIGINAL slot)
            assert tuple(img[py, px]) == _marker_colour(i, order[k])
        src = int(res["gt_depth"][py, px]) - 1
        if src >= 0:  # the traced source pixel is within the marker's 3x3 square
            ox, oy = ref[k, :2] - 0.5
            assert max(abs(src % world["width"] - ox), abs(src // world["width"] - oy)) <= 1


def run_pipeline(world: dict, steps: list, seed: int) -> dict | None:
    np.random.seed(seed)
    results = {k: v for k, v in world.items() if not k.startswith("ref_")}
    results["instances"] = [dict(inst) for inst in world["instances"]]
    return Compose(LOAD + steps)(results)


# ---- property tests ---------------------------------------------------------------------
@PROPERTY
@given(world=worlds(), step=transforms(), seed=st.integers(0, 2**31 - 1))
def test_each_transform_keeps_annotations_on_their_pixels(world, step, seed):
    res = run_pipeline(world, [step], seed)
    if res is None:  # only a crop that lost every box may drop the sample
        assert isinstance(step, RandomCrop) and not step.allow_negative_crop
        return
    check_consistent(world, res, exact_colours=not isinstance(step, PhotoMetricDistortion))


@PROPERTY
@given(
    world=worlds(),
    steps=st.lists(transforms(kinds=("flip", "crop", "photo")), min_size=1, max_size=4),
    resize=st.none() | transforms(kinds=("resize", "choice_resize")),
    where=st.integers(0, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_pipelines_keep_annotations_on_their_pixels(world, steps, resize, where, seed):
    if resize is not None:  # at most one resize: then nearest sampling maps pixels exactly
        steps.insert(where, resize)
    res = run_pipeline(world, steps, seed)
    if res is None:
        assert any(isinstance(t, RandomCrop) and not t.allow_negative_crop for t in steps)
        return
    photo = any(isinstance(t, PhotoMetricDistortion) for t in steps)
    check_consistent(world, res, exact_colours=not photo)


@settings(max_examples=30, deadline=None)
@given(world=worlds(), seed=st.integers(0, 2**31 - 1))
def test_flip_twice_is_identity(world, seed):
    flip = RandomFlip(prob=1.0, flip_pairs=FLIP_PAIRS)
    once = run_pipeline(world, [flip], seed)
    assert once["flip"] and once["flip_direction"] == "horizontal"
    assert not np.array_equal(once["img"], world["ref_img"])
    twice = run_pipeline(world, [flip, flip], seed)
    ref = run_pipeline(world, [], seed)
    for key in ("img", "gt_masks", "gt_sem_seg", "gt_depth", "gt_bboxes", "gt_keypoints"):
        np.testing.assert_array_equal(twice[key], ref[key], err_msg=key)
    assert twice["flip"] is False and twice["flip_direction"] is None
    np.testing.assert_array_equal(twice["homography_matrix"], np.eye(3))


# ---- example-based tests ----------------------------------------------------------------
def test_flip_swaps_coco_left_right_keypoints_and_checks_k():
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, :, 0] = np.arange(17) + 0.5  # keypoint k at x = k + 0.5
    kps[0, :, 2] = 2
    res = RandomFlip(prob=1.0)(dict(img=np.zeros((4, 20, 3), np.uint8), gt_keypoints=kps))
    out = res["gt_keypoints"][0]
    assert out[0, 0] == 20 - 0.5  # nose: mirrored, same slot
    for a, b in COCO_FLIP_PAIRS:  # left eye slot now holds the mirrored right eye, etc.
        assert out[a, 0] == 20 - (b + 0.5) and out[b, 0] == 20 - (a + 0.5)
    kps = np.zeros((1, 5, 3), np.float32)  # 5 keypoints: COCO's pairs do not apply
    with pytest.raises(ValueError, match="flip_pairs"):
        RandomFlip(prob=1.0)(dict(img=np.zeros((4, 4, 3), np.uint8), gt_keypoints=kps))


@pytest.mark.parametrize(
    "hw, scale, keep_ratio, expected",
    [
        ((300, 1000), (1333, 800), True, (400, 1333)),  # long edge bound: 1333/1000 < 800/300
        ((1000, 300), (1333, 800), True, (1333, 400)),  # portrait: same edge bounds
        ((480, 640), (1333, 800), True, (800, 1067)),  # short edge bound 800/480
        ((480, 640), (320, 240), False, (240, 320)),  # exact (w, h)
    ],
)
def test_resize_output_size(hw, scale, keep_ratio, expected):
    res = Resize(scale, keep_ratio=keep_ratio)(dict(img=np.zeros((*hw, 3), np.uint8)))
    assert res["img"].shape[:2] == expected and res["img_shape"] == expected
    assert res["scale_factor"] == (expected[1] / hw[1], expected[0] / hw[0])


def test_resize_bilinear_keeps_object_colour_inside_its_mask():
    world = make_world(40, 48, 2, seed=3)
    res = run_pipeline(world, [Resize((96, 80), keep_ratio=False)], seed=0)
    for j in range(len(res["gt_labels"])):
        inner = res["gt_masks"][j].copy()  # pixels whose 3x3 neighbourhood is all mask
        inner[1:-1, 1:-1] = np.lib.stride_tricks.sliding_window_view(inner, (3, 3)).all((-1, -2))
        inner[[0, -1]] = inner[:, [0, -1]] = False
        colour = np.array((200 + 20 * j, 60 * j + 10, 0))
        pix = res["img"][inner].astype(int)
        ok = (np.abs(pix - colour).max(-1) <= 1) | (pix[:, 2] > 0)  # or near a blue marker
        assert inner.any() and ok.mean() > 0.9


def test_depth_bilinear_never_blends_with_invalid_pixels():
    depth = np.full((20, 30), 2.5, np.float32)
    depth[5:9, 10:15] = 0
    ramp = np.tile(np.arange(30, dtype=np.float32) + 1, (20, 1))
    img = np.zeros((20, 30, 3), np.uint8)
    resize = Resize((45, 30), keep_ratio=False, depth_interpolation="bilinear")
    out = resize(dict(img=img, gt_depth=depth))["gt_depth"]
    assert (out == 0).any() and np.allclose(out[out != 0], 2.5, atol=1e-6)
    out = resize(dict(img=img, gt_depth=ramp))["gt_depth"]
    centres = (np.arange(45) + 0.5) * 30 / 45 - 0.5  # bilinear samples the ramp linearly
    np.testing.assert_allclose(out[10, 2:-2], centres[2:-2] + 1, atol=1e-3)


def test_random_choice_resize_uses_one_of_the_scales():
    np.random.seed(0)
    resize = RandomChoiceResize([(20, 10), (40, 30)], keep_ratio=False)
    shapes = {resize(dict(img=np.zeros((8, 8, 3), np.uint8)))["img"].shape for _ in range(30)}
    assert shapes == {(10, 20, 3), (30, 40, 3)}


def _corner_box_results(ignore: bool = False) -> dict:
    results = dict(img=np.zeros((40, 40, 3), np.uint8), gt_labels=np.array([0]))
    box = np.array([[0, 0, 10, 10]], np.float32)
    return dict(results, gt_bboxes=box, gt_ignore_flags=np.array([ignore]))


def test_random_crop_without_boxes_retries_then_drops_the_sample_unless_allowed():
    np.random.seed(0)
    # a 20x20 window of a 40x40 image keeps the corner box when x0, y0 < 10: p = (10/21)^2
    once = [RandomCrop((20, 20), max_tries=1)(_corner_box_results()) for _ in range(40)]
    assert 0 < sum(r is None for r in once) < 40
    assert all(r["gt_labels"].tolist() == [0] for r in once if r is not None)
    retried = [RandomCrop((20, 20), max_tries=60)(_corner_box_results()) for _ in range(20)]
    assert all(r is not None and r["gt_labels"].tolist() == [0] for r in retried)
    allowed = [
        RandomCrop((20, 20), allow_negative_crop=True, max_tries=1)(_corner_box_results())
        for _ in range(40)
    ]
    assert all(r is not None and r["img"].shape == (20, 20, 3) for r in allowed)
    assert any(len(r["gt_labels"]) == 0 for r in allowed)
    # only an ignored (crowd) box: nothing to keep, so any window is fine
    crowd = [RandomCrop((20, 20), max_tries=1)(_corner_box_results(True)) for _ in range(20)]
    assert all(r is not None for r in crowd)


def test_random_crop_keeps_or_drops_outside_boxes():
    np.random.seed(1)
    results = dict(
        img=np.zeros((20, 40, 3), np.uint8),
        gt_bboxes=np.array([[0, 0, 10, 10], [30, 0, 40, 10]], np.float32),
        gt_labels=np.array([0, 1]),
        gt_keypoints=np.array([[[5.5, 5.5, 2]], [[35.5, 5.5, 1]]], np.float32),
    )
    for drop in (True, False):
        crop = RandomCrop((20, 20), allow_negative_crop=True, drop_outside_boxes=drop)
        for _ in range(10):
            res = crop({k: v.copy() for k, v in results.items()})
            x0 = -res["homography_matrix"][0, 2]  # window [x0, x0 + 20): meets box 0 iff x0 < 10
            expected = np.array([[0, 0, 10 - x0, 10], [30 - x0, 0, 20, 10]]).clip(0, 20)
            visible = [x0 <= 5, x0 >= 16]
            keep = [x0 < 10, x0 > 10] if drop else [True, True]
            np.testing.assert_allclose(res["gt_bboxes"], expected[keep])
            assert res["gt_labels"].tolist() == [i for i in (0, 1) if keep[i]]
            vis = np.array([2, 1]) * np.array(visible)
            np.testing.assert_array_equal(res["gt_keypoints"][:, 0, 2], vis[keep])


def test_photometric_changes_only_the_image_and_matches_hand_computation():
    np.random.seed(0)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    depth = rng.random((16, 16)).astype(np.float32)
    contrast = PhotoMetricDistortion(0, (2.0, 2.0), (1.0, 1.0), 0, prob=1.0)
    res = contrast(dict(img=img.copy(), gt_depth=depth.copy()))
    expected = np.clip(img.astype(np.float32) * 2, 0, 255)
    assert np.abs(res["img"].astype(float) - expected).max() <= 1
    np.testing.assert_array_equal(res["gt_depth"], depth)
    grey = PhotoMetricDistortion(0, (1.0, 1.0), (0.0, 0.0), 0, prob=1.0)(dict(img=img.copy()))
    spread = grey["img"].astype(int).max(-1) - grey["img"].astype(int).min(-1)
    assert spread.max() <= 1  # saturation 0 -> grey
    hue = PhotoMetricDistortion(0, (1.0, 1.0), (1.0, 1.0), 180, prob=1.0)(dict(img=img.copy()))
    assert not np.array_equal(hue["img"], img)
