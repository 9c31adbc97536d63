"""tools/test.py --out DIR writes every task's predictions in its standard format, equal to
the Inferencer's predictions on the same images; what has no format is refused."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _tiny_point_configs import write_checkpoint, write_config, write_point_data

from visionfm.apis import Inferencer
from visionfm.data.files import read_panoptic_png
from visionfm.engine import load_config
from visionfm.evaluation.panoptic_metric import split_panoptic
from visionfm.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
NUM_IMAGES = 2  # of the synthetic val split

# in one process each runner after the first reuses mmengine's Visualizer (warned)
pytestmark = pytest.mark.filterwarnings("ignore:.*instance named of visualizer:UserWarning")


def _options(root: Path, name: str) -> list[str]:
    return [
        f"data_root={root}/",
        "test_dataloader.batch_size=1",  # the Inferencer's padding: one image at a time
        "test_dataloader.num_workers=0",
        "test_dataloader.persistent_workers=False",
        f"test_dataloader.dataset.indices={NUM_IMAGES}",
        f"experiment_name=out_{name}",  # a logger of its own
    ]


def _checkpoint(config: str, options: list[str], path: Path) -> str:
    cfg = load_config(str(ROOT / config), dict(o.split("=", 1) for o in options[:1]))
    torch.manual_seed(0)
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict()}, path)
    return str(path)


def _test_tool(monkeypatch, *args) -> None:
    monkeypatch.setattr(sys, "argv", ["test.py", *map(str, args)])
    runpy.run_path(str(ROOT / "tools" / "test.py"), run_name="__main__")


def _run(config, synthetic_root, tmp_path, monkeypatch) -> tuple[Path, Inferencer]:
    """tools/test.py --out on ``config`` with random weights; the out folder and an
    Inferencer of the same weights."""
    name = Path(config).stem
    options = _options(synthetic_root, name)
    ckpt = _checkpoint(config, options, tmp_path / "model.pth")
    out = tmp_path / "out"
    _test_tool(monkeypatch, ROOT / config, ckpt, "--out", out, "--work-dir", tmp_path / "work",
               "--cfg-options", *options)  # fmt: skip
    inferencer = Inferencer(str(ROOT / config), ckpt, device="cpu", score_thr=0.0,
                            cfg_options={"data_root": f"{synthetic_root}/"})  # fmt: skip
    return out, inferencer


def _val_images(root: Path) -> list[Path]:
    return sorted((root / "images" / "val").glob("*"))[:NUM_IMAGES]


def test_semantic_maps_are_label_pngs(synthetic_root, tmp_path, monkeypatch):
    config = "configs/segformer/segformer_vit-t_synthetic.py"
    out, inferencer = _run(config, synthetic_root, tmp_path, monkeypatch)
    written = sorted((out / "sem_seg").glob("*.png"))
    assert len(written) == NUM_IMAGES
    for png in written:
        image = next((synthetic_root / "images" / "val").glob(png.stem + ".*"))
        labels = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint8 and labels.ndim == 2
        expected = inferencer(str(image)).pred_sem_seg.reshape(labels.shape).numpy()
        assert np.array_equal(labels, expected)


def test_depth_is_a_16_bit_png_in_the_datasets_scale(synthetic_root, tmp_path, monkeypatch):
    config = "configs/dpt/dpt_vit-t_synthetic.py"
    out, inferencer = _run(config, synthetic_root, tmp_path, monkeypatch)
    written = sorted((out / "depth").glob("*.png"))
    assert len(written) == NUM_IMAGES
    png = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16
    image = next((synthetic_root / "images" / "val").glob(written[0].stem + ".*"))
    depth = inferencer(str(image)).pred_depth.reshape(png.shape).numpy().astype(np.float64)
    # synthetic depth PNGs hold millimetres (depth_scale 1000), as NYU's
    assert np.abs(png - np.clip(np.round(depth * 1000), 0, 65535)).max() <= 1


def test_panoptic_maps_are_coco_panoptic_and_instances_coco_results(
    synthetic_root, tmp_path, monkeypatch
):
    config = "configs/mask2former/mask2former_vit-t_synthetic-panoptic.py"
    out, inferencer = _run(config, synthetic_root, tmp_path, monkeypatch)
    panoptic = json.loads((out / "panoptic.json").read_text())
    assert len(panoptic["annotations"]) == len(panoptic["images"]) == NUM_IMAGES
    annotation = panoptic["annotations"][0]
    image = next(i for i in panoptic["images"] if i["id"] == annotation["image_id"])
    ids = read_panoptic_png(str(out / "panoptic" / annotation["file_name"]))
    sample = inferencer(str(synthetic_root / "images" / "val" / image["file_name"]))
    expected_ids, labels = split_panoptic(sample.pred_panoptic_seg.numpy())
    assert np.array_equal(ids, expected_ids)
    cat_ids = {c["name"]: c["id"] for c in panoptic["categories"]}
    classes = sample.metainfo["classes"]
    segments = {s["id"]: s for s in annotation["segments_info"]}
    assert {i: s["category_id"] for i, s in segments.items()} == {
        i: cat_ids[classes[label]] for i, label in labels.items()
    }
    for i, segment in segments.items():
        assert segment["area"] == int((ids == i).sum())
    for kind, key in (("bbox", "bbox"), ("segm", "segmentation")):  # by the CocoMetric
        entries = json.loads((out / f"coco.{kind}.json").read_text())
        assert entries and {"image_id", "category_id", "score", key} <= set(entries[0])


def test_keypoints_are_coco_results(synthetic_root, tmp_path, monkeypatch):
    config = "configs/vitpose/vitpose_vit-t_synthetic.py"
    out, _ = _run(config, synthetic_root, tmp_path, monkeypatch)
    entries = json.loads((out / "coco.keypoints.json").read_text())
    assert entries and {"image_id", "category_id", "keypoints", "score"} <= set(entries[0])
    assert len(entries[0]["keypoints"]) == 17 * 3
    assert not (out / "sem_seg").exists()  # nothing else written


@pytest.mark.parametrize("task", ["seg", "cls"])
def test_point_clouds_are_label_arrays_or_a_json(task, tmp_path, monkeypatch):
    data = write_point_data(tmp_path / "data")
    config = write_config(tmp_path / f"{task}.py", task, data)
    ckpt = write_checkpoint(config, tmp_path / "model.pth")
    out = tmp_path / "out"
    _test_tool(monkeypatch, config, ckpt, "--out", out, "--work-dir", tmp_path / "work",
               "--cfg-options", f"experiment_name=out_points_{task}")  # fmt: skip
    inferencer = Inferencer(str(config), str(ckpt), device="cpu")
    if task == "seg":
        written = sorted((out / "points").glob("*.npy"))
        assert len(written) == 2  # the val scenes
        scene = data["scenes"] / "val" / written[0].stem
        expected = inferencer(str(scene)).pred_segment.numpy()
        assert np.array_equal(np.load(written[0]), expected)
    else:
        entries = json.loads((out / "points.json").read_text())
        assert len(entries) == 4 and {"file", "label", "class", "score"} <= set(entries[0])
        file = entries[0]["file"]  # ModelNet's columns: xyz, normal
        sample = inferencer({**inferencer.read(file, ["coord", "normal"]), "file": file})
        assert entries[0]["label"] == int(sample.pred_label)


def test_grounding_and_a_json_file_for_maps_are_refused(tmp_path, monkeypatch, capsys):
    grounding = ROOT / "configs/grounding_dino/grounding-dino_vit-t_synthetic.py"
    segformer = ROOT / "configs/segformer/segformer_vit-t_synthetic.py"
    for config, out, message in (
        (grounding, tmp_path / "out", "referring-expression grounding predictions have no"),
        (segformer, tmp_path / "x.json", "has no CocoMetric; give a folder instead"),
    ):
        with pytest.raises(SystemExit):
            _test_tool(monkeypatch, config, "x.pth", "--out", out)
        assert message in capsys.readouterr().err


def test_a_json_file_holds_the_box_results_alone(synthetic_root, tmp_path, monkeypatch):
    config = "configs/dino/dino_vit-t_synthetic.py"
    options = _options(synthetic_root, "dino_json")
    ckpt = _checkpoint(config, options, tmp_path / "model.pth")
    out = tmp_path / "results.json"
    _test_tool(monkeypatch, ROOT / config, ckpt, "--out", out, "--work-dir", tmp_path / "work",
               "--cfg-options", *options)  # fmt: skip
    entries = json.loads(out.read_text())
    assert entries and {"image_id", "category_id", "bbox", "score"} <= set(entries[0])
    assert {e["image_id"] for e in entries} <= {1, 2, 3, 4, 5, 6}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth", "results.json", "work"]
