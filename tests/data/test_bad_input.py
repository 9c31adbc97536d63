"""Bad input gives an error naming the file / entry / key and what was expected, or, with
``on_error='skip'``, a logged skip with a count; never a crash deep inside a worker."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.model import BaseModel
from torch.utils.data import DataLoader

from visionfm.data import LoadAnnotations
from visionfm.data.datasets import CocoDataset, CocoFormatError, DepthFolderDataset
from visionfm.data.datasets.seg_folder import SegFolderDataset
from visionfm.engine import build_runner
from visionfm.engine.config import load_config
from visionfm.registry import DATASETS, MODELS, ConfigError

ROOT = Path(__file__).resolve().parents[2]

PIPELINE = [dict(type="LoadImage"), dict(type="LoadAnnotations"), dict(type="PackInputs")]


def dataset(tc, **kwargs) -> CocoDataset:
    kwargs.setdefault("data_prefix", dict(img=str(tc.img_dir)))
    return CocoDataset(ann_file=str(tc.ann_file), **kwargs)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# ---- annotation files --------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        ("{}", r"missing key\(s\) \['images', 'annotations', 'categories'\]"),
        ('{"images": {}, "annotations": [], "categories": []}', "'images' must be a list"),
        ('{"images": [], "annotations": [], "categories": []}', "'categories' is empty"),
        ('{"images": [], "annotations": [], "categories": [{"id": 1}]}',
         r"categories\[0\]: 'name' must be a string"),
        ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}, '
         '{"id": 1, "name": "b"}]}', r"categories\[1\]: 'id' 1 is used by two"),
    ],
)  # fmt: skip
def test_empty_or_malformed_annotation_files_are_named(tmp_path, content, message):
    path = tmp_path / "ann.json"
    path.write_text(content)
    for on_error in ("raise", "skip"):  # the file as a whole: never skippable
        with pytest.raises(CocoFormatError, match=message) as info:
            CocoDataset(str(path), on_error=on_error)
        assert str(path) in str(info.value)


def _set(path, value):
    def mutate(coco):
        *parents, last = path
        node = coco
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value

    return mutate


ENTRY_ERRORS = [  # (mutation, kind, message)
    (_set(("annotations", 0, "bbox"), [4, 4, "a", 28]), "annotation",
     r"annotation id 101: 'bbox' must be \[x, y, w, h\] with 4 finite numbers, got \[4, 4, 'a'"),
    (_set(("annotations", 0, "bbox"), [4, 4, 28]), "annotation", "annotation id 101: 'bbox'"),
    (_set(("annotations", 6, "bbox"), KeyError), "annotation", "annotation id 201: 'bbox'"),
    (_set(("annotations", 2, "category_id"), 99), "annotation",
     r"annotation id 103 refers to unknown category_id 99 \(known: \[3, 7, 11\]\)"),
    (_set(("annotations", 2, "image_id"), [1]), "annotation",
     r"annotation id 103 refers to unknown image_id \[1\]"),
    (_set(("annotations", 1, "iscrowd"), 2), "annotation", "'iscrowd' must be 0 or 1, got 2"),
    (_set(("annotations", 1, "segmentation", "size"), [20, 24]), "annotation",
     r"annotation id 102: 'segmentation' mask size \[20, 24\] differs from its image's "
     r"\[height, width\] = \[40, 48\]"),
    (_set(("annotations", 6, "segmentation"), [[1, 2, 3]]), "annotation",
     "annotation id 201: 'segmentation' polygons must be lists of x, y numbers"),
    (_set(("annotations", 0, "keypoints"), [1.0] * 50), "annotation",
     r"annotation id 101: 'keypoints' has 50 numbers, expected 3 \* 17 = 51"),
    (_set(("annotations", 0), "not an object"), "annotation", r"annotations\[0\] must be an object"),
    (_set(("images", 1, "file_name"), KeyError), "image",
     r"image id 2 \(images\[1\]\): 'file_name' must be a non-empty string"),
    (_set(("images", 1, "height"), -32), "image", "image id 2 .*'height' must be a positive"),
    (lambda coco: coco["images"].append(dict(coco["images"][0], file_name="d.png")), "image",
     r"image id 1 \(images\[3\]\) is used by two images"),
]  # fmt: skip


@pytest.mark.parametrize("mutate, kind, message", ENTRY_ERRORS)
def test_malformed_entries_raise_naming_entry_and_key_or_are_skipped(
    tiny_coco, coco_writer, logs, mutate, kind, message
):
    coco = tiny_coco.coco
    mutate(coco)
    ann_file = coco_writer(coco, with_files=False)
    with pytest.raises(CocoFormatError, match=message) as info:
        CocoDataset(str(ann_file), check_images=False)
    assert str(ann_file) in str(info.value) and info.value.kind == kind
    ds = CocoDataset(str(ann_file), check_images=False, on_error="skip", filter_empty_gt=False)
    # one entry left out (a skipped image takes its annotations along, uncounted)
    assert ds.num_invalid[kind] == 1 and sum(ds.num_invalid.values()) == 1
    assert len(ds) >= 2  # the rest of the file is still there
    assert any("on_error='skip' left out" in m and str(ann_file) in m for m in logs)


# ---- boxes -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_boxes, skipped, clipped, kept",
    [
        ("clip", {"degenerate_box": 2, "outside_image": 1}, 1, {101, 102, 103, 106, 201}),
        ("drop", {"degenerate_box": 2, "outside_image": 2}, 0, {101, 102, 103, 201}),
    ],
)
def test_bad_boxes_are_clipped_or_dropped_with_a_count(tiny_coco, bad_boxes, skipped, clipped,
                                                       kept, logs):  # fmt: skip
    ds = dataset(tiny_coco, filter_empty_gt=False, bad_boxes=bad_boxes)
    assert ds.num_skipped == {**skipped, "other_class": 0}
    assert ds.num_clipped == clipped
    ids = {i["ann_id"] for k in range(len(ds)) for i in ds.get_data_info(k)["instances"]}
    assert ids == kept
    assert any(f"and {skipped['outside_image']} boxes outside" in m for m in logs)


def test_bad_boxes_raise_names_the_annotation_and_the_box(tiny_coco):
    with pytest.raises(CocoFormatError, match=r"annotation id 104: 'bbox' \[10, 10, 0, 5\] has "
                       r"zero or negative size .*image width 48, height 40"):  # fmt: skip
        dataset(tiny_coco, bad_boxes="raise")
    with pytest.raises(ValueError, match="bad_boxes must be one of"):
        dataset(tiny_coco, bad_boxes="fix")
    with pytest.raises(ValueError, match="on_error must be one of"):
        dataset(tiny_coco, on_error="ignore")


# ---- image files -------------------------------------------------------------------------
def test_missing_image_files_are_skipped_at_load_time_with_a_count(tiny_coco, logs):
    (tiny_coco.img_dir / "b.png").unlink()
    ds = dataset(tiny_coco, filter_empty_gt=False, on_error="skip")
    assert [ds.get_data_info(i)["img_id"] for i in range(len(ds))] == [1, 5]
    assert ds.num_invalid["image_file"] == 1
    assert any("1 missing image files" in m and "b.png" in m for m in logs)


def test_corrupt_image_in_a_worker_raises_naming_the_file(tiny_coco):
    _truncate(tiny_coco.img_dir / "b.png")
    ds = dataset(tiny_coco, filter_empty_gt=False, pipeline=PIPELINE)
    loader = DataLoader(ds, batch_size=1, num_workers=1, collate_fn=pseudo_collate)
    with pytest.raises(ValueError) as info:
        list(loader)
    text = str(info.value)
    assert "DataLoader worker" in text and "truncated PNG" in text
    assert "while loading sample 1 of CocoDataset" in text and "images/b.png" in text
    assert "on_error='skip' would skip it" in text


def test_corrupt_images_are_skipped_in_workers_deterministically_and_counted(tiny_coco):
    _truncate(tiny_coco.img_dir / "a.png")
    ds = dataset(tiny_coco, filter_empty_gt=False, pipeline=PIPELINE, on_error="skip")
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=pseudo_collate)
    ids = [b["data_samples"][0].img_id for b in loader]
    assert ids == [2, 2, 5]  # a.png (index 0) replaced by the next sample, b.png
    assert ds.num_skipped_samples == 1  # counted by the worker, read by the main process
    assert [b["data_samples"][0].img_id for b in loader] == [2, 2, 5]
    assert ds.num_skipped_samples == 2


def test_skipping_logs_the_file_and_gives_up_on_a_wrong_folder(tiny_coco, logs):
    for name in ("a.png", "b.png", "sub/c.jpg"):
        _truncate(tiny_coco.img_dir / name)
    ds = dataset(tiny_coco, filter_empty_gt=False, pipeline=PIPELINE, on_error="skip",
                 max_refetch=3)  # fmt: skip
    with pytest.raises(RuntimeError, match=r"3 samples in a row failed to load, from index 0"):
        ds[0]
    assert any(m.startswith(f"skipping {tiny_coco.img_dir / 'a.png'}: truncated PNG") for m in logs)


def test_evaluation_never_skips(tiny_coco):
    _truncate(tiny_coco.img_dir / "a.png")
    ds = dataset(tiny_coco, pipeline=PIPELINE, on_error="skip", test_mode=True)
    with pytest.raises(ValueError, match=r"truncated PNG.*a\.png"):
        ds[0]


@MODELS.register_module(force=True)
class _BiImageMean(BaseModel):
    """Regresses nothing useful: one weight times the images' mean, enough to train."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, inputs, data_samples=None, mode="loss"):
        return dict(loss=self.w * torch.stack([x.float().mean() for x in inputs]).mean() / 255)


