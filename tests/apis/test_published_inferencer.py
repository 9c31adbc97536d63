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
from _helpers import write_tiny_deformable_detr, write_tiny_detr

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
    inferencer = Inferencer(str(folder), device="cpu", score_thr=0.0)
    sample = inferencer(str(image))
    _assert_same_detections(sample.pred_instances, ref)
    assert sample.metainfo["classes"] == tuple(f"LABEL_{i}" for i in range(5))  # id2label
    assert sample.metainfo["ori_shape"] == SIZE


def test_a_coco_detector_folder_runs_over_the_80_coco_categories(tmp_path):
    """A folder whose model scores COCO's 91 category ids (id2label naming COCO's categories,
    'N/A' between) is built with num_classes=80 (its converter keeps those rows), so labels
    index COCO's 80 categories as CocoDataset / CocoMetric do: the detections are HF's top
    100 without the 'N/A' ids, labels mapped from category ids to their rank."""
    from visionfm.models.published_config import COCO_CATEGORY_NAMES

    id2label = {i: COCO_CATEGORY_NAMES.get(i, "N/A") for i in range(91)}
    folder = tmp_path / "coco-detector"
    hf = write_tiny_deformable_detr(folder, num_labels=91, id2label=id2label)
    image = _photo(tmp_path / "street.png")
    ref = _reference(hf, folder, image)
    inferencer = Inferencer(str(folder), device="cpu", score_thr=0.0)
    assert inferencer.cfg.model.head.num_classes == 80
    sample = inferencer(str(image))
    assert sample.metainfo["classes"] == tuple(COCO_CATEGORY_NAMES.values())
    ids = sorted(COCO_CATEGORY_NAMES)
    kept = torch.tensor([int(label) in COCO_CATEGORY_NAMES for label in ref["labels"]])
    assert 0 < kept.sum() < len(kept)  # HF's top 100 holds some 'N/A' ids: left out here
    n = int(kept.sum())
    pred = sample.pred_instances[:n]
    assert [ids[int(label)] for label in pred.labels] == ref["labels"][kept].tolist()
    assert (pred.scores - ref["scores"][kept]).abs().max() <= 1e-6
    assert (pred.bboxes - clip_boxes(ref["boxes"][kept], SIZE)).abs().max() <= 1e-3


