"""Top-down transforms and CocoKeypointDataset: the crop's affine moves keypoints exactly as it
moves the image, and predictions map back to the original image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from visionfm.data.datasets import CocoKeypointDataset
from visionfm.data.transforms import (
    GetBBoxCenterScale,
    PackPoseInputs,
    RandomBBoxTransform,
    RandomHalfBody,
    TopDownAffine,
    TopDownRandomFlip,
)
from visionfm.data.transforms.topdown import crop_matrix, fix_aspect_ratio
from visionfm.ops.geometry import points_to_original

H, W = 120, 160
INPUT_SIZE = (48, 64)  # (w, h)


def _blob_image(points: np.ndarray, sigma: float = 2.5) -> np.ndarray:
    """(H, W, 3) uint8 with a Gaussian dot centred at each (x, y) of ``points`` (continuous
    coordinates: pixel (i, j) has its centre at (j + 0.5, i + 0.5))."""
    ys, xs = np.mgrid[:H, :W] + 0.5
    img = np.zeros((H, W), np.float64)
    for x, y in points:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.repeat((255 * np.clip(img, 0, 1)).astype(np.uint8)[..., None], 3, -1)


def _centroid(channel: np.ndarray, near: np.ndarray, radius: float = 6.0) -> np.ndarray:
    """Intensity-weighted centre (x, y) of ``channel`` (h, w) within ``radius`` of ``near``."""
    ys, xs = np.mgrid[: channel.shape[0], : channel.shape[1]] + 0.5
    weight = channel.astype(np.float64) * (np.hypot(xs - near[0], ys - near[1]) < radius)
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


def _results(points: np.ndarray) -> dict:
    kps = np.concatenate([points, np.full((len(points), 1), 2.0)], 1)[None].astype(np.float32)
    return dict(
        img=_blob_image(points),
        ori_shape=(H, W),
        img_shape=(H, W),
        homography_matrix=np.eye(3, dtype=np.float32),
        bbox=np.array([40.0, 20.0, 110.0, 100.0], np.float32),
        bbox_score=0.7,
        gt_bboxes=np.array([[40.0, 20.0, 110.0, 100.0]], np.float32),
        gt_labels=np.zeros(1, np.int64),
        gt_keypoints=kps,
    )


POINTS = np.array([[60.0, 40.0], [95.5, 52.25], [70.0, 90.0]])


@pytest.mark.parametrize("rotation", [0.0, 25.0, -70.0])
def test_affine_moves_dots_where_it_moves_the_keypoints(rotation):
    results = GetBBoxCenterScale(padding=1.25)(_results(POINTS))
    results["bbox_rotation"] = rotation
    results = TopDownAffine(INPUT_SIZE)(results)
    assert results["img"].shape == (64, 48, 3) and results["img_shape"] == (64, 48)
    for (x, y, _), original in zip(results["gt_keypoints"][0], POINTS):
        assert np.allclose(_centroid(results["img"][..., 0], np.array([x, y])), [x, y], atol=0.15)
    back = points_to_original(
        torch.from_numpy(results["gt_keypoints"][0, :, :2]).double(), results
    ).numpy()
    assert np.allclose(back, POINTS, atol=1e-3)


def test_flip_then_affine_swaps_and_mirrors_keypoints():
    """Mirrored crop of a left/right keypoint pair: the dot of the person's left keypoint is
    where the left keypoint (now index-swapped) lands, and back-mapping finds the original."""
    kps = np.zeros((17, 2))
    kps[5], kps[6] = POINTS[0], POINTS[1]  # left / right shoulder
    results = _results(kps[[5, 6]])
    full = np.concatenate([kps, np.zeros((17, 1))], 1)[None].astype(np.float32)
    full[0, [5, 6], 2] = 2
    results["gt_keypoints"] = full
    results = GetBBoxCenterScale()(results)
    results = TopDownRandomFlip(prob=1.0)(results)
    results = TopDownAffine(INPUT_SIZE)(results)
    crop = results["gt_keypoints"][0]
    for index in (5, 6):
        assert np.allclose(
            _centroid(results["img"][..., 0], crop[index, :2]), crop[index, :2], atol=0.15
        )
    back = points_to_original(torch.from_numpy(crop[:, :2]).double(), results).numpy()
    assert np.allclose(back[5], POINTS[1], atol=1e-3) and np.allclose(back[6], POINTS[0], atol=1e-3)
    assert (crop[[0, 1, 2]] == 0).all()  # unlabelled keypoints stay zero
    assert results["flip"] is True


def test_crop_box_fills_the_input_with_the_input_aspect_ratio():
    scale = fix_aspect_ratio(np.array([30.0, 90.0]), 48 / 64)
    assert np.allclose(scale, [67.5, 90.0])
    assert np.allclose(fix_aspect_ratio(np.array([90.0, 30.0]), 0.75), [90.0, 120.0])
    m = crop_matrix((100.0, 50.0), (67.5, 90.0), 0.0, (48, 64))
    corners = np.array([[66.25, 5.0, 1.0], [133.75, 95.0, 1.0]]) @ m.T
    assert np.allclose(corners[:, :2], [[0, 0], [48, 64]])


def test_pack_keeps_the_box_for_the_head():
    results = TopDownAffine(INPUT_SIZE)(GetBBoxCenterScale()(_results(POINTS)))
    packed = PackPoseInputs()(results)
    meta = packed["data_samples"].metainfo
    assert packed["inputs"].shape == (3, 64, 48)
    assert meta["bbox"].tolist() == [40.0, 20.0, 110.0, 100.0] and meta["bbox_score"] == 0.7
    assert packed["data_samples"].gt_instances.keypoints.shape == (1, 3, 3)


def test_half_body_box_surrounds_one_half():
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, :, :2] = np.stack([np.full(17, 80.0), np.linspace(10, 110, 17)], 1)
    kps[0, :, 2] = 2
    results = dict(gt_keypoints=kps, bbox_center=np.zeros(2), bbox_scale=np.ones(2))
    results = RandomHalfBody(prob=1.0, padding=1.0)(results)
    h = results["bbox_scale"][1]
    upper, lower = np.ptp(kps[0, :11, 1]), np.ptp(kps[0, 11:, 1])
    assert h == pytest.approx(upper) or h == pytest.approx(lower)


def test_bbox_transform_jitters_within_its_ranges():
    t = RandomBBoxTransform(
        shift_prob=0.0, scale_factor=(0.5, 1.5), rotate_factor=30, rotate_prob=1.0
    )
    for _ in range(20):
        out = t(dict(bbox_center=np.array([10.0, 10.0]), bbox_scale=np.array([20.0, 40.0])))
        assert 10 <= out["bbox_scale"][0] <= 30 and abs(out["bbox_rotation"]) <= 30
        assert out["bbox_center"].tolist() == [10.0, 10.0]


def test_missing_box_is_explained():
    with pytest.raises(KeyError, match="person box"):
        GetBBoxCenterScale()(dict(img=np.zeros((4, 4, 3), np.uint8)))
    with pytest.raises(KeyError, match="GetBBoxCenterScale"):
        TopDownAffine(INPUT_SIZE)(dict(img=np.zeros((4, 4, 3), np.uint8)))


# ------------------------------------------------------------------------------ dataset
def test_dataset_yields_one_sample_per_person(tiny_coco):
    ds = CocoKeypointDataset(str(tiny_coco.ann_file), data_prefix=dict(img=str(tiny_coco.img_dir)))
    assert len(ds) == 1  # one non-crowd person with keypoints
    info = ds.get_data_info(0)
    assert info["bbox"].tolist() == [4.0, 4.0, 20.0, 32.0] and len(info["instances"]) == 1
    meta = ds.metainfo
    assert meta["classes"] == ("person",) and len(meta["sigmas"]) == 17
    assert meta["flip_pairs"][0] == (1, 2) and meta["skeleton"][0] == (15, 13)


def test_dataset_reads_detections_in_test_mode(tiny_coco, tmp_path):
    dets = [
        dict(image_id=1, category_id=3, bbox=[2, 2, 10, 20], score=0.9),
        dict(image_id=2, category_id=3, bbox=[1, 1, 5, 5], score=0.2),
        dict(image_id=2, category_id=7, bbox=[1, 1, 5, 5], score=0.9),  # not a person
    ]
    bbox_file = tmp_path / "dets.json"
    bbox_file.write_text(json.dumps(dets))
    kwargs = dict(data_prefix=dict(img=str(tiny_coco.img_dir)), bbox_file=str(bbox_file))
    ds = CocoKeypointDataset(str(tiny_coco.ann_file), bbox_score_thr=0.5, test_mode=True, **kwargs)
    assert len(ds) == 1 and ds.get_data_info(0)["bbox_score"] == pytest.approx(0.9)
    assert ds.get_data_info(0)["bbox"].tolist() == [2.0, 2.0, 12.0, 22.0]
    with pytest.raises(ValueError, match="for testing"):
        CocoKeypointDataset(str(tiny_coco.ann_file), **kwargs)


def test_synthetic_persons_are_all_samples(synthetic_root):
    ann = json.loads((synthetic_root / "annotations" / "instances_val.json").read_text())
    persons = [a for a in ann["annotations"] if a["category_id"] == 5 and a["num_keypoints"] > 0]
    ds = CocoKeypointDataset(
        str(synthetic_root / "annotations" / "instances_val.json"),
        data_prefix=dict(img=str(synthetic_root / "images" / "val")),
        pipeline=[
            dict(type="LoadImage"),
            dict(type="LoadAnnotations", with_keypoints=True),
            dict(type="GetBBoxCenterScale"),
            dict(type="TopDownAffine", input_size=INPUT_SIZE),
            dict(type="PackPoseInputs"),
        ],
    )
    assert len(ds) == len(persons) > 0
    item = ds[0]
    assert item["inputs"].shape == (3, 64, 48)
    assert item["data_samples"].gt_instances.keypoints.shape == (1, 17, 3)