def _runner_cfg(tc, work_dir, dataset_extra=None, **extra) -> Config:
    ds = dict(type="CocoDataset", ann_file=str(tc.ann_file), data_prefix=dict(img=str(tc.img_dir)),
              pipeline=PIPELINE, filter_empty_gt=False, **(dataset_extra or {}))  # fmt: skip
    cfg = dict(
        model=dict(type="_BiImageMean"),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=ds, batch_size=1, num_workers=1,
                              sampler=dict(type="DefaultSampler", shuffle=False)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[dict(type="SkippedSamplesHook")],
        log_level="WARNING",
        experiment_name=f"bad_input_{work_dir.name}",
    )  # fmt: skip
    cfg.update(extra)
    return Config(cfg)


def test_skipped_samples_are_reported_per_epoch_by_the_hook(tiny_coco, tmp_path, logs):
    _truncate(tiny_coco.img_dir / "sub" / "c.jpg")
    runner = build_runner(_runner_cfg(tiny_coco, tmp_path / "run", dict(on_error="skip")))
    records = _Records()
    runner.logger.addHandler(records)
    runner.train()
    reports = [m for m in records.messages if "training samples skipped" in m]
    assert reports == [
        "epoch 1: 1 training samples skipped because their files failed to load (1 since the "
        "start; each is logged as 'skipping <file>: <reason>')",
        "epoch 2: 1 training samples skipped because their files failed to load (2 since the "
        "start; each is logged as 'skipping <file>: <reason>')",
    ]