def test_inferencer_on_a_detr_folder_equals_hugging_face(tmp_path):
    """DETR (softmax with "no object", best class per query): HF's post-processing keeps the
    queries above the threshold in query order, ours sorts them by score."""
    folder = tmp_path / "detr"
    hf = write_tiny_detr(folder)
    image = _photo(tmp_path / "street.png")
    ref = _reference(hf, folder, image)
    pred = Inferencer(str(folder), device="cpu", score_thr=0.0)(str(image)).pred_instances
    order = ref["scores"].argsort(descending=True)
    assert len(pred.scores) == len(ref["scores"]) == 12  # one per query (threshold 0)
    assert ref["scores"].std() > 1e-3
    assert torch.equal(pred.labels, ref["labels"][order])
    assert (pred.scores - ref["scores"][order]).abs().max() <= 1e-5  # measured 7.2e-7
    boxes = clip_boxes(ref["boxes"][order], SIZE)
    assert (pred.bboxes - boxes).abs().max() <= 1e-3  # px; measured 1.5e-5


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

    _assert_same_detections(Inferencer(str(out), device="cpu", score_thr=0.0)(str(image)).pred_instances,
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


PROCESSORS = {  # processor class, its settings as saved in preprocessor_config.json
    "deformable_detr": ("DeformableDetrImageProcessor", dict(size=dict(shortest_edge=96, longest_edge=160))),
    "detr_old_form": ("DetrImageProcessor", dict(size=80, max_size=120)),
    "rf_detr_fixed": ("RfDetrImageProcessor", dict(size=dict(height=70, width=90))),
    "mask2former": ("Mask2FormerImageProcessor", dict(size=dict(shortest_edge=64, longest_edge=100))),
    "bicubic_unnormalised": ("DetrImageProcessor", dict(resample=3, do_normalize=False)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(PROCESSORS))
def test_pipeline_gives_the_processors_pixel_values_and_mask(tmp_path, name):
    """processor_settings(preprocessor_config.json) -> our pipeline + data preprocessor give
    HF's pixel_values (float rounding) and pixel_mask for a batch of two odd-sized images
    (padded bottom / right to the larger)."""
    import transformers
    from mmengine.dataset import pseudo_collate

    from visionfm.data import Compose
    from visionfm.data.batch import padding_mask
    from visionfm.models.published_config import processor_settings, read_processor_config
    from visionfm.registry import MODELS

    kind, settings = PROCESSORS[name]
    getattr(transformers, kind)(**settings).save_pretrained(tmp_path)
    rng = np.random.default_rng(0)
    images = [(rng.random((h, w, 3)) * 255).astype(np.uint8) for h, w in ((75, 101), (97, 61))]
    ref = transformers.AutoImageProcessor.from_pretrained(tmp_path)(images, return_tensors="pt")

    pipeline, preprocessor = processor_settings(read_processor_config(tmp_path))
    pipeline = Compose([t for t in pipeline if t["type"] != "LoadAnnotations"])
    batch = pseudo_collate([pipeline(dict(img=img, img_id=0)) for img in images])
    ours = MODELS.build(preprocessor)(batch)
    assert ours["inputs"].shape == ref["pixel_values"].shape
    # float32 rounding of the normalisation (and of RF-DETR's float resize): measured 2.4e-7,
    # 9.5e-7 for RF-DETR
    assert (ours["inputs"] - ref["pixel_values"]).abs().max() <= 1e-5
    if "pixel_mask" in ref:
        mask = ~padding_mask(ours["data_samples"])
        assert torch.equal(mask, ref["pixel_mask"].bool())


def test_resize_rounding_is_transformers_get_size_with_aspect_ratio():
    from transformers.image_transforms import get_size_with_aspect_ratio

    from visionfm.data.transforms import Resize

    rng = np.random.default_rng(0)
    for _ in range(2000):
        h, w, short = (int(v) for v in rng.integers(1, 2000, 3))
        long = short + int(rng.integers(0, 1000))
        got = Resize((long, short), rounding="transformers").output_size(h, w)
        assert got == get_size_with_aspect_ratio((h, w), short, long), (h, w, short, long)


def test_processor_settings_we_cannot_reproduce_are_refused():
    from visionfm.models.published_config import processor_settings

    base = dict(image_processor_type="DetrImageProcessor")
    for extra, key in [
        (dict(pad_size=dict(height=800, width=800)), "pad_size"),
        (dict(size=dict(max_height=800, max_width=800)), "size="),
        (dict(resample=1), "resample=1"),
        (dict(image_processor_type="ViTImageProcessor"), "ViTImageProcessor"),
    ]:
        with pytest.raises(CheckpointError, match=key):
            processor_settings({**base, **extra})


def test_inferencer_on_a_mask2former_folder_equals_hugging_face(tmp_path):
    """A tiny random HF Mask2Former (Swin) folder with its Mask2FormerImageProcessor (resize
    rounded up to 32) runs from the folder: the semantic map of Inferencer(folder) on an
    odd-sized array is HF's post_process_semantic_segmentation at the original size, and the
    classes are id2label's. This random model's map is one class everywhere (its queries
    differ too little), so this holds the plumbing (processor, sizes, names); the head's
    post-processing is held equal to HF's in tests/heads/test_mask2former_published.py."""
    from _helpers import randomize
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    swin = SwinConfig(embed_dim=32, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], window_size=4,
                      out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip
    config = Mask2FormerConfig(backbone_config=swin, feature_size=32, mask_feature_size=32,
                               hidden_dim=32, encoder_feedforward_dim=64, dim_feedforward=64,
                               encoder_layers=2, decoder_layers=4, num_queries=6,
                               num_attention_heads=4,
                               id2label={i: f"class{i}" for i in range(5)})  # fmt: skip
    hf = randomize(Mask2FormerForUniversalSegmentation(config)).float().eval()
    hf.save_pretrained(tmp_path)
    processor = Mask2FormerImageProcessor(size=dict(shortest_edge=64, longest_edge=100))
    processor.save_pretrained(tmp_path)
    image = (np.random.default_rng(0).random((61, 83, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        outputs = hf(**processor(images=image, return_tensors="pt"))
    ref = processor.post_process_semantic_segmentation(outputs, target_sizes=[(61, 83)])[0]
    sample = Inferencer(str(tmp_path), device="cpu")(image)
    assert torch.equal(sample.pred_sem_seg.squeeze(0), ref)
    assert sample.metainfo["classes"] == tuple(f"class{i}" for i in range(5))
    # the converted config evaluates on COCO panoptic (the written config loads and checks)
    done = _tool("tools/convert_checkpoint.py", str(tmp_path), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "out/config.py").read_text()
    assert "'CocoPanopticDataset'" in text and "'PanopticMetric'" in text
