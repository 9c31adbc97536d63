"""Fixtures that write tiny COCO datasets (json + images + seg / depth PNGs) to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

COCO_KEYPOINT_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 (H, W, 3) array (OpenCV writes BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (counts list, column-major, starting with a run of 0s)."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def disk(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def box_of(mask: np.ndarray) -> list[float]:
    """COCO xywh of a mask's tight box."""
    ys, xs = np.nonzero(mask)
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]


def make_tiny_coco() -> dict:
    """The standard tiny COCO dict: 3 categories (ids 3, 7, 11), 3 images (one without
    annotations), polygons / compressed RLE / uncompressed crowd RLE, keypoints, and two
    degenerate boxes + one box outside its image."""
    kps = np.zeros((17, 3))
    kps[:5] = [[10, 6, 2], [8, 5, 2], [12, 5, 1], [7, 6, 2], [13, 6, 0]]
    kps[13:] = [[8, 28, 2], [14, 28, 2], [8, 30, 2], [14, 30, 1]]
    kps[kps[:, 2] == 0] = 0
    cat_mask, car_mask = disk(40, 48, 32, 12, 6), disk(40, 48, 36, 30, 5)
    b_cat = [[2, 2, 12, 2, 12, 12, 2, 12], [20, 20, 28, 20, 24, 28]]  # two parts
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 48, "height": 40},
            {"id": 2, "file_name": "b.png", "width": 32, "height": 32},
            {"id": 5, "file_name": "sub/c.jpg", "width": 40, "height": 24},
        ],
        "categories": [
            {"id": 7, "name": "cat"},
            {
                "id": 3,
                "name": "person",
                "keypoints": COCO_KEYPOINT_NAMES,
                "skeleton": [[16, 14], [14, 12], [6, 7]],
            },
            {"id": 11, "name": "car"},
        ],
        "annotations": [
            {"id": 101, "image_id": 1, "category_id": 3, "iscrowd": 0, "bbox": [4, 4, 16, 28],
             "segmentation": [[4, 4, 20, 4, 20, 32, 4, 32]], "area": 448.0,
             "keypoints": kps.reshape(-1).tolist(), "num_keypoints": 8},
            {"id": 102, "image_id": 1, "category_id": 7, "iscrowd": 0, "bbox": box_of(cat_mask),
             "segmentation": compressed_rle(cat_mask), "area": float(cat_mask.sum())},
            {"id": 103, "image_id": 1, "category_id": 11, "iscrowd": 1, "bbox": box_of(car_mask),
             "segmentation": uncompressed_rle(car_mask), "area": float(car_mask.sum())},
            {"id": 104, "image_id": 1, "category_id": 7, "iscrowd": 0, "bbox": [10, 10, 0, 5],
             "segmentation": [], "area": 0.0},
            {"id": 105, "image_id": 1, "category_id": 7, "iscrowd": 0, "bbox": [60, 50, 5, 5],
             "segmentation": [], "area": 25.0},
            {"id": 106, "image_id": 1, "category_id": 11, "iscrowd": 0, "bbox": [-2, 30, 6, 20],
             "area": 40.0},
            {"id": 201, "image_id": 2, "category_id": 7, "iscrowd": 0, "bbox": [2, 2, 26, 26],
             "segmentation": b_cat, "area": 132.0},
            {"id": 202, "image_id": 2, "category_id": 11, "iscrowd": 0, "bbox": [1, 1, 5, -3],
             "segmentation": [], "area": 0.0},
        ],
    }  # fmt: skip


def write_coco(root: Path, coco: dict, name: str = "ann.json", with_files: bool = True) -> Path:
    """Write ``coco`` as ``root/name`` and, with ``with_files``, a random image per entry under
    ``root/images`` plus a seg PNG (class index per pixel) and a 16-bit depth PNG (mm)."""
    root.mkdir(parents=True, exist_ok=True)
    ann_file = root / name
    ann_file.write_text(json.dumps(coco))
    rng = np.random.default_rng(0)
    for img in coco["images"] if with_files else []:
        h, w = img["height"], img["width"]
        write_image(root / "images" / img["file_name"], rng.integers(0, 256, (h, w, 3), np.uint8))
        stem = Path(img["file_name"]).with_suffix(".png")
        (root / "seg" / stem).parent.mkdir(parents=True, exist_ok=True)
        (root / "depth" / stem).parent.mkdir(parents=True, exist_ok=True)
        seg = (np.arange(h * w).reshape(h, w) % 5).astype(np.uint8)
        seg[0] = 255
        assert cv2.imwrite(str(root / "seg" / stem), seg)
        depth = (np.arange(h * w).reshape(h, w) * 7 % 9000).astype(np.uint16)
        assert cv2.imwrite(str(root / "depth" / stem), depth)
    return ann_file


@pytest.fixture
def tiny_coco(tmp_path: Path) -> SimpleNamespace:
    """The standard tiny dataset on disk: ``root``, ``ann_file``, ``img_dir``, ``coco`` dict."""
    coco = make_tiny_coco()
    ann_file = write_coco(tmp_path, coco)
    return SimpleNamespace(root=tmp_path, ann_file=ann_file, img_dir=tmp_path / "images", coco=coco)


@pytest.fixture
def coco_writer(tmp_path: Path):
    """``write(coco_dict, name=..., with_files=...) -> ann_file`` under a fresh tmp folder."""

    def write(coco: dict, name: str = "ann.json", with_files: bool = True) -> Path:
        return write_coco(tmp_path, coco, name, with_files)

    return write
