"""tools/convert_checkpoint.py and the loading paths on bad input: its output evaluates with
tools/test.py; original checkpoints' pickled training args are read (an allow-list, no code
run), a pickle that would run code is refused on every path; missing heads, another model
size and a family that cannot describe its model are refused naming keys / shapes / the fix."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _helpers import write_tiny_deformable_detr

from visionfm.engine.checkpoint import load_from_local_weights_only, load_model_weights
from visionfm.models import published
from visionfm.models.published import PublishedFamily
from visionfm.models.published_config import published_config
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, ConvertedCheckpoint, read_checkpoint

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("convert_tool", ROOT / "tools/convert_checkpoint.py")
convert_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_tool)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def _coco_val(root: Path, classes: tuple[str, ...], num_images: int = 2) -> Path:
    """A COCO layout as the converted config expects it (annotations/instances_val2017.json,
    val2017/): a few random images with one box each."""
    rng = np.random.default_rng(0)
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i in range(num_images):
        cv2.imwrite(
            str(root / "val2017" / f"{i}.png"), (rng.random((70, 90, 3)) * 255).astype(np.uint8)
        )
        images.append(dict(id=i + 1, file_name=f"{i}.png", height=70, width=90))
        annotations.append(dict(id=i + 1, image_id=i + 1, category_id=1 + i % len(classes),
                                bbox=[10, 10, 30, 20], area=600, iscrowd=0))  # fmt: skip
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(classes)]
    (root / "annotations/instances_val2017.json").write_text(
        json.dumps(dict(images=images, annotations=annotations, categories=categories))
    )
    return root


def test_converted_folder_evaluates_with_test_py(tmp_path):
    hf = tmp_path / "hf"
    write_tiny_deformable_detr(hf)
    out = tmp_path / "converted"
    report = convert_tool.convert(str(hf), str(out))
    assert report.ok and not report.missing and not report.unexpected
    text = (out / "config.py").read_text()
    assert "'rounding': 'transformers'" in text and "'LABEL_4'" in text  # processor, id2label
    data = _coco_val(tmp_path / "coco", tuple(f"LABEL_{i}" for i in range(5)))
    done = _run("tools/test.py", str(out / "config.py"), str(out / "model.pth"), "--work-dir",
                str(tmp_path / "work"), "--cfg-options", f"data_root={data}/")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "coco/bbox_mAP" in done.stdout


class _Evil:
    """A pickle that would run a shell command when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_original_checkpoint_args_are_read_and_code_is_never_run(tmp_path):
    args = argparse.Namespace(lr=np.float64(2e-4), nheads=8, backbone="resnet50",
                              lr_backbone_names=["backbone.0"], dtype=np.dtype("float32"))  # fmt: skip
    good = tmp_path / "checkpoint.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "args": args, "epoch": np.int64(49)}, good)
    state = read_checkpoint(good)
    assert list(state) == ["w"] and state.args["nheads"] == 8 and state.args["lr"] == 2e-4

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "args": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match="could run code"):
        read_checkpoint(evil)
    with pytest.raises(RuntimeError, match=f"cannot load checkpoint {evil}"):
        load_model_weights(torch.nn.Linear(2, 2), str(evil))  # test.py / demo / Inferencer
    with pytest.raises(RuntimeError, match=f"cannot load checkpoint {evil}"):
        load_from_local_weights_only(str(evil))  # load_from / resume (mmengine's loader)
    done = _run("tools/convert_checkpoint.py", str(evil), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "could run code" in done.stderr
    assert not marker.exists()


def _edited_folder(tmp_path: Path, edit) -> Path:
    """A tiny HF Deformable DETR folder whose weights file is rewritten by ``edit(state)``."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "hf"
    write_tiny_deformable_detr(folder)
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _model_for(tmp_path: Path) -> torch.nn.Module:
    reference = tmp_path / "reference"
    write_tiny_deformable_detr(reference)
    return MODELS.build(published_config(reference)[0]["model"])


def test_missing_head_is_refused_naming_the_keys(tmp_path):
    model = _model_for(tmp_path)

    def drop_box_head(state):
        for key in [k for k in state if "bbox_embed" in k]:
            del state[key]

    folder = _edited_folder(tmp_path, drop_box_head)
    with pytest.raises(CheckpointError, match=r"(?s)missing.*box_heads\.0\.layers\.0\.weight"):
        load_model_weights(model, str(folder))


def test_checkpoint_of_another_size_is_refused_naming_the_argument(tmp_path):
    model = _model_for(tmp_path)
    wider = tmp_path / "wider"
    write_tiny_deformable_detr(wider)
    config = json.loads((wider / "config.json").read_text())
    config["num_queries"] = 12
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    DeformableDetrForObjectDetection(DeformableDetrConfig(**config)).save_pretrained(wider)
    with pytest.raises(
        CheckpointError,
        match=r"num_queries.*12 in config.json, 9 in the model: set head\.num_queries=12",
    ):
        load_model_weights(model, str(wider))


def test_a_family_without_model_config_names_the_way_out(tmp_path, monkeypatch):
    family = PublishedFamily(
        "toy",
        lambda state, config: "toy.weight" in state,
        lambda s, m, c: ConvertedCheckpoint(dict(s), "toy"),
    )
    published.families()  # the real ones first
    monkeypatch.setitem(published._FAMILIES, "toy", family)
    path = tmp_path / "toy.pth"
    torch.save({"toy.weight": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="'toy' family.*cannot describe.*write a config"):
        published_config(path)
    done = _run("tools/convert_checkpoint.py", str(path), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "known families" in done.stderr  # not registered there


def test_original_checkpoint_converts_with_its_args_and_the_reference_preprocessing(tmp_path):
    """A facebookresearch/detr .pth (the tiny HF DETR's weights in the original layout, with
    its pickled args; no config.json): the model comes from the tensors + args, the weights
    equal those converted from the HF folder, the pipeline is the original evaluation's
    (shortest edge 800, longest 1333) and the classes are numbered (5, not COCO's 91)."""
    from _helpers import write_tiny_detr
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location(
        "detr_published_test", ROOT / "tests/heads/test_detr_published.py"
    )
    detr_test = importlib.util.module_from_spec(spec)  # its original-layout writer and args
    spec.loader.exec_module(detr_test)
    hf = tmp_path / "hf"
    write_tiny_detr(hf)
    original = detr_test._original_layout(load_file(str(hf / "model.safetensors")))
    path = tmp_path / "detr-tiny.pth"
    torch.save({"model": original, "args": detr_test._args(), "epoch": 499}, path)

    convert_tool.convert(str(path), str(tmp_path / "from_original"))
    convert_tool.convert(str(hf), str(tmp_path / "from_hf"))
    ours = torch.load(tmp_path / "from_original/model.pth", weights_only=True)
    reference = torch.load(tmp_path / "from_hf/model.pth", weights_only=True)
    assert ours["state_dict"].keys() == reference["state_dict"].keys()
    assert all(torch.equal(v, reference["state_dict"][k]) for k, v in ours["state_dict"].items())
    assert ours["meta"]["dataset_meta"]["classes"] == tuple("01234")
    text = (tmp_path / "from_original/config.py").read_text()
    assert "'scale': (1333, 800)" in text and "'rounding': 'transformers'" in text


def test_config_option_builds_the_model_from_a_visionfm_config(tmp_path):
    """--config CONFIG.py: the model from our config (here the one a first conversion wrote),
    also for a weights folder without config.json; the same weights come out."""
    hf = tmp_path / "hf"
    write_tiny_deformable_detr(hf)
    convert_tool.convert(str(hf), str(tmp_path / "first"))
    bare = tmp_path / "bare"  # the weights alone, as downloaded without config.json
    bare.mkdir()
    (bare / "model.safetensors").write_bytes((hf / "model.safetensors").read_bytes())
    convert_tool.convert(
        str(bare), str(tmp_path / "again"), config=str(tmp_path / "first/config.py")
    )
    first = torch.load(tmp_path / "first/model.pth", weights_only=True)["state_dict"]
    again = torch.load(tmp_path / "again/model.pth", weights_only=True)["state_dict"]
    assert first.keys() == again.keys() and all(torch.equal(v, again[k]) for k, v in first.items())


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    """A DETR folder into a Deformable DETR model: refused naming what differs and the
    arguments to set (the way out: convert_checkpoint.py builds the folder's own model)."""
    from _helpers import write_tiny_detr

    model = _model_for(tmp_path)  # a Deformable DETR
    write_tiny_detr(tmp_path / "detr")
    with pytest.raises(CheckpointError, match=r"(?s)another architecture.*classification.*set"):
        load_model_weights(model, str(tmp_path / "detr"))
