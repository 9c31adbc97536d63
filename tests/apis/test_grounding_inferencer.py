"""Inferencer and tools/demo.py on a prompted (Grounding DINO) model: class prompts and free
text reach the samples, the returned phrases name the boxes, mistakes are refused, and a
video's prompt is encoded once."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _helpers import write_tiny_bert

from visionfm.apis import Inferencer
from visionfm.text import HFTextEncoder
from visionfm.visualization import instances

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/grounding_dino/grounding-dino_vit-t_synthetic.py"
CLASSES = "red circle . person ."
EXPRESSION = "the small dog left of the red car"


@pytest.fixture(scope="module")
def options(tmp_path_factory) -> dict:
    """A tiny model: the tiny BERT, one layer everywhere; free-text boxes at any score."""
    bert = write_tiny_bert(tmp_path_factory.mktemp("bert"))
    return {
        "model.text_encoder.path": bert,
        "model.backbone.depth": 1,
        "model.head.encoder.num_layers": 1,
        "model.head.decoder.num_layers": 1,
        "model.head.test_cfg.box_thr": 0.0,
    }


@pytest.fixture(scope="module")
def checkpoint(options, tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = Inferencer(CONFIG, device="cpu", cfg_options=options).model
    path = tmp_path_factory.mktemp("ckpt") / "grounding.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def grounding(options, checkpoint) -> Inferencer:
    return Inferencer(CONFIG, checkpoint, device="cpu", score_thr=0.0, cfg_options=options)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)


def test_a_class_prompt_gives_one_phrase_per_name(grounding, image):
    samples = grounding([image, image], text=CLASSES)
    for sample in samples:
        assert sample.phrases == ["red circle", "person"]
        assert sample.metainfo["prompt_type"] == "classes"
        assert [sample.text[s:e] for ((s, e),) in sample.phrase_spans] == sample.phrases
        assert "classes" not in sample.metainfo  # the phrases name the labels, not a dataset
        pred = sample.pred_instances
        assert len(pred) > 0 and pred.labels.max() < 2
        assert pred.bboxes.shape == (len(pred), 4)
        assert pred.bboxes[:, 2].max() <= 80 and pred.bboxes[:, 3].max() <= 60  # original pixels
    assert samples[0].phrases is not samples[1].phrases


def test_free_text_names_its_boxes_by_the_caption_words(grounding, image):
    sample = grounding(image, text=EXPRESSION)
    assert sample.metainfo["prompt_type"] == "expression"
    assert "phrase_spans" not in sample  # free text: the head names the boxes
    pred = sample.pred_instances
    assert len(pred) > 0 and len(sample.phrases) > 0
    assert pred.labels.max() < len(sample.phrases)
    words = set(EXPRESSION.split())
    assert all(set(phrase.split()) <= words for phrase in sample.phrases), sample.phrases


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "this model is prompted: pass text="),
        ("", "empty prompt"),
        (" . ", "empty prompt"),
    ],
)
def test_a_missing_or_empty_prompt_is_refused(grounding, image, text, message):
    with pytest.raises(ValueError, match=message):
        grounding(image, text=text)


def test_a_prompt_for_a_model_without_text_is_refused(image):
    detector = Inferencer(
        "configs/dino/dino_vit-t_synthetic.py",
        device="cpu",
        cfg_options={"model.backbone.depth": 1},
    )
    assert not detector.prompted
    with pytest.raises(ValueError, match="reads no prompt: leave text out"):
        detector(image, text="cat .")


def test_visualize_captions_boxes_with_their_phrases(grounding, image, monkeypatch):
    captions = []
    put_label = instances._put_label
    monkeypatch.setattr(
        instances,
        "_put_label",
        lambda img, text, *a: captions.append(text) or put_label(img, text, *a),
    )
    for text in (CLASSES, EXPRESSION):
        captions.clear()
        sample = grounding(image, text=text)
        drawn = grounding.visualize(image, sample, score_thr=0.0)
        assert drawn.shape == image.shape
        pred = sample.pred_instances
        expected = [
            f"{sample.phrases[int(i)]} {float(s):.2f}" for i, s in zip(pred.labels, pred.scores)
        ]
        assert captions == expected


def _load_demo():
    spec = importlib.util.spec_from_file_location("_demo_tool", ROOT / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_demo(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["tools/demo.py", *args])
    _load_demo().main()


def _write_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (80, 60))
    rng = np.random.default_rng(1)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    writer.release()


def test_demo_on_an_image_and_a_video_encodes_the_prompt_once(
    options, checkpoint, image, tmp_path, monkeypatch
):
    calls = []
    encode_ids = HFTextEncoder.encode_ids
    monkeypatch.setattr(
        HFTextEncoder,
        "encode_ids",
        lambda self, *a, **k: calls.append(1) or encode_ids(self, *a, **k),
    )
    cfg_options = [f"{k}={v}" for k, v in options.items()]
    path = tmp_path / "street.png"
    cv2.imwrite(str(path), image)
    out = tmp_path / "out"
    common = [CONFIG, checkpoint]
    _run_demo(
        monkeypatch,
        *common,
        str(path),
        "--out",
        str(out),
        "--text",
        CLASSES,
        "--cfg-options",
        *cfg_options,
    )
    assert cv2.imread(str(out / "street.png")).shape == image.shape
    assert len(calls) == 1

    calls.clear()
    video = tmp_path / "clip.mp4"
    _write_video(video, frames=3)
    _run_demo(
        monkeypatch,
        *common,
        str(video),
        "--out",
        str(out),
        "--text",
        EXPRESSION,
        "--score-thr",
        "0.0",
        "--cfg-options",
        *cfg_options,
        "model.text_encoder.frozen=False",  # fine-tuned text encoders cache at inference too
    )
    written = cv2.VideoCapture(str(out / "clip.mp4"))
    assert written.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    assert len(calls) == 1, "the prompt's BERT pass should run once for the whole video"


def test_demo_without_text_for_a_prompted_model_says_to_pass_it(
    options, checkpoint, image, tmp_path, monkeypatch, capsys
):
    path = tmp_path / "street.png"
    cv2.imwrite(str(path), image)
    cfg_options = [f"{k}={v}" for k, v in options.items()]
    with pytest.raises(SystemExit):
        _run_demo(monkeypatch, CONFIG, checkpoint, str(path), "--cfg-options", *cfg_options)
    assert "this model is prompted: pass --text" in capsys.readouterr().err
