"""PackInputs -> pseudo_collate -> DataPreprocessor: values, padding and ground-truth padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

from visionfm.data import DataPreprocessor, DataSample, PackInputs, padding_mask
from visionfm.registry import MODELS


def _results(h: int, w: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return dict(
        img=rng.integers(0, 256, (h, w, 3)).astype(np.uint8),
        img_path=f"img{seed}.png",
        img_shape=(h, w),
        ori_shape=(h, w),
        gt_bboxes=np.array([[1, 1, 3, 4], [0, 0, 2, 2]], np.float32),
        gt_labels=np.array([3, 5]),
        gt_ignore_flags=np.array([False, True]),
        gt_masks=rng.random((2, h, w)) > 0.5,
        gt_keypoints=rng.random((2, 17, 3)).astype(np.float32),
        gt_sem_seg=rng.integers(0, 20, (h, w)).astype(np.uint8),
        gt_depth=rng.random((h, w)).astype(np.float32) + 0.1,
        phrases=["red cube", "crowd"],
        phrase_spans=[[[9, 17]], []],
        text="find the red cube",
    )


def _batch(shapes: list[tuple[int, int]]) -> dict:
    return pseudo_collate([PackInputs()(_results(h, w, i)) for i, (h, w) in enumerate(shapes)])


def test_pack_inputs_types_values_and_ignored_instances():
    res = _results(6, 9, 0)
    out = PackInputs()(dict(res))
    inputs, sample = out["inputs"], out["data_samples"]
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 6, 9)
    np.testing.assert_array_equal(inputs.numpy(), res["img"].transpose(2, 0, 1))
    assert isinstance(sample, DataSample)
    gt, ignored = sample.gt_instances, sample.ignored_instances
    assert gt.bboxes.dtype == torch.float32 and gt.labels.dtype == torch.long
    assert gt.labels.tolist() == [3] and ignored.labels.tolist() == [5]
    np.testing.assert_array_equal(gt.masks.numpy(), res["gt_masks"][:1])
    np.testing.assert_array_equal(ignored.keypoints.numpy(), res["gt_keypoints"][1:])
    assert sample.gt_sem_seg.dtype == torch.long and sample.gt_sem_seg.shape == (6, 9)
    np.testing.assert_array_equal(sample.gt_depth.numpy(), res["gt_depth"])
    # phrases are the caption's entities, kept whole (labels index them), not per instance
    assert sample.phrases == ["red cube", "crowd"] and sample.text == "find the red cube"
    assert sample.phrase_spans == [[[9, 17]], []]
    assert sample.img_path == "img0.png" and sample.img_shape == (6, 9)
    assert "gt_depth" in sample and "pred_instances" not in sample


def test_normalised_values_equal_a_hand_computation():
    pre = DataPreprocessor(mean=(100.0, 50.0, 0.0), std=(2.0, 5.0, 10.0))
    img = torch.tensor([[[0, 255]], [[10, 20]], [[30, 40]]], dtype=torch.uint8)  # (3, 1, 2)
    out = pre(dict(inputs=[img]))["inputs"]
    expected = [[[-50.0, 77.5]], [[-8.0, -6.0]], [[3.0, 4.0]]]
    torch.testing.assert_close(out, torch.tensor([expected]))
    imagenet = DataPreprocessor()(dict(inputs=[img]))["inputs"]
    assert imagenet[0, 0, 0, 1].item() == pytest.approx((255 - 123.675) / 58.395)
    assert imagenet[0, 2, 0, 0].item() == pytest.approx((30 - 103.53) / 57.375)
    raw = DataPreprocessor(mean=None, std=None)(dict(inputs=[img]))["inputs"]
    torch.testing.assert_close(raw, img[None].float())


@pytest.mark.parametrize("divisor, expected", [(1, (10, 20)), (8, (16, 24)), (32, (32, 32))])
def test_batch_is_padded_to_the_largest_image_and_size_divisor(divisor, expected):
    data = _batch([(10, 13), (7, 20)])
    imgs = [x.clone() for x in data["inputs"]]
    pre = DataPreprocessor(size_divisor=divisor, pad_value=-7.0)
    out = pre(data)
    batch, samples = out["inputs"], out["data_samples"]
    assert batch.shape == (2, 3, *expected) and batch.dtype == torch.float32
    for i, img in enumerate(imgs):
        h, w = img.shape[1:]
        norm = (img.float() - pre.mean) / pre.std
        torch.testing.assert_close(batch[i, :, :h, :w], norm)
        pad = torch.ones(expected, dtype=torch.bool)
        pad[:h, :w] = False
        assert (batch[i][:, pad] == -7.0).all()
        assert samples[i].img_shape == (h, w)
        assert samples[i].pad_shape == samples[i].batch_input_shape == expected
    mask = padding_mask(samples, expected)
    assert mask.shape == (2, *expected)
    assert mask[0, :10, :13].logical_not().all() and mask[0, 10:].all() and mask[0, :, 13:].all()
    assert mask.sum().item() == 2 * expected[0] * expected[1] - (10 * 13 + 7 * 20)


def test_ground_truth_is_padded_seg_with_255_depth_with_0_masks_with_false():
    data = _batch([(10, 13), (7, 20)])
    seg1, depth1 = data["data_samples"][1].gt_sem_seg.clone(), data["data_samples"][1].gt_depth
    masks1 = data["data_samples"][1].gt_instances.masks.clone()
    sample = DataPreprocessor(size_divisor=4)(data)["data_samples"][1]
    assert sample.gt_sem_seg.shape == (12, 20) and sample.gt_sem_seg.dtype == torch.long
    torch.testing.assert_close(sample.gt_sem_seg[:7], seg1)
    assert (sample.gt_sem_seg[7:] == 255).all()
    torch.testing.assert_close(sample.gt_depth[:7], depth1)
    assert (sample.gt_depth[7:] == 0).all()
    assert sample.gt_instances.masks.shape == (1, 12, 20)
    assert torch.equal(sample.gt_instances.masks[:, :7], masks1)
    assert not sample.gt_instances.masks[:, 7:].any()
    assert sample.ignored_instances.masks.shape == (1, 12, 20)


def test_built_from_the_registry_and_accepts_a_stacked_batch():
    pre = MODELS.build(dict(type="DataPreprocessor", size_divisor=4))
    assert isinstance(pre, DataPreprocessor)
    stacked = torch.zeros(2, 3, 5, 6, dtype=torch.uint8)
    out = pre(dict(inputs=stacked, data_samples=None))
    assert out["inputs"].shape == (2, 3, 8, 8) and out["data_samples"] is None
    assert pre.to("cpu").device == torch.device("cpu")
    with pytest.raises(ValueError, match="both mean and std"):
        DataPreprocessor(mean=(0, 0, 0), std=None)