def _image_folders(tmp_path, names=("a", "b", "c")) -> Path:
    """img/<name>.jpg images with label/<name>.png maps (class 0) and 16-bit depth PNGs."""
    for sub in ("img", "label"):
        (tmp_path / sub).mkdir()
    for name in names:
        cv2.imwrite(str(tmp_path / "img" / f"{name}.jpg"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "label" / f"{name}.png"), np.zeros((8, 8), np.uint8))
    return tmp_path


def test_folder_datasets_skip_missing_and_corrupt_files_with_on_error(tmp_path, logs):
    root = _image_folders(tmp_path)
    (root / "label" / "b.png").unlink()
    (root / "img" / "a.jpg").write_bytes(b"\xff\xd8\xff" + bytes(50) + b"\xff\xd9")  # corrupt
    seg = dict(data_root=str(root), data_prefix=dict(img="img", seg="label"),
               metainfo=dict(classes=("bg",)), pipeline=PIPELINE[:1])  # fmt: skip
    with pytest.raises(
        FileNotFoundError, match=r"1 of 3 images have no label.*b\.jpg.*would leave"
    ):
        SegFolderDataset(**seg)
    ds = SegFolderDataset(**seg, on_error="skip")
    assert [Path(ds.get_data_info(i)["img_path"]).name for i in range(len(ds))] == [
        "a.jpg",
        "c.jpg",
    ]
    assert any("left out (on_error='skip')" in m and "b.jpg" in m for m in logs)
    assert ds[0]["img_path"].endswith("c.jpg") and ds.num_skipped_samples == 1  # a.jpg corrupt
    depth = dict(data_root=str(root), data_prefix=dict(img="img", depth="label"))
    with pytest.raises(
        FileNotFoundError, match=r"1 of 3 depth maps not found.*b\.png.*would leave"
    ):
        DepthFolderDataset(**depth)
    assert len(DepthFolderDataset(**depth, on_error="skip")) == 2


