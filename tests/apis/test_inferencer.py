"""Inferencer: class names for drawing when the checkpoint has none, carried by the samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionfm.apis import Inferencer
from visionfm.models.published_config import find_num_classes
from visionfm.visualization import draw_sample


def test_num_classes_of_a_panoptic_head():
    model = dict(type="M", head=dict(type="H", num_things_classes=5, num_stuff_classes=1))
    assert find_num_classes(model) == 6
    assert find_num_classes(dict(neck=[dict(num_classes=3)])) == 3
    assert find_num_classes(dict(backbone=dict())) is None


@pytest.fixture(scope="module")
def segformer() -> Inferencer:
    return Inferencer("configs/segformer/segformer_vit-t_synthetic.py", device="cpu")


def test_class_names_from_the_test_dataset_config_reach_the_samples(segformer):
    inferencer = segformer
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
        score_thr=0.0,  # every query: both precisions return the same number
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


def test_grey_and_rgba_arrays_are_read_as_rgb_with_one_note_for_the_dropped_alpha(segformer, logs):
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    grey = rgb[..., 1]
    rgba = np.dstack([rgb, np.full_like(grey, 7)])

    def same(a, b):
        return torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)

    assert same(segformer(rgba), segformer(rgb))
    assert same(segformer(rgba[:24]), segformer(rgb[:24]))
    alpha_notes = [m for m in logs if "alpha" in m]
    assert len(alpha_notes) == 1 and "(48, 64, 4)" in alpha_notes[0], logs
    grey_rgb = np.repeat(grey[..., None], 3, axis=2)
    assert same(segformer(grey), segformer(grey_rgb))
    assert same(segformer(grey[..., None]), segformer(grey_rgb))


@pytest.mark.parametrize(
    "shape, dtype, hint",
    [
        ((3, 48, 64), np.uint8, r"transpose\(1, 2, 0\)"),
        ((48, 64, 3), np.float32, r"\* 255"),
        ((48, 64, 3), np.uint16, ">> 8"),
        ((2, 48, 64, 3), np.uint8, "a list"),
        ((48, 64, 2), np.uint8, r"grey \(H, W\)"),
    ],
)
def test_arrays_it_cannot_read_are_refused_naming_their_shape_and_dtype(
    segformer, shape, dtype, hint
):
    shown = rf"shape \({', '.join(map(str, shape))}\) and dtype {np.dtype(dtype)}.*{hint}"
    with pytest.raises(ValueError, match=shown):
        segformer(np.zeros(shape, dtype))
    with pytest.raises(TypeError, match="got Tensor"):
        segformer([torch.zeros(48, 64, 3, dtype=torch.uint8)])
