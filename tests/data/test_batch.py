"""visionfm.data.batch: the padded batch shape, the padding mask and the samples of an
unlabelled batch, against what DataPreprocessor records."""

from __future__ import annotations

import pytest
import torch

from visionfm.data import DataPreprocessor, DataSample
from visionfm.data.batch import batch_input_shape, padding_mask, unlabelled_samples


def test_batch_input_shape():
    samples = [DataSample(metainfo=dict(img_shape=s)) for s in [(5, 9), (7, 3)]]
    assert batch_input_shape(samples) == (7, 9)
    samples[0].set_metainfo(dict(batch_input_shape=(8, 16)))
    assert batch_input_shape(samples) == (8, 16)


def test_batch_input_shape_fallback_and_error():
    assert batch_input_shape(None, (4, 6)) == (4, 6)
    assert batch_input_shape([DataSample()], (4, 6)) == (4, 6)
    with pytest.raises(ValueError, match="batch_input_shape nor img_shape"):
        batch_input_shape([DataSample()])


def test_padding_mask_matches_the_preprocessor_padding():
    samples = [DataSample(metainfo=dict(img_shape=s)) for s in [(5, 9), (7, 3)]]
    images = [torch.zeros(3, *s.img_shape, dtype=torch.uint8) for s in samples]
    batch = DataPreprocessor(size_divisor=4)(dict(inputs=images, data_samples=samples))
    mask = padding_mask(batch["data_samples"])  # batch shape from the metainfo
    assert mask.dtype == torch.bool and mask.shape == (2, 8, 12) == (2, *batch["inputs"].shape[-2:])
    assert not mask[0, :5, :9].any() and mask[0, 5:].all() and mask[0, :, 9:].all()
    assert not mask[1, :7, :3].any() and mask[1, 7:].all() and mask[1, :, 3:].all()
    assert padding_mask(samples, (9, 9)).shape == (2, 9, 9)


def test_unlabelled_samples_cover_the_whole_input():
    samples = unlabelled_samples(torch.zeros(3, 3, 10, 14))
    assert len(samples) == 3 and len({id(s) for s in samples}) == 3
    assert all(s.img_shape == s.batch_input_shape == (10, 14) for s in samples)
    assert not padding_mask(samples).any()
