"""Top-down pose estimator: a :class:`Detector` on person crops with flip testing.

Training and ``'tensor'`` mode are the Detector's. In ``'predict'`` mode, heads with
``flip_test = True`` (``TopDownHeatmapHead``) also get the features of the horizontally
mirrored inputs as ``flip_feats``; the backbone runs once on the batch of inputs and
mirrored inputs together (2B images).
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from visionfm.data.batch import unlabelled_samples
from visionfm.data.data_sample import DataSample
from visionfm.registry import MODELS

from .detector import Detector

__all__ = ["TopDownPoseEstimator"]


def _wants_flip(head) -> bool:
    return bool(getattr(head, "flip_test", False)) and (
        "flip_feats" in inspect.signature(head.predict).parameters
    )


@MODELS.register_module()
class TopDownPoseEstimator(Detector):
    """Backbone + optional neck + pose head(s) on person crops; see the module doc.

    Same arguments as :class:`Detector`. Inputs are crops of one size (``TopDownAffine``),
    so the batch has no padding and mirroring the batch mirrors every crop.
    """

    def forward(
        self, inputs: Tensor, data_samples: list[DataSample] | None = None, mode: str = "tensor"
    ):
        """inputs: (B, 3, H, W) crops. See :meth:`Detector.forward`."""
        heads = self.named_heads()
        if mode != "predict" or not any(_wants_flip(h) for _, h in heads):
            return super().forward(inputs, data_samples, mode)
        h, w = inputs.shape[-2:]
        if data_samples is None:
            data_samples = unlabelled_samples(inputs)
        padded = [s.img_shape[:2] for s in data_samples if tuple(s.img_shape[:2]) != (h, w)]
        if padded:
            raise ValueError(
                f"flip testing needs unpadded crops of one size, but the batch is {(h, w)} and "
                f"some crops are {padded[0]}: give every crop the same input_size"
            )
        both = self.extract_feat(torch.cat((inputs, inputs.flip(-1))))
        b = inputs.shape[0]
        feats = {k: v[:b] for k, v in both.items()}
        flipped = {k: v[b:] for k, v in both.items()}
        for _, head in heads:
            if _wants_flip(head):
                data_samples = head.predict(feats, data_samples, flip_feats=flipped)
            else:
                data_samples = head.predict(feats, data_samples)
        return data_samples
