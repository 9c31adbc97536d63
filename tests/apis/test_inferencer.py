"""Inferencer: class names for drawing when the checkpoint has none, carried by the samples."""

from __future__ import annotations

import numpy as np
import torch

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


def test_amp_runs_the_model_in_bf16_and_stays_close_to_fp32():
    inferencer = Inferencer(
        "configs/dino/dino_vit-t_synthetic.py",
        device="cpu",
        cfg_options={"model.backbone.depth": 2},
    )
    seen = []
    linear = next(m for m in inferencer.model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    fp32 = inferencer(image)
    assert seen == [torch.float32]
    inferencer.amp = True
    bf16 = inferencer(image)
    assert seen[1:] == [torch.bfloat16], "autocast is not active around the model"
    assert not torch.is_autocast_enabled("cpu"), "autocast leaks out of the call"
    # the same scores up to bf16 rounding (sorted: near-equal random-weight scores may swap)
    a, b = fp32.pred_instances, bf16.pred_instances
    torch.testing.assert_close(b.scores.sort()[0], a.scores.sort()[0], atol=0.02, rtol=0)
    assert b.scores.dtype == b.bboxes.dtype == torch.float32, "returned as float32"
