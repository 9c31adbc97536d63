"""Grounding samples drawn: boxes named by the sample's phrases (not the dataset's classes),
long phrases shortened at a word."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from visionfm.data import DataSample
from visionfm.visualization import draw_sample, instances
from visionfm.visualization.instances import MAX_NAME_CHARS, _shorten

LONG = "the small triangle left of the big red circle next to a dog"


@pytest.fixture
def captions(monkeypatch) -> list[str]:
    """The caption texts ``draw_instances`` writes, in order."""
    seen: list[str] = []
    put_label = instances._put_label
    monkeypatch.setattr(
        instances, "_put_label", lambda img, text, *a: seen.append(text) or put_label(img, text, *a)
    )
    return seen


def _sample(phrases=None) -> DataSample:
    sample = DataSample(metainfo=dict(classes=("circle", "square")))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[4.0, 4, 40, 30], [10, 20, 60, 50]]),
        labels=torch.tensor([1, 0]),
        scores=torch.tensor([0.9, 0.8]),
    )
    if phrases is not None:
        sample.phrases = phrases
    return sample


def test_phrases_name_the_boxes_instead_of_the_classes(captions):
    image = np.zeros((64, 80, 3), np.uint8)
    classes = draw_sample(image, _sample(), prefix="pred")
    assert captions == ["square 0.90", "circle 0.80"]
    captions.clear()
    palette = [(255, 0, 0), (0, 255, 0)]  # a dataset's colours are not the phrases'
    phrases = draw_sample(
        image, _sample(["red car", "dog"]), ("circle", "square"), prefix="pred", palette=palette
    )
    assert captions == ["dog 0.90", "red car 0.80"]
    assert not np.array_equal(classes, phrases)


def test_long_phrases_are_cut_at_a_word(captions):
    image = np.zeros((64, 80, 3), np.uint8)
    draw_sample(image, _sample(["dog", LONG]), prefix="pred")
    assert captions == ["the small triangle left of... 0.90", "dog 0.80"]


@pytest.mark.parametrize(
    "name, short",
    [
        ("red circle", "red circle"),
        ("x" * MAX_NAME_CHARS, "x" * MAX_NAME_CHARS),
        (LONG, "the small triangle left of..."),
        ("a" * 40, "a" * (MAX_NAME_CHARS - 3) + "..."),  # one long word: cut inside it
        ("the " + "b" * 40, "the " + "b" * (MAX_NAME_CHARS - 7) + "..."),  # not just "the..."
    ],
)
def test_shorten(name, short):
    assert _shorten(name) == short
    assert len(_shorten(name)) <= MAX_NAME_CHARS