DATASET_CONFIGS = sorted(
    str(p.relative_to(ROOT)) for p in ROOT.glob("configs/_base_/datasets/*.py")
)


@pytest.mark.parametrize("path", [*DATASET_CONFIGS, "configs/custom/dino_vit-t_custom-coco.py"])
def test_one_on_error_variable_reaches_the_train_val_and_test_datasets(path):
    cfg = load_config(str(ROOT / path), {"on_error": "skip"})
    for split in ("train", "val", "test"):
        dataset_cfg = cfg[f"{split}_dataloader"]["dataset"]
        assert dataset_cfg["on_error"] == "skip", f"{path}: {split}_dataloader.dataset"


def test_on_error_from_the_config_reaches_the_built_datasets(synthetic_root):
    options = dict(on_error="skip", data_root=f"{synthetic_root}/")
    for name in ("synthetic_semantic", "synthetic_depth", "synthetic_keypoints"):
        cfg = load_config(str(ROOT / f"configs/_base_/datasets/{name}.py"), options)
        for split in ("train", "val"):
            assert DATASETS.build(cfg[f"{split}_dataloader"]["dataset"]).on_error == "skip"


# ---- transforms --------------------------------------------------------------------------
def test_keypoints_of_the_wrong_length_name_the_image_and_annotation():
    results = dict(img_path="x/img.png", num_keypoints=17,
                   instances=[dict(bbox=[0, 0, 2, 2], bbox_label=0, ann_id=7,
                                   keypoints=[1.0] * 50)])  # fmt: skip
    with pytest.raises(ValueError, match=r"x/img\.png, annotation id 7: keypoints has 50 "
                       r"numbers, expected 3 \* 17 = 51"):  # fmt: skip
        LoadAnnotations(with_keypoints=True)(results)


def test_mask_of_another_size_names_the_image_and_annotation():
    rle = dict(size=[10, 10], counts="PPYo0")
    results = dict(img_path="x/img.png", height=20, width=30, img_shape=(20, 30),
                   instances=[dict(bbox=[0, 0, 2, 2], bbox_label=0, ann_id=9, mask=rle)])  # fmt: skip
    with pytest.raises(ValueError, match=r"x/img\.png, annotation id 9: RLE size \[10, 10\] "
                       r"differs from the image's \[20, 30\]"):  # fmt: skip
        LoadAnnotations(with_mask=True)(results)


