"""Batch geometry read from the samples' metainfo: the one place heads and task models get it.

``DataPreprocessor`` pads every image of a batch at the bottom / right to one (H, W) and
records it as ``batch_input_shape`` (and ``pad_shape``); ``img_shape`` stays each image's own
(unpadded) size. From that:

- :func:`batch_input_shape`: (H, W) of the padded batch input;
- :func:`padding_mask`: (B, H, W) bool, True on padded pixels;
- :func:`unlabelled_samples`: the samples of a batch given without any (``forward(inputs)``
  with ``data_samples=None``): every image is the whole, unpadded input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .data_sample import DataSample

__all__ = ["batch_input_shape", "padding_mask", "unlabelled_samples"]


def batch_input_shape(
    data_samples: Sequence[DataSample] | None, fallback: Sequence[int] | None = None
) -> tuple[int, int]:
    """(H, W) of the padded batch input the samples were stacked into.

    The data preprocessor's ``batch_input_shape`` metainfo, else the largest ``img_shape``
    of the samples, else ``fallback`` (e.g. the size of a map known to cover the input).
    Raises ``ValueError`` when none of them is there.
    """
    if data_samples:
        shape = data_samples[0].metainfo.get("batch_input_shape")
        if shape is not None:
            return int(shape[0]), int(shape[1])
        sizes = [s.metainfo["img_shape"][:2] for s in data_samples if "img_shape" in s.metainfo]
        if sizes:
            return max(int(h) for h, _ in sizes), max(int(w) for _, w in sizes)
    if fallback is None:
        raise ValueError(
            "the batch input size is unknown: the samples carry neither batch_input_shape nor "
            "img_shape metainfo (batch the inputs with DataPreprocessor)"
        )
    return int(fallback[0]), int(fallback[1])


def padding_mask(
    data_samples: Sequence[DataSample],
    batch_shape: Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, H, W) bool, True on padded pixels, from each sample's ``img_shape`` metainfo.

    ``batch_shape``: (H, W) of the padded batch; None: :func:`batch_input_shape`. The
    preprocessor pads at the bottom / right, so ``img_shape`` (h, w) alone says where each
    image is; a sample without ``img_shape`` is all image. This is the key-padding mask of
    DETR-style attention (``Memory.padding_mask``, deformable attention's
    ``value_padding_mask``), which uses the same convention.
    """
    h, w = batch_input_shape(data_samples) if batch_shape is None else batch_shape[:2]
    mask = torch.ones(len(data_samples), h, w, dtype=torch.bool, device=device)
    for i, sample in enumerate(data_samples):
        ih, iw = sample.metainfo.get("img_shape", (h, w))[:2]
        mask[i, :ih, :iw] = False
    return mask


def unlabelled_samples(inputs: Tensor) -> list[DataSample]:
    """inputs (B, 3, H, W) -> B samples with ``img_shape`` = ``batch_input_shape`` = (H, W):
    no padding, no ground truth, predictions in input pixels."""
    h, w = inputs.shape[-2:]
    return [
        DataSample(metainfo=dict(img_shape=(h, w), batch_input_shape=(h, w)))
        for _ in range(inputs.shape[0])
    ]
