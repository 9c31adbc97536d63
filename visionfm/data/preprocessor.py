"""Model-side batch preparation: device transfer, normalisation, padding to one batch tensor."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from visionfm.data.data_sample import DataSample
from visionfm.registry import MODELS

__all__ = ["DataPreprocessor", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255 units
IMAGENET_STD = (58.395, 57.12, 57.375)


def _pad2d(t: torch.Tensor, h: int, w: int, value: float | bool) -> torch.Tensor:
    """Pad the last two dims of ``t`` (..., h0, w0) at the bottom / right to (..., h, w)."""
    out = t.new_full((*t.shape[:-2], h, w), value)
    out[..., : t.shape[-2], : t.shape[-1]] = t
    return out


@MODELS.register_module()
class DataPreprocessor(BaseDataPreprocessor):
    """Collated ``dict(inputs=[uint8 (3, H_i, W_i)], data_samples=[DataSample])`` ->
    ``dict(inputs=float (B, 3, H, W), data_samples=[DataSample])`` on the model's device.

    Steps: move to the device; ``(x - mean) / std`` per channel (0-255 units; ``mean=None``
    only casts to float); pad every image at the bottom / right to the largest H, W of the
    batch, rounded up to a multiple of ``size_divisor``, with ``pad_value`` (in normalised
    units, so 0 is the mean colour). Each sample gets metainfo ``batch_input_shape`` and
    ``pad_shape`` = (H, W); ``img_shape`` stays the unpadded size, and
    ``visionfm.data.batch.padding_mask(data_samples)`` gives the (B, H, W) padding mask.
    Ground truth is padded to (H, W) too: ``gt_sem_seg`` with ``seg_pad_value`` (255 =
    ignore), ``gt_depth`` with 0 (invalid), ``gt_instances.masks`` with False; a
    ``gt_sem_seg`` whose size differs from ``img_shape`` (kept at the original size for
    evaluation) is left as it is.

    Images are RGB from decoding onwards (``LoadImage`` converts OpenCV's BGR), so there is
    no ``bgr_to_rgb`` switch and ``mean`` / ``std`` are in RGB order.
    """

    def __init__(
        self,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        size_divisor: int = 1,
        pad_value: float = 0.0,
        seg_pad_value: int = 255,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(non_blocking)
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        if size_divisor < 1:
            raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
        self.normalize = mean is not None
        if self.normalize:
            if len(mean) != len(std):
                raise ValueError(f"mean {mean} and std {std} differ in length")
            self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(-1, 1, 1), persistent=False)
        self.size_divisor = size_divisor
        self.pad_value = pad_value
        self.seg_pad_value = seg_pad_value

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data["inputs"]
        samples = data.get("data_samples")
        if isinstance(inputs, torch.Tensor):
            inputs = list(inputs) if inputs.dim() == 4 else [inputs]  # (B, 3, H, W) or (3, H, W)
        images = [self._normalize(img) for img in inputs]
        h = max(img.shape[-2] for img in images)
        w = max(img.shape[-1] for img in images)
        h = math.ceil(h / self.size_divisor) * self.size_divisor
        w = math.ceil(w / self.size_divisor) * self.size_divisor
        batch = torch.stack([_pad2d(img, h, w, self.pad_value) for img in images])  # (B, 3, H, W)
        if samples is not None:
            for sample in samples:
                self._pad_sample(sample, h, w)
        return dict(inputs=batch, data_samples=samples)

    def _normalize(self, img: torch.Tensor) -> torch.Tensor:
        """(C, H, W) any dtype -> (C, H, W) float32, normalised."""
        if img.dim() != 3:
            raise ValueError(f"each input must be (C, H, W), got shape {tuple(img.shape)}")
        img = img.float()
        if self.normalize:
            if img.shape[0] != self.mean.shape[0]:
                raise ValueError(
                    f"input has {img.shape[0]} channels but mean/std have {self.mean.shape[0]}"
                )
            img = (img - self.mean) / self.std
        return img

    def _pad_sample(self, sample: DataSample, h: int, w: int) -> None:
        sample.set_metainfo(dict(batch_input_shape=(h, w), pad_shape=(h, w)))
        img_shape = sample.metainfo.get("img_shape")
        # a semantic map at another size than the image was loaded after Resize to be
        # evaluated at the original size: it is not aligned with the input, so not padded
        if "gt_sem_seg" in sample and (
            img_shape is None or tuple(sample.gt_sem_seg.shape[-2:]) == tuple(img_shape[:2])
        ):
            sample.gt_sem_seg = _pad2d(sample.gt_sem_seg, h, w, self.seg_pad_value)
        if "gt_depth" in sample:
            sample.gt_depth = _pad2d(sample.gt_depth, h, w, 0.0)
        for field in ("gt_instances", "ignored_instances"):
            instances = sample.get(field)
            if instances is not None and "masks" in instances:
                instances.masks = _pad2d(instances.masks, h, w, False)
