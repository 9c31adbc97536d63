"""A published model's folder used as it is: ``Inferencer(folder)`` on an image FILE gives the
detections of the reference (HF image processor -> model -> post_process_object_detection);
``tools/convert_checkpoint.py`` writes model.pth + config.py that ``tools/demo.py`` and the
Inferencer run; folders and files that are not published models are refused with the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _helpers import write_tiny_deformable_detr

from visionfm.apis import Inferencer
from visionfm.ops.boxes import clip_boxes
from visionfm.weights import CheckpointError

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
SIZE = (83, 131)  # odd, not square: resized to 96 x 151 by the processor (shortest edge 96)


def _photo(path: Path) -> Path:
    """A photo-like RGB image file (smooth colours, shapes, grain) of SIZE, as PNG (lossless:
    OpenCV and PIL decode it alike)."""
    rng = np.random.default_rng(0)
    h, w = SIZE
    img = cv2.resize((rng.random((7, 11, 3)) * 255).astype(np.uint8), (w, h), cv2.INTER_CUBIC)
    cv2.circle(img, (40, 38), 17, (230, 40, 30), -1)
    cv2.rectangle(img, (80, 20), (120, 70), (30, 60, 200), -1)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), img[:, :, ::-1])
    return path


def _reference(hf, folder: Path, image: Path) -> dict[str, torch.Tensor]:
    """HF's detections for the image file: AutoImageProcessor (the torchvision one in
    transformers 5) -> model -> post_process_object_detection at the original size."""
    from PIL import Image
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder)
    pil = Image.open(image).convert("RGB")
    inputs = processor(images=pil, return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape[-2:]) == (96, 151)
    with torch.no_grad():
        outputs = hf(**inputs)
    target = [pil.size[::-1]]  # (h, w)
    return processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=target)[0]


def _assert_same_detections(pred, ref) -> dict[str, float]:
    """Scores, labels and boxes equal in HF's (descending score) order. Our boxes are clipped
    to the image (as every head of ours returns them), HF's are not: HF's are clipped here."""
    assert len(pred.scores) == len(ref["scores"]) == 9 * 5  # every query x class (< top 100)
    assert torch.equal(pred.labels, ref["labels"])
    diffs = dict(
        scores=(pred.scores - ref["scores"]).abs().max().item(),
        boxes=(pred.bboxes - clip_boxes(ref["boxes"], SIZE)).abs().max().item(),
    )
    # float32 on both sides, sums in another order: scores agree to 1e-6 (measured 1.2e-7),
    # boxes to 1e-3 pixels (measured 4.6e-5 px on boxes of 10-80 px)
    assert diffs["scores"] <= 1e-6 and diffs["boxes"] <= 1e-3, diffs
    assert ref["scores"].std() > 1e-3  # the comparison is not of constant outputs
    return diffs


@pytest.mark.parametrize("two_stage", [False, True], ids=["plain", "two_stage"])
def test_inferencer_on_a_folder_equals_hugging_face(tmp_path, two_stage):
    folder = tmp_path / "deformable-detr"
    hf = write_tiny_deformable_detr(folder, two_stage=two_stage)
    image = _photo(tmp_path / "street.png")
    ref = _reference(hf, folder, image)
    inferencer = Inferencer(str(folder), device="cpu")
    sample = inferencer(str(image))
    _assert_same_detections(sample.pred_instances, ref)
    assert sample.metainfo["classes"] == tuple(f"LABEL_{i}" for i in range(5))  # id2label
    assert sample.metainfo["ori_shape"] == SIZE


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_convert_checkpoint_then_demo(tmp_path):
    """convert_checkpoint.py on the HF folder -> model.pth + config.py; the converted folder
    gives the same detections as HF through the Inferencer, and demo.py draws them."""
    folder = tmp_path / "hf"
    hf = write_tiny_deformable_detr(folder)
    image = _photo(tmp_path / "photo.png")
    out = tmp_path / "converted"
    done = _tool("tools/convert_checkpoint.py", str(folder), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "deformable_detr" in done.stdout and "model.pth" in done.stdout
    assert {"model.pth", "config.py"} <= set(os.listdir(out))

    _assert_same_detections(Inferencer(str(out), device="cpu")(str(image)).pred_instances,
                            _reference(hf, folder, image))  # fmt: skip

    demo = tmp_path / "demo"
    done = _tool("tools/demo.py", str(out), str(image), "--out", str(demo), "--score-thr", "0")
    assert done.returncode == 0, done.stderr
    drawn = cv2.imread(str(demo / "photo.png"))
    original = cv2.imread(str(image))
    assert drawn is not None and drawn.shape == original.shape
    assert (drawn != original).any(axis=2).mean() > 0.01  # boxes and captions drawn


def test_folders_that_are_no_published_model_are_refused(tmp_path):
    empty = tmp_path / "weights_only"
    empty.mkdir()
    torch.save({"w": torch.zeros(1)}, empty / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="save_pretrained"):
        Inferencer(str(empty), device="cpu")
    done = _tool("tools/convert_checkpoint.py", str(empty), "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "save_pretrained" in done.stderr and "--config" in done.stderr
    done = _tool("tools/convert_checkpoint.py", str(tmp_path / "nothing"), "--out", "o")
    assert done.returncode == 1 and "no such file or folder" in done.stderr


def test_unknown_layout_lists_the_families(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(4, 3, 3, 3)}}, path)
    done = _tool("tools/convert_checkpoint.py", str(path), "--out", str(tmp_path / "o"))
    assert done.returncode == 1
    assert "known families" in done.stderr and "deformable_detr" in done.stderr


def test_folder_without_processor_config_is_refused(tmp_path):
    folder = tmp_path / "hf"
    write_tiny_deformable_detr(folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="AutoImageProcessor.*save_pretrained"):
        Inferencer(str(folder), device="cpu")
