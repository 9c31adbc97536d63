"""Fine-tuning from a published COCO-style detector on other classes: ``load_from`` a
converted checkpoint keeps every weight but the class layers, re-initialises those (and logs
them), and the model learns the new classes; the same checkpoint is refused for testing with
the wrong num_classes, naming the fix."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _helpers import write_tiny_deformable_detr

from visionfm.engine import build_runner, load_config
from visionfm.engine.checkpoint import load_model_weights
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/custom/deformable-detr_r50_custom-coco.py"
CLASSES = ("box", "ball")
CLASS_KEYS = (  # the tiny plain Deformable DETR's class layers (2 decoder layers, shared head)
    "head.cls_heads.0.weight",
    "head.cls_heads.0.bias",
)


def _custom_coco(root: Path, num_images: int = 8) -> Path:
    """A 2-class COCO dataset (``box``: red squares, ``ball``: blue discs, 1-2 large objects on
    a textured grey background, 96 x 120 images) as train.json and val.json over the same
    images (the test measures learning, not generalisation)."""
    rng = np.random.default_rng(0)
    (root / "images/train").mkdir(parents=True)
    (root / "images/val").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i in range(num_images):
        img = np.clip(rng.normal(128, 20, (96, 120, 3)), 0, 255).astype(np.uint8)
        for _ in range(1 + i % 2):
            cat = int(rng.integers(1, 3))
            s = int(rng.integers(24, 40))
            x, y = int(rng.integers(0, 120 - s)), int(rng.integers(0, 96 - s))
            if cat == 1:
                cv2.rectangle(img, (x, y), (x + s - 1, y + s - 1), (220, 30, 30), -1)
            else:
                cv2.circle(img, (x + s // 2, y + s // 2), s // 2, (30, 30, 220), -1)
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1, category_id=cat,
                                    bbox=[x, y, s, s], area=s * s, iscrowd=0))  # fmt: skip
        name = f"{i:03d}.png"
        for split in ("train", "val"):
            cv2.imwrite(str(root / "images" / split / name), img[:, :, ::-1])
        images.append(dict(id=i + 1, file_name=name, height=96, width=120))
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
    coco = dict(images=images, annotations=annotations, categories=categories)
    for split in ("train", "val"):
        (root / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return root


def _converted(tmp_path: Path) -> Path:
    """A tiny HF Deformable DETR (HF's own initialisation, 5 classes) saved, then converted
    by tools/convert_checkpoint.py."""
    hf = tmp_path / "hf"
    write_tiny_deformable_detr(hf, num_labels=5, random_weights=False)
    out = tmp_path / "converted"
    done = subprocess.run(
        [sys.executable, "tools/convert_checkpoint.py", str(hf), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def _finetune_config(converted: Path, data_root: Path, work_dir: Path, epochs: int):
    """The custom config on the test's json, with the converted tiny model (2 classes) and
    images resized as its processor does (short side 96)."""
    cfg = load_config(str(CONFIG), dict(data_root=f"{data_root}/", num_classes=2))
    model = copy.deepcopy(load_config(str(converted / "config.py")).model)
    model["head"]["num_classes"] = 2
    cfg.model = model
    cfg.load_from = str(converted / "model.pth")
    resize = dict(type="Resize", scale=(160, 96), keep_ratio=True, rounding="transformers",
                  backend="torchvision")  # fmt: skip
    pipeline = [dict(type="LoadImage"), dict(type="LoadAnnotations", with_bbox=True), resize]
    cfg.train_dataloader.dataset.pipeline = [*pipeline, dict(type="RandomFlip", prob=0.5),
                                             dict(type="PackInputs")]  # fmt: skip
    cfg.val_dataloader.dataset.pipeline = [*pipeline, dict(type="PackInputs")]
    cfg.test_dataloader = cfg.val_dataloader
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.update(num_workers=0, persistent_workers=False)
    cfg.train_dataloader.batch_size = 4
    # epochs of 2 iterations (an iteration-based loop sleeps 2 s at each pass over the data)
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=epochs, val_interval=epochs)
    cfg.param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False)]
    cfg.optim_wrapper.optimizer.lr = 1e-3
    cfg.optim_wrapper.clip_grad = dict(max_norm=1.0)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=epochs)
    cfg.work_dir = str(work_dir)
    return cfg


def test_finetune_from_a_converted_detector_on_other_classes(tmp_path):
    converted = _converted(tmp_path)
    data = _custom_coco(tmp_path / "custom")
    runner = build_runner(_finetune_config(converted, data, tmp_path / "work", epochs=40))
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    runner.logger.addHandler(handler)

    runner.load_or_resume()  # load_from: what train() does first
    checkpoint = torch.load(converted / "model.pth", weights_only=True)["state_dict"]
    own = runner.model.state_dict()
    for key in CLASS_KEYS:  # 5-class rows in the checkpoint, 2 in the model: re-initialised
        assert checkpoint[key].shape[0] == 5 and own[key].shape[0] == 2
    same = [k for k in own if k not in CLASS_KEYS and torch.equal(own[k], checkpoint[k])]
    assert len(same) == len(own) - len(CLASS_KEYS)  # every other weight: the checkpoint's
    log = "\n".join(messages)
    assert "re-initialised 2 class-dependent tensors" in log
    assert "5 classes in the checkpoint, 2 in the model" in log
    assert "head.cls_heads.0.weight: checkpoint (5, 32) -> model (2, 32)" in log

    before = runner.val()["coco/bbox_mAP_50"]
    runner.train()
    after = runner.val()["coco/bbox_mAP_50"]
    # 80 iterations from HF's initialisation: mAP@0.5 0.009 -> 0.133 (measured)
    assert after > before + 0.08, (before, after)


def test_the_converted_checkpoint_is_refused_with_other_num_classes(tmp_path):
    converted = _converted(tmp_path)
    model_cfg = copy.deepcopy(load_config(str(converted / "config.py")).model)
    model_cfg["head"]["num_classes"] = 2
    with pytest.raises(CheckpointError, match=r"5 classes in the checkpoint, 2 in the model.*"
                       r"num_classes.*load_from"):  # fmt: skip
        load_model_weights(MODELS.build(model_cfg), str(converted / "model.pth"))
    with pytest.raises(CheckpointError, match="num_classes.*load_from"):  # the HF folder too
        load_model_weights(MODELS.build(model_cfg), str(tmp_path / "hf"))


def test_custom_config_builds_the_published_architecture():
    """The custom config's model (num_classes=91) is the architecture of the published
    SenseTime/deformable-detr (transformers' DeformableDetrConfig defaults, 91 labels): the
    family's converter accepts it (config.json settings compared) and places every tensor
    with its shape. Both models built on the meta device (HF's weights: zeros of its shapes)."""
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    from visionfm.models.published import find_family

    config = DeformableDetrConfig(num_labels=91)
    hf_config = {**config.to_dict(), "model_type": "deformable_detr"}
    with torch.device("meta"):
        shapes = DeformableDetrForObjectDetection(config).state_dict()
        model = MODELS.build(load_config(str(CONFIG), dict(num_classes=91)).model)
    state = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}  # tied: equal
    family = find_family(state, hf_config)
    assert family is not None and family.name == "deformable_detr"
    converted = family.convert(state, model, hf_config).state_dict
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == own


def test_load_from_the_hf_folder_reinitialises_the_class_layers(tmp_path, logs):
    """load_from's path (mmengine's loader + load_checkpoint_to_model) on the HF folder itself:
    converted strictly, the 5-class rows re-initialised for 2 classes and logged."""
    from visionfm.engine.checkpoint import load_checkpoint_to_model, load_from_local_weights_only

    converted = _converted(tmp_path)
    model_cfg = copy.deepcopy(load_config(str(converted / "config.py")).model)
    model_cfg["head"]["num_classes"] = 2
    model = MODELS.build(model_cfg)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    load_checkpoint_to_model(model, load_from_local_weights_only(str(tmp_path / "hf")))
    reference = torch.load(converted / "model.pth", weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():
        expected = initial[key] if key in CLASS_KEYS else reference[key]
        assert torch.equal(value, expected), key
    assert any("re-initialised 2 class-dependent tensors" in m for m in logs)
