"""A collated-style detection batch of rendered scenes, in memory (tests and benchmarks that
step a detector without a dataset on disk)."""

from __future__ import annotations

import numpy as np
import torch
from mmengine.structures import InstanceData

from ..data_sample import DataSample
from .scene import render_scene


def detection_batch(num: int, size: int, seed: int = 0, max_objects: int = 6) -> dict:
    """``num`` scenes of size x size rendered from ``seed``: ``{'inputs': [uint8 (3, H, W)],
    'data_samples': [DataSample with gt_instances (bboxes xyxy px, labels 0-based)]}``, as a
    dataset's pipeline yields them (before the data preprocessor)."""
    rng, images, samples = np.random.default_rng(seed), [], []
    for i in range(num):
        scene = render_scene(rng, size, size, max_objects=max_objects)
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1).contiguous())
        sample = DataSample(
            metainfo=dict(
                img_id=i,
                img_shape=(size, size),
                ori_shape=(size, size),
                homography_matrix=np.eye(3, dtype=np.float32),
            )
        )
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(np.stack([o.bbox for o in scene.objects])),
            labels=torch.tensor([o.category_id - 1 for o in scene.objects]),
        )
        samples.append(sample)
    return dict(inputs=images, data_samples=samples)
