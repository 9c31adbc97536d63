"""Top-down pose estimator: a :class:`TaskModel` on person crops with flip testing.

Training and ``'tensor'`` mode are the TaskModel's. In ``'predict'`` mode, heads with
``flip_test = True`` (``TopDownHeatmapHead``) also get the features of the horizontally
mirrored inputs as ``flip_feats``; the backbone runs once on the batch of inputs and
mirrored inputs together (2B images).
"""

from __future__ import annotations

import torch
from torch import Tensor

from visionfm.data.batch import unlabelled_samples
from visionfm.data.data_sample import DataSample
from visionfm.registry import MODELS

from .task_model import TaskModel

__all__ = ["TopDownPoseEstimator"]


@MODELS.register_module()
class TopDownPoseEstimator(TaskModel):
    """Backbone + optional neck + pose head(s) on person crops; see the module doc.

    Same arguments as :class:`TaskModel`. Inputs are crops of one size (``TopDownAffine``),
    so the batch has no padding and mirroring the batch mirrors every crop.
    """

    def forward(
        self, inputs: Tensor, data_samples: list[DataSample] | None = None, mode: str = "tensor"
    ):
        """inputs: (B, 3, H, W) crops. See :meth:`TaskModel.forward`."""
        heads = self.heads_in_prediction_order()
        if mode != "predict" or not any(head.flip_test for head in heads):
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
        for head in heads:
            if head.flip_test:
                data_samples = head.predict(feats, data_samples, flip_feats=flipped)
            else:
                data_samples = head.predict(feats, data_samples)
        return data_samples
