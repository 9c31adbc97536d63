"""Segmentor: sliding-window inference (windows cover the input; equal to whole-image
inference for a per-pixel model and for a window as large as the input), its config checks,
and a tiny UperNet that must overfit a few synthetic images read from disk."""

from __future__ import annotations

import time

import pytest
import torch
from _tiny_models import overfit, tiny_simple_fpn, tiny_vit
from mmengine.dataset import pseudo_collate
from torch import nn

from visionfm.data.data_sample import DataSample
from visionfm.evaluation import IoUMetric
from visionfm.models import Segmentor
from visionfm.models.segmentor import slide_inference, window_starts
from visionfm.registry import DATASETS, MODELS, ConfigError

SYNTHETIC_CLASSES = ("background", "circle", "square", "triangle", "star", "person")


class PixelBackbone(nn.Module):
    """A per-pixel backbone: 1x1 conv, stride 1, level 'p0'."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, channels, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"p0": self.proj(x).relu()}


def _per_pixel_model(test_cfg: dict | None = None) -> Segmentor:
    torch.manual_seed(0)
    head = MODELS.build(
        dict(type="FCNHead", num_classes=3, in_channels=dict(p0=8), channels=8, kernel_size=1)
    )
    return Segmentor(PixelBackbone(), head, test_cfg=test_cfg).eval()


def _vit_upernet(test_cfg: dict | None = None, num_classes: int = 3, dims: int = 16) -> dict:
    return dict(
        type="Segmentor",
        backbone=tiny_vit(dims, num_heads=2, embed_layer="conv"),
        neck=tiny_simple_fpn(dims, scale_factors=(2.0, 1.0, 0.5)),
        head=dict(
            type="UperNetHead",
            num_classes=num_classes,
            in_channels=dict(p2=dims, p3=dims, p4=dims),
            channels=dims,
            pool_scales=(1, 2),
        ),
        test_cfg=test_cfg,
    )


def _inputs(h: int, w: int) -> tuple[torch.Tensor, list[DataSample]]:
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 3, h, w, generator=g)
    samples = [
        DataSample(metainfo=dict(img_shape=shape, ori_shape=shape, batch_input_shape=(h, w)))
        for shape in [(h, w), (h - 5, w - 9)]
    ]
    return inputs, samples


@pytest.mark.parametrize("size, crop, stride", [(37, 16, 10), (32, 16, 16), (10, 16, 4)])
def test_windows_cover_the_input_and_end_at_its_border(size, crop, stride):
    starts = window_starts(size, crop, stride)
    covered = torch.zeros(size, dtype=torch.bool)
    for s in starts:
        covered[s : s + crop] = True
    assert covered.all() and starts[0] == 0
    assert min(starts[-1] + crop, size) == size
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_slide_inference_averages_overlaps():
    inputs = torch.ones(1, 1, 5, 7)
    counts = slide_inference(inputs, lambda x: x, crop_size=(3, 4), stride=(2, 3))
    torch.testing.assert_close(counts, inputs)  # each pixel: mean of identical values
    # window outputs at a lower resolution are resized to the window
    out = slide_inference(inputs, lambda x: x[..., ::2, ::2] * 2, crop_size=(4, 4), stride=(2, 2))
    assert out.shape == (1, 1, 5, 7) and torch.allclose(out, 2 * inputs)


def test_sliding_window_equals_whole_image_for_a_per_pixel_model():
    inputs, samples = _inputs(37, 45)
    whole = _per_pixel_model()(
        inputs, [DataSample(metainfo=s.metainfo) for s in samples], "predict"
    )
    slide_cfg = dict(mode="slide", crop_size=(16, 20), stride=(10, 13))
    slide = _per_pixel_model(slide_cfg)(inputs, samples, "predict")
    for a, b in zip(whole, slide):
        assert b.pred_sem_seg.shape == b.ori_shape
        torch.testing.assert_close(a.seg_logits, b.seg_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.pred_sem_seg, b.pred_sem_seg)


def test_one_window_as_large_as_the_input_equals_whole_image_inference():
    inputs, samples = _inputs(40, 56)
    torch.manual_seed(0)
    model = MODELS.build(_vit_upernet()).eval()
    whole = model(inputs, [DataSample(metainfo=s.metainfo) for s in samples], "predict")
    model.test_cfg = dict(mode="slide", crop_size=(64, 64), stride=(32, 32))
    slide = model(inputs, samples, "predict")
    for a, b in zip(whole, slide):
        # whole: logits at stride 4 resampled once; slide: upsampled to the window, then
        # resampled -- equal up to interpolation
        torch.testing.assert_close(a.seg_logits, b.seg_logits, atol=2e-2, rtol=0)
    # several windows of a position-dependent model still give every pixel a prediction
    model.test_cfg = dict(mode="slide", crop_size=(24, 24), stride=(16, 16))
    preds = model(inputs, None, "predict")
    assert preds[0].pred_sem_seg.shape == (40, 56)


def test_test_cfg_is_checked_at_construction():
    with pytest.raises(ValueError, match="crop_size"):
        _per_pixel_model(dict(mode="slide", stride=(8, 8)))
    with pytest.raises(ValueError, match="'whole' or 'slide'"):
        _per_pixel_model(dict(mode="sliding"))
    with pytest.raises(
        ConfigError, match="test_cfg.crop: no such setting. Did you mean 'crop_size'"
    ):
        _per_pixel_model(dict(mode="whole", crop=(8, 8)))


def test_tensor_and_loss_modes_are_the_detectors():
    model = _per_pixel_model(dict(mode="slide", crop_size=(8, 8), stride=(8, 8)))
    inputs, samples = _inputs(12, 16)
    assert model(inputs, samples, "tensor").shape == (2, 3, 12, 16)
    for s in samples:
        s.gt_sem_seg = torch.zeros(12, 16, dtype=torch.long)
    assert set(model.train()(inputs, samples, "loss")) == {"loss_ce"}


def _synthetic_batch(root, pipeline: list[dict]) -> dict:
    """4 training images of the synthetic world (those without a tiny square), through
    ``pipeline``, collated."""
    dataset = DATASETS.build(
        dict(
            type="SegFolderDataset",
            data_root=str(root),
            data_prefix=dict(img="images/train/", seg="semantic/train/"),
            metainfo=dict(classes=SYNTHETIC_CLASSES),
            pipeline=[*pipeline, dict(type="PackInputs")],
            indices=[0, 3, 9, 11],
        )
    )
    return pseudo_collate([dataset[i] for i in range(len(dataset))])


@pytest.mark.slow
def test_tiny_upernet_overfits_synthetic_images(synthetic_root):
    """A tiny UperNet memorises 4 synthetic images (64 px) read by SegFolderDataset: pixel
    accuracy > 0.95 and mIoU > 0.8 on them, evaluated at their original size."""
    load = [dict(type="LoadAnnotations", with_bbox=False, with_label=False, with_seg=True)]
    resize = [dict(type="Resize", scale=(64, 64), keep_ratio=True)]
    # training: labels resized with the image; evaluation: labels kept at the original size
    train = _synthetic_batch(synthetic_root, [dict(type="LoadImage"), *load, *resize])
    test = _synthetic_batch(synthetic_root, [dict(type="LoadImage"), *resize, *load])
    torch.manual_seed(0)
    model = MODELS.build(_vit_upernet(num_classes=6, dims=32))
    model.data_preprocessor = MODELS.build(dict(type="DataPreprocessor", size_divisor=32))
    data = model.data_preprocessor(train, True)
    start = time.perf_counter()
    overfit(model, data, steps=300, lr=6e-3, milestone=240)  # > 0.88 mIoU for seeds 0-4
    model.eval()
    preds = model(**model.data_preprocessor(test), mode="predict")
    elapsed = time.perf_counter() - start
    metric = IoUMetric(num_classes=6)
    metric.process(None, [p.to_dict() for p in preds])
    scores = metric.compute_metrics(metric.results)
    print(f"overfit: {scores}, {elapsed:.1f} s")
    assert scores["aAcc"] > 0.95 and scores["mIoU"] > 0.8
