"""Depth datasets: the synthetic world by folder pairing, list files (NYU / KITTI style),
depth_scale reaching LoadAnnotations, KBCrop, and errors that name the file at fault."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from visionfm.data.transforms import KBCrop
from visionfm.registry import DATASETS

PIPELINE = [
    dict(type="LoadImage"),
    dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_depth=True),
    dict(type="PackInputs"),
]


def _write_pair(root: Path, stem: str, depth: np.ndarray, size: tuple[int, int] | None = None):
    h, w = size or depth.shape
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(root / "rgb" / f"{stem}.png"), np.full((h, w, 3), 90, np.uint8))
    assert cv2.imwrite(str(root / "depth" / f"{stem}.png"), depth)


def _folder(root: Path, **kwargs):
    return DATASETS.build(
        dict(type="DepthFolderDataset", data_root=str(root),
             data_prefix=dict(img="rgb/", depth="depth/"), pipeline=PIPELINE, **kwargs)
    )  # fmt: skip


def test_reads_the_synthetic_world_in_metres(synthetic_root):
    ds = DATASETS.build(
        dict(type="DepthFolderDataset", data_root=str(synthetic_root),
             data_prefix=dict(img="images/train/", depth="depth/train/"), pipeline=PIPELINE)
    )  # fmt: skip
    assert len(ds) == 12
    assert ds.metainfo["depth_scale"] == 1000.0 and ds.metainfo["max_depth"] == 10.0
    item = ds[3]
    sample = item["data_samples"]
    assert sample.img_path.endswith("images/train/000003.jpg")
    assert sample.depth_path.endswith("depth/train/000003.png") and sample.depth_scale == 1000.0
    raw = cv2.imread(str(synthetic_root / "depth/train/000003.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    np.testing.assert_allclose(sample.gt_depth.numpy(), raw / 1000.0, rtol=1e-6)
    assert sample.gt_depth.shape == item["inputs"].shape[1:]
    assert 0.7 < float(sample.gt_depth.min()) and float(sample.gt_depth.max()) <= 5.0


def test_list_file_kitti_style_sparse_with_depth_scale_256(tmp_path):
    depth = np.zeros((6, 8), np.uint16)
    depth[2, 3], depth[4, 5] = 256 * 10, 256 * 42  # 10 m and 42 m, the rest missing
    _write_pair(tmp_path, "a", depth)
    _write_pair(tmp_path, "b", depth)
    (tmp_path / "split.txt").write_text(
        "/rgb/a.png /depth/a.png 721.5377\nrgb/b.png None 721.5\n\n", encoding="utf-8"
    )
    ds = DATASETS.build(
        dict(type="KittiDepthDataset", data_root=str(tmp_path), ann_file="split.txt",
             data_prefix=dict(img="", depth=""), pipeline=PIPELINE)
    )  # fmt: skip
    assert len(ds) == 1 and ds.num_skipped == 1  # the frame without ground truth
    assert ds.metainfo["eval_crop"] == "garg" and ds.metainfo["max_depth"] == 80.0
    gt = ds[0]["data_samples"].gt_depth
    assert gt[2, 3] == 10.0 and gt[4, 5] == 42.0 and (gt > 0).sum() == 2


def test_missing_depth_maps_are_listed(tmp_path):
    _write_pair(tmp_path, "a", np.ones((4, 4), np.uint16))
    cv2.imwrite(str(tmp_path / "rgb" / "b.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"1 of 2 depth maps not found: .*depth/b\.png"):
        _folder(tmp_path)


def test_eight_bit_depth_is_refused_naming_the_file(tmp_path):
    _write_pair(tmp_path, "a", np.full((4, 4), 200, np.uint8))
    ds = _folder(tmp_path)
    with pytest.raises(ValueError, match=r"depth map .*depth/a\.png is 8-bit"):
        ds[0]


def test_depth_of_another_size_is_refused_naming_both_files(tmp_path):
    _write_pair(tmp_path, "a", np.ones((4, 6), np.uint16), size=(5, 6))
    with pytest.raises(ValueError, match=r"depth/a\.png is h=4, w=6 but its image .*rgb/a\.png"):
        _folder(tmp_path)[0]


def test_configuration_errors(tmp_path):
    _write_pair(tmp_path, "a", np.ones((4, 4), np.uint16))
    (tmp_path / "bad.txt").write_text("rgb/a.png\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.txt, line 1: expected '<image> <depth>"):
        _folder(tmp_path, ann_file="bad.txt")
    with pytest.raises(ValueError, match="data_prefix needs exactly"):
        DATASETS.build(dict(type="DepthFolderDataset", data_prefix=dict(img="rgb/")))
    with pytest.raises(ValueError, match="eval_crop"):
        _folder(tmp_path, eval_crop="kitti")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        DATASETS.build(
            dict(type="DepthFolderDataset", data_root=str(tmp_path),
                 data_prefix=dict(img="nope/", depth="depth/"))
        )  # fmt: skip


def test_kb_crop_keeps_image_and_depth_aligned():
    img = np.arange(375 * 1242 * 3, dtype=np.uint32).reshape(375, 1242, 3).astype(np.uint8)
    depth = np.random.default_rng(0).random((375, 1242)).astype(np.float32)
    out = KBCrop()(dict(img=img, gt_depth=depth, homography_matrix=np.eye(3, dtype=np.float32)))
    assert out["img"].shape == (352, 1216, 3) and out["img_shape"] == (352, 1216)
    np.testing.assert_array_equal(out["gt_depth"], depth[23:, 13:1229])
    np.testing.assert_array_equal(out["homography_matrix"][:2, 2], [-13, -23])
    with pytest.raises(ValueError, match="only 300 x 1242"):
        KBCrop()(dict(img=img[:300]))
