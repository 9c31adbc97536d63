"""SegFolderDataset: the synthetic world's semantic PNGs, folder scanning / split files,
reduce_zero_label, and load-time errors that name the file (missing label, bad label value,
size mismatch); ground truth kept at the original size for evaluation is not padded."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

from visionfm.data import DataPreprocessor, LoadAnnotations
from visionfm.data.synthetic import SEMANTIC_CLASSES
from visionfm.registry import DATASETS

LOAD_SEG = dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_seg=True)
PIPELINE = [dict(type="LoadImage"), LOAD_SEG, dict(type="PackInputs")]


def _dataset(root: Path, classes=("a", "b", "c"), pipeline=PIPELINE, **kwargs):
    cfg = dict(
        type="SegFolderDataset",
        data_root=str(root),
        data_prefix=dict(img="img/", seg="ann/"),
        img_suffix=".jpg",
        seg_map_suffix=".png",
        metainfo=dict(classes=classes),
        pipeline=pipeline,
    )
    return DATASETS.build({**cfg, **kwargs})


def _write(root: Path, stem: str, seg: np.ndarray | None, img_hw: tuple[int, int] | None = None):
    """img/<stem>.jpg (random) and, unless ``seg`` is None, ann/<stem>.png."""
    h, w = img_hw or seg.shape
    img_path = root / "img" / f"{stem}.jpg"
    img_path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    assert cv2.imwrite(str(img_path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    if seg is not None:
        seg_path = root / "ann" / f"{stem}.png"
        seg_path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(seg_path), seg.astype(np.uint8))


def test_reads_the_synthetic_semantic_pngs(synthetic_root):
    dataset = DATASETS.build(
        dict(
            type="SegFolderDataset",
            data_root=str(synthetic_root),
            data_prefix=dict(img="images/train/", seg="semantic/train/"),
            metainfo=dict(classes=SEMANTIC_CLASSES),
            pipeline=PIPELINE,
        )
    )
    assert len(dataset) == 12
    assert dataset.metainfo["classes"] == ("background", "circle", "square", "triangle",
                                           "star", "person")  # fmt: skip
    assert len(dataset.metainfo["palette"]) == 6
    info = dataset.get_data_info(3)
    assert info["img_path"].endswith("images/train/000003.jpg")
    assert info["seg_map_path"].endswith("semantic/train/000003.png")
    item = dataset[3]
    seg = item["data_samples"].gt_sem_seg
    assert seg.shape == item["inputs"].shape[1:] and seg.dtype == torch.long
    on_disk = cv2.imread(info["seg_map_path"], cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(seg.numpy(), on_disk)  # 0 = background kept as a class
    assert 0 in seg and seg.max() <= 5


def test_reduce_zero_label_maps_0_to_255_and_shifts_the_rest(tmp_path):
    seg = np.array([[0, 1, 2], [3, 255, 1]], np.uint8)
    _write(tmp_path, "x", seg)
    plain = _dataset(tmp_path, classes=("z", "a", "b", "c"))[0]["data_samples"].gt_sem_seg
    reduced = _dataset(tmp_path, reduce_zero_label=True)[0]["data_samples"].gt_sem_seg
    assert plain.tolist() == seg.tolist()
    assert reduced.tolist() == [[255, 0, 1], [2, 255, 0]]


def test_scans_sub_folders_sorted_or_reads_a_split_file(tmp_path):
    seg = np.zeros((4, 6), np.uint8)
    for stem in ("b", "a", "sub/c"):
        _write(tmp_path, stem, seg)
    dataset = _dataset(tmp_path)
    stems = [Path(dataset.get_data_info(i)["img_path"]).relative_to(tmp_path / "img")
             for i in range(len(dataset))]  # fmt: skip
    assert [str(s) for s in stems] == ["a.jpg", "b.jpg", "sub/c.jpg"]
    assert dataset.get_data_info(2)["seg_map_path"] == str(tmp_path / "ann" / "sub" / "c.png")
    (tmp_path / "split.txt").write_text("sub/c\nb\n\n")
    split = _dataset(tmp_path, ann_file="split.txt")
    assert [split.get_data_info(i)["img_path"][-5:] for i in range(2)] == ["c.jpg", "b.jpg"]


def test_missing_label_file_is_named_at_load_time(tmp_path):
    _write(tmp_path, "ok", np.zeros((4, 6), np.uint8))
    _write(tmp_path, "lonely", None, img_hw=(4, 6))
    with pytest.raises(FileNotFoundError) as e:
        _dataset(tmp_path)
    msg = str(e.value)
    assert "1 of 2" in msg and "lonely.jpg" in msg and str(tmp_path / "ann" / "lonely.png") in msg
    # without a seg folder the images are unlabelled inference inputs
    unlabelled = _dataset(tmp_path, data_prefix=dict(img="img/"), pipeline=[])
    assert len(unlabelled) == 2 and "seg_map_path" not in unlabelled.get_data_info(0)


def test_label_value_beyond_the_classes_names_the_file(tmp_path):
    _write(tmp_path, "bad", np.array([[0, 1], [3, 255]], np.uint8))
    dataset = _dataset(tmp_path)  # 3 classes: 3 is out of range, 255 is fine
    with pytest.raises(ValueError, match=r"bad\.png has label values \[3\] >= num_classes=3"):
        dataset[0]
    assert _dataset(tmp_path, reduce_zero_label=True)[0]  # 3 -> 2 is in range


def test_label_map_of_another_size_than_its_image_names_both(tmp_path):
    _write(tmp_path, "x", np.zeros((4, 6), np.uint8), img_hw=(5, 6))
    with pytest.raises(ValueError, match=r"x\.png is h=4, w=6 but its image .*x\.jpg is h=5"):
        _dataset(tmp_path)[0]


def test_configuration_errors():
    with pytest.raises(ValueError, match="classes"):
        DATASETS.build(dict(type="SegFolderDataset", data_prefix=dict(img="x/")))
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        DATASETS.build(
            dict(type="SegFolderDataset", data_prefix=dict(img="/nonexistent/"),
                 metainfo=dict(classes=("a",)))
        )  # fmt: skip


def test_no_images_with_the_suffix(tmp_path):
    _write(tmp_path, "x", np.zeros((4, 6), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"no '\*\.png' images"):
        _dataset(tmp_path, img_suffix=".png")


def test_load_annotations_contradicting_the_dataset_raises(tmp_path):
    _write(tmp_path, "x", np.zeros((4, 6), np.uint8))
    load = dict(LOAD_SEG, reduce_zero_label=False)
    dataset = _dataset(tmp_path, reduce_zero_label=True, pipeline=[dict(type="LoadImage"), load])
    with pytest.raises(ValueError, match="contradicts"):
        dataset[0]
    assert LoadAnnotations(with_seg=True).reduce_zero_label is None


def test_labels_loaded_after_resize_keep_the_original_size_and_are_not_padded(tmp_path):
    seg = np.ones((10, 14), np.uint8)
    _write(tmp_path, "x", seg)
    pipeline = [dict(type="LoadImage"), dict(type="Resize", scale=(28, 28)), LOAD_SEG,
                dict(type="PackInputs")]  # fmt: skip
    item = _dataset(tmp_path, pipeline=pipeline)[0]
    assert item["inputs"].shape[1:] == (20, 28) and item["data_samples"].gt_sem_seg.shape == (
        10,
        14,
    )
    out = DataPreprocessor(size_divisor=32)(pseudo_collate([item]))
    assert out["inputs"].shape[-2:] == (32, 32)
    assert out["data_samples"][0].gt_sem_seg.tolist() == seg.tolist()
