"""CocoDataset and the file-reading transforms, on tiny COCO datasets written to tmp_path."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re

import cv2
import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from pycocotools.coco import COCO

from visionfm.data import CocoDataset, Compose, LoadAnnotations, LoadImage, RandomFlip
from visionfm.data.transforms import COCO_FLIP_PAIRS
from visionfm.registry import DATASETS

FULL_PIPELINE = [
    dict(type="LoadImage"),
    dict(
        type="LoadAnnotations",
        with_mask=True,
        with_keypoints=True,
        with_seg=True,
        with_depth=True,
        depth_scale=1000.0,
    ),
    dict(type="PackInputs"),
]


def dataset(tc, **kwargs) -> CocoDataset:
    kwargs.setdefault("data_prefix", dict(img=str(tc.img_dir)))
    return CocoDataset(ann_file=str(tc.ann_file), **kwargs)


def test_classes_come_from_the_json_sorted_by_category_id(tiny_coco):
    ds = dataset(tiny_coco, filter_empty_gt=False)
    meta = ds.metainfo
    assert meta["classes"] == ("person", "cat", "car")  # ids 3, 7, 11
    assert len(meta["palette"]) == 3 and len(set(meta["palette"])) == 3
    assert meta["keypoint_names"] == tiny_coco.coco["categories"][1]["keypoints"]
    assert meta["flip_pairs"] == list(COCO_FLIP_PAIRS)
    assert meta["skeleton"] == [(15, 13), (13, 11), (5, 6)]  # 1-based in the json
    first = ds.get_data_info(0)
    assert [(i["ann_id"], i["bbox_label"], i["ignore_flag"]) for i in first["instances"]] == [
        (101, 0, 0),
        (102, 1, 0),
        (103, 2, 1),
        (106, 2, 0),
    ]
    assert first["instances"][3]["bbox"] == [0.0, 30.0, 4.0, 40.0]  # clipped to the image
    assert first["img_path"] == str(tiny_coco.img_dir / "a.png")
    assert ds.get_cat_ids(1) == [1]


def test_given_classes_keep_only_those_in_that_order(tiny_coco):
    ds = dataset(tiny_coco, metainfo=dict(classes=("car", "cat")), filter_empty_gt=False)
    assert ds.metainfo["classes"] == ("car", "cat") and "keypoint_names" not in ds.metainfo
    labels = [(i["ann_id"], i["bbox_label"]) for i in ds.get_data_info(0)["instances"]]
    assert labels == [(102, 1), (103, 0), (106, 0)]
    assert ds.num_skipped["other_class"] == 1  # the person


def test_a_given_class_missing_from_the_json_is_named(tiny_coco):
    with pytest.raises(ValueError, match=r"\['dog'\].*ann\.json"):
        dataset(tiny_coco, metainfo=dict(classes=("cat", "dog")))


@pytest.mark.parametrize(
    "field, value, message",
    [("category_id", 99, "unknown category_id 99"), ("image_id", 42, "unknown image_id 42")],
)
def test_unknown_ids_name_the_file_and_the_annotation(
    tiny_coco, coco_writer, field, value, message
):
    coco = tiny_coco.coco
    coco["annotations"][2][field] = value
    ann_file = coco_writer(coco, with_files=False)
    with pytest.raises(ValueError, match=rf"ann\.json: annotation id 103 refers to {message}"):
        CocoDataset(str(ann_file), check_images=False)


def test_missing_image_is_reported_at_load_time_with_its_path(tiny_coco):
    (tiny_coco.img_dir / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 3 image files not found: .*images/b\.png"):
        dataset(tiny_coco)


@pytest.mark.parametrize(
    "content, error, message",
    [
        (None, FileNotFoundError, "annotation file not found"),
        ("{not json", ValueError, "is not valid JSON"),
        (json.dumps([1, 2]), ValueError, "top level is a list"),
        (
            json.dumps({"images": [], "annotations": []}),
            ValueError,
            r"missing key\(s\) \['categories'\]",
        ),
    ],
)
def test_bad_annotation_files_are_named(tmp_path, content, error, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=message) as info:
        CocoDataset(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["a.png", "sub/c.jpg"])
def test_truncated_image_raises_naming_the_file(tiny_coco, name):
    path = tiny_coco.img_dir / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    ds = dataset(tiny_coco, filter_empty_gt=False, pipeline=FULL_PIPELINE)
    index = [d["img_path"] for d in (ds.get_data_info(i) for i in range(len(ds)))].index(str(path))
    with pytest.raises(ValueError, match=rf"(truncated|corrupt).*{re.escape(str(path))}"):
        ds[index]


@pytest.mark.parametrize(
    "kwargs, expected_ids",
    [
        (dict(filter_empty_gt=True), [1, 2]),
        (dict(filter_empty_gt=False), [1, 2, 5]),
        (dict(filter_empty_gt=True, test_mode=True), [1, 2, 5]),
        (dict(filter_empty_gt=False, min_size=30), [1, 2]),  # c.jpg is 40x24
    ],
)
def test_empty_images_with_and_without_filter_empty_gt(tiny_coco, kwargs, expected_ids):
    ds = dataset(tiny_coco, **kwargs)
    assert [ds.get_data_info(i)["img_id"] for i in range(len(ds))] == expected_ids


def test_crowd_only_images_count_as_empty(tiny_coco, coco_writer):
    coco = tiny_coco.coco
    coco["annotations"] = [a for a in coco["annotations"] if a["id"] == 103]
    ann_file = coco_writer(coco)
    assert (
        len(CocoDataset(str(ann_file), data_prefix=dict(img=str(ann_file.parent / "images")))) == 0
    )


def test_polygons_and_rle_decode_like_pycocotools_ann_to_mask(tiny_coco):
    ds = dataset(tiny_coco, pipeline=[LoadAnnotations(with_mask=True)])
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCO(str(tiny_coco.ann_file))
    checked = 0
    for i in range(len(ds)):
        res = ds[i]
        for inst, mask in zip(res["instances"], res["gt_masks"]):
            ann = ref.anns[inst["ann_id"]]
            if ann.get("segmentation"):
                np.testing.assert_array_equal(mask, ref.annToMask(ann).astype(bool))
                checked += 1
            else:  # no segmentation: the filled (clipped) box
                x1, y1, x2, y2 = (int(v) for v in inst["bbox"])
                assert mask.sum() == (x2 - x1) * (y2 - y1) and mask[y1:y2, x1:x2].all()
    assert checked == 4  # polygon, compressed RLE, uncompressed RLE, two-part polygon


def test_degenerate_and_outside_boxes_are_skipped_with_a_logged_count(tiny_coco):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        ds = dataset(tiny_coco, filter_empty_gt=False)
    finally:
        logger.removeHandler(handler)
    assert ds.num_skipped == {"degenerate_box": 2, "outside_image": 1, "other_class": 0}
    ann_ids = {i["ann_id"] for k in range(len(ds)) for i in ds.get_data_info(k)["instances"]}
    assert not ann_ids & {104, 105, 202}
    messages = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any("skipped 2 boxes with zero/negative size and 1 boxes outside" in m for m in messages)


def test_full_pipeline_sample(tiny_coco):
    ds = dataset(
        tiny_coco,
        data_prefix=dict(img=str(tiny_coco.img_dir), seg=str(tiny_coco.root / "seg"),
                         depth=str(tiny_coco.root / "depth")),
        pipeline=FULL_PIPELINE,
    )  # fmt: skip
    out = ds[0]
    img, sample = out["inputs"], out["data_samples"]
    bgr = cv2.imread(str(tiny_coco.img_dir / "a.png"))
    assert img.dtype == torch.uint8 and img.shape == (3, 40, 48)
    np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), bgr[..., ::-1])  # RGB
    gt = sample.gt_instances
    expected = [[4, 4, 20, 32], *_xyxy(tiny_coco.coco["annotations"][1]["bbox"]), [0, 30, 4, 40]]
    np.testing.assert_allclose(gt.bboxes.numpy(), expected)
    assert gt.labels.tolist() == [0, 1, 2] and gt.masks.shape == (3, 40, 48)
    assert gt.keypoints.shape == (3, 17, 3)
    kps = np.array(tiny_coco.coco["annotations"][0]["keypoints"]).reshape(17, 3)
    np.testing.assert_allclose(gt.keypoints[0].numpy(), kps)
    assert sample.ignored_instances.labels.tolist() == [2]  # the crowd car
    seg = cv2.imread(str(tiny_coco.root / "seg" / "a.png"), cv2.IMREAD_UNCHANGED)
    depth = cv2.imread(str(tiny_coco.root / "depth" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and sample.gt_sem_seg.dtype == torch.long
    np.testing.assert_array_equal(sample.gt_sem_seg.numpy(), seg)
    np.testing.assert_allclose(sample.gt_depth.numpy(), depth / 1000.0, rtol=1e-6)
    assert sample.img_id == 1 and sample.ori_shape == (40, 48) and sample.flip is False


def _xyxy(xywh):
    x, y, w, h = xywh
    return [[x, y, x + w, y + h]]


def test_built_by_the_runner_with_a_pseudo_collate_dataloader(tiny_coco):
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    cfg = dict(
        type="CocoDataset",
        ann_file=str(tiny_coco.ann_file),
        data_prefix=dict(img=str(tiny_coco.img_dir)),
        pipeline=[dict(type="LoadImage"), dict(type="LoadAnnotations"), dict(type="PackInputs")],
    )
    assert len(DATASETS.build(cfg)) == 2  # our registry, no scope needed
    with DefaultScope.overwrite_default_scope("visionfm"):
        loader = Runner.build_dataloader(
            dict(batch_size=2, num_workers=0, dataset=cfg,
                 sampler=dict(type="DefaultSampler", shuffle=False)),
        )  # fmt: skip
    batch = next(iter(loader))
    assert [s.img_id for s in batch["data_samples"]] == [1, 2]
    assert [tuple(x.shape) for x in batch["inputs"]] == [(3, 40, 48), (3, 32, 32)]


# ---- LoadImage ---------------------------------------------------------------------------
def test_load_image_is_rgb_and_sets_the_geometry_keys(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    cv2.imwrite(str(tmp_path / "red.png"), rgb[..., ::-1])  # OpenCV writes BGR
    res = LoadImage()(dict(img_path=str(tmp_path / "red.png")))
    np.testing.assert_array_equal(res["img"], rgb)
    assert res["ori_shape"] == res["img_shape"] == (5, 7) and res["scale_factor"] == (1.0, 1.0)
    np.testing.assert_array_equal(res["homography_matrix"], np.eye(3))


def test_load_image_honours_exif_orientation(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:5, :5] = 255  # white top-left corner
    im = pil.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    shown = LoadImage()(dict(img_path=str(tmp_path / "rot.jpg")))["img"]
    raw = LoadImage(ignore_orientation=True)(dict(img_path=str(tmp_path / "rot.jpg")))["img"]
    assert raw.shape == (20, 30, 3) and shown.shape == (30, 20, 3)
    assert raw[:5, :5].mean() > 200 and shown[:5, -5:].mean() > 200  # corner moved top-right
    with pytest.raises(ValueError, match=r"rot\.jpg decodes to h=30, w=20 .*h=20, w=30.*EXIF"):
        LoadImage()(dict(img_path=str(tmp_path / "rot.jpg"), height=20, width=30))


def test_load_image_drops_alpha_with_one_note_per_pipeline_naming_the_file(tmp_path, logs):
    pil = pytest.importorskip("PIL.Image")
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.dstack([rgb[..., ::-1], np.full((6, 8), 9)]))
    cv2.imwrite(str(tmp_path / "opaque.png"), rgb[..., ::-1])
    pil.fromarray(rgb[..., 0]).convert("P").save(tmp_path / "palette.png", transparency=0)
    load = LoadImage()
    load(dict(img_path=str(tmp_path / "opaque.png")))
    assert not [m for m in logs if "alpha" in m], "an opaque image is noted"
    for name in ("a.png", "b.png"):
        np.testing.assert_array_equal(load(dict(img_path=str(tmp_path / name)))["img"], rgb)
    notes = [m for m in logs if "alpha" in m]
    assert len(notes) == 1 and "a.png" in notes[0] and "dropped" in notes[0], logs
    LoadImage()(dict(img_path=str(tmp_path / "palette.png")))  # another dataset's pipeline
    assert len([m for m in logs if "alpha" in m]) == 2 and "palette.png" in logs[-1]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "file not found"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_bytes(b"this is no image" * 8), "unknown or unsupported image format"),
        (lambda p: p.mkdir(), "directory"),
        (lambda p: p.write_bytes(cv2.imencode(".png", np.zeros((9, 9, 3), np.uint8))[1][:-20].tobytes()), "truncated PNG"),
        (lambda p: p.write_bytes(cv2.imencode(".jpg", np.zeros((9, 9, 3), np.uint8))[1][:-2].tobytes()), "truncated JPEG"),
        (lambda p: p.write_bytes(b"\xff\xd8\xff" + bytes(100) + b"\xff\xd9"), "corrupt JPEG"),
    ],
)  # fmt: skip
def test_load_image_errors_name_the_file_and_the_problem(tmp_path, make, message):
    path = tmp_path / "x.img"
    make(path)
    with pytest.raises((OSError, ValueError), match=rf"{message}.*x\.img"):
        LoadImage()(dict(img_path=str(path)))


def test_load_annotations_seg_reduce_zero_label_depth_scale_and_missing_keypoints(tmp_path):
    seg = np.array([[0, 1, 2], [255, 3, 0]], np.uint8)
    depth = np.array([[0, 1500, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "seg.png"), seg)
    cv2.imwrite(str(tmp_path / "depth.png"), depth)
    res = LoadAnnotations(with_bbox=False, with_label=False, with_seg=True, with_depth=True,
                          depth_scale=256.0, reduce_zero_label=True)(
        dict(seg_map_path=str(tmp_path / "seg.png"), depth_path=str(tmp_path / "depth.png"))
    )  # fmt: skip
    np.testing.assert_array_equal(res["gt_sem_seg"], [[255, 0, 1], [255, 2, 255]])
    cv2.imwrite(str(tmp_path / "seg16.png"), np.array([[0, 300, 255]], np.uint16))  # >255 classes
    seg16 = LoadAnnotations(
        with_bbox=False, with_label=False, with_seg=True, reduce_zero_label=True
    )(dict(seg_map_path=str(tmp_path / "seg16.png")))["gt_sem_seg"]
    np.testing.assert_array_equal(seg16, [[255, 299, 255]])
    np.testing.assert_allclose(res["gt_depth"], [[0, 1500 / 256, 65535 / 256]])
    with pytest.raises(ValueError, match="no keypoint categories"):
        LoadAnnotations(with_keypoints=True)(dict(instances=[], num_keypoints=0))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        LoadAnnotations(with_seg=True)(dict(seg_map_path=str(tmp_path / "nope.png")))


def test_compose_builds_dicts_through_our_registry_and_stops_on_none():
    calls = []
    pipeline = Compose(
        [
            dict(type="RandomFlip", prob=1.0, flip_pairs=None),  # no default scope needed
            lambda r: calls.append("callable") or r,
            lambda r: None,
            lambda r: calls.append("after None") or r,
        ]
    )
    assert isinstance(pipeline.transforms[0], RandomFlip)
    assert pipeline(dict(img=np.zeros((2, 2, 3), np.uint8))) is None
    assert calls == ["callable"]
    with pytest.raises(KeyError, match="'RandomFlp' is not in .*Did you mean 'RandomFlip'"):
        Compose([dict(type="RandomFlp")])
    with pytest.raises(TypeError, match=r"pipeline\[0\] must be a dict or a callable"):
        Compose([3])
