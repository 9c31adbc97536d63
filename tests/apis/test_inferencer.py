"""Inferencer: class names for drawing when the checkpoint has none, carried by the samples."""

from __future__ import annotations

import numpy as np

from visionfm.apis import Inferencer
from visionfm.apis.inferencer import _find_num_classes
from visionfm.apis.visualization import draw_sample


def test_num_classes_of_a_panoptic_head():
    model = dict(type="M", head=dict(type="H", num_things_classes=5, num_stuff_classes=1))
    assert _find_num_classes(model) == 6
    assert _find_num_classes(dict(neck=[dict(num_classes=3)])) == 3
    assert _find_num_classes(dict(backbone=dict())) is None


def test_class_names_from_the_test_dataset_config_reach_the_samples():
    inferencer = Inferencer("configs/segformer/segformer_vit-t_synthetic.py", device="cpu")
    classes = tuple(inferencer.cfg.test_dataloader.dataset.metainfo.classes)
    assert tuple(inferencer.dataset_meta["classes"]) == classes
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    sample = inferencer(image)
    assert sample.metainfo["classes"] == classes
    assert sample.pred_sem_seg.shape == (48, 64)
    drawn = inferencer.visualize(image, sample)
    assert drawn.shape == image.shape
    # the sample alone is enough to draw it with its class names (this config has no palette)
    assert "palette" not in inferencer.dataset_meta
    assert np.array_equal(draw_sample(image, sample, prefix="pred"), drawn)
