"""TopDownPipeline: detector boxes -> pose crops -> keypoints in original pixels, drawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from visionfm.apis import Inferencer, TopDownPipeline
from visionfm.data import DataSample

POSE_CONFIG = "configs/vitpose/vitpose_vit-t_synthetic.py"


class _FakeDetector:
    """Two persons and a ball, the second person below the score threshold."""

    dataset_meta = dict(classes=("ball", "person"))

    def __call__(self, image: np.ndarray) -> DataSample:
        sample = DataSample()
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor([[10.0, 5.0, 50.0, 90.0], [60, 10, 100, 80], [0, 0, 9, 9]]),
            scores=torch.tensor([0.9, 0.1, 0.95]),
            labels=torch.tensor([1, 1, 0]),
        )
        return sample


def test_pipeline_puts_keypoints_of_each_person_in_the_image():
    torch.manual_seed(0)
    pose = Inferencer(POSE_CONFIG, device="cpu")
    pipeline = TopDownPipeline(pose, _FakeDetector(), det_score_thr=0.3)
    image = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    pred = pipeline(image).pred_instances
    assert pred.keypoints.shape == (1, 17, 3)
    assert pred.bboxes.tolist() == [[10.0, 5.0, 50.0, 90.0]]
    assert pred.scores.tolist() == pytest.approx([0.9])
    xy = pred.keypoints[0, :, :2]  # inside the padded crop around the box, in image pixels
    assert bool(((xy[:, 0] > -20) & (xy[:, 0] < 80) & (xy[:, 1] > -10) & (xy[:, 1] < 105)).all())
    drawn = pipeline.visualize(image, pipeline(image))
    assert drawn.shape == image.shape and drawn.dtype == np.uint8


def test_pipeline_without_detector_uses_the_whole_image():
    pipeline = TopDownPipeline(Inferencer(POSE_CONFIG, device="cpu"))
    pred = pipeline(np.zeros((64, 48, 3), np.uint8)).pred_instances
    assert pred.bboxes.tolist() == [[0.0, 0.0, 48.0, 64.0]] and pred.keypoints.shape == (1, 17, 3)


def test_grey_and_rgba_arrays_are_converted_like_the_inferencer_and_others_refused():
    pipeline = TopDownPipeline(Inferencer(POSE_CONFIG, device="cpu"))
    grey = np.random.default_rng(0).integers(0, 255, (64, 48), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((64, 48, 1), 7, np.uint8)], axis=2)
    expected = pipeline(rgb).pred_instances.keypoints
    for image in (grey, grey[..., None], rgba):
        assert torch.equal(pipeline(image).pred_instances.keypoints, expected)
    with pytest.raises(ValueError, match=r"\(3, 64, 48\)"):
        pipeline(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    with pytest.raises(TypeError, match="Tensor"):
        pipeline(torch.zeros(64, 48, 3, dtype=torch.uint8))