# ---- configs -----------------------------------------------------------------------------
def _dataset_key(cfg, key, value):
    cfg.train_dataloader.dataset[key] = value


CONFIG_ERRORS = [
    (lambda c: _dataset_key(c, "type", "CocoDatset"),
     r"train_dataloader\.dataset\.type: 'CocoDatset' is not in the visionfm::dataset registry\. "
     r"Did you mean 'CocoDataset'"),
    (lambda c: _dataset_key(c, "on_eror", "skip"),
     r"train_dataloader\.dataset\.on_eror: CocoDataset takes no argument 'on_eror'\. "
     r"Did you mean 'on_error'"),
    (lambda c: _dataset_key(c, "pipeline", [dict(type="LoadImg")]),
     r"train_dataloader\.dataset\.pipeline\[0\]\.type: 'LoadImg' .*Did you mean 'LoadImage'"),
    (lambda c: c.train_dataloader.update(num_worker=2),
     r"train_dataloader\.num_worker: not a dataloader setting\. Did you mean 'num_workers'"),
    (lambda c: c.optim_wrapper.optimizer.update(type="SDG"),
     r"optim_wrapper\.optimizer\.type: 'SDG' .*Did you mean 'SGD'"),
    (lambda c: c.optim_wrapper.optimizer.update(momentun=0.9),
     r"optim_wrapper\.optimizer\.momentun: SGD takes no argument 'momentun'\. "
     r"Did you mean 'momentum'"),
    (lambda c: c.update(param_scheduler=[dict(type="MultiStepLr", milestones=[1])]),
     r"param_scheduler\[0\]\.type: 'MultiStepLr' .*Did you mean 'MultiStepLR'"),
    (lambda c: c.custom_hooks.append(dict(type="EMAHok")),
     r"custom_hooks\[1\]\.type: 'EMAHok' .*Did you mean 'EMAHook'"),
    (lambda c: c.update(optim_wraper=c.optim_wrapper),
     r"optim_wraper: not a key the runner reads\. Did you mean 'optim_wrapper'"),
    (lambda c: c.update(model=dict(type="_BiImageMean", scale=2)),
     r"model\.scale: _BiImageMean takes no argument 'scale'"),
]  # fmt: skip


@pytest.mark.parametrize("mutate, message", CONFIG_ERRORS)
def test_config_typos_fail_before_training_with_did_you_mean(tiny_coco, tmp_path, mutate,
                                                             message):  # fmt: skip
    cfg = _runner_cfg(tiny_coco, tmp_path / "run")
    mutate(cfg)
    with pytest.raises(ConfigError, match=message):
        build_runner(cfg)


@pytest.mark.parametrize("dataset_type", sorted(DATASETS.module_dict))
def test_a_misspelt_base_dataset_argument_is_refused_with_did_you_mean(dataset_type):
    # the BaseDataset arguments reach every dataset through **base_args / **kwargs
    with pytest.raises(ConfigError, match=rf"dataset\.max_refech: {dataset_type} takes no "
                       r"argument 'max_refech'\. Did you mean 'max_refetch'"):  # fmt: skip
        DATASETS.build(dict(type=dataset_type, max_refech=5))


def test_the_runner_config_used_above_is_valid(tiny_coco, tmp_path):
    runner = build_runner(_runner_cfg(tiny_coco, tmp_path / "ok", train_cfg=dict(
        by_epoch=True, max_epochs=1)))  # fmt: skip
    runner.train()
    assert runner.iter == 3 and np.isfinite(runner.message_hub.get_scalar("train/loss").current())


def test_json_written_by_the_fixture_is_valid(tiny_coco):
    """Guard for the tests above: the unmodified tiny dataset loads without skips."""
    ds = dataset(tiny_coco, filter_empty_gt=False, on_error="skip")
    assert ds.num_invalid == {"image": 0, "annotation": 0, "image_file": 0}
    assert json.loads(tiny_coco.ann_file.read_text()) == tiny_coco.coco
