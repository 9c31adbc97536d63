"""Inferencer(score_thr=...) filters the returned predictions, not only the drawn ones: every
per-instance field alike, equal to the unfiltered predictions above the threshold."""

from __future__ import annotations

import numpy as np
import torch
from mmengine.structures import InstanceData

from visionfm.apis import Inferencer
from visionfm.apis.inferencer import _drop_low_scores
from visionfm.data import DataSample

IMAGE = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)


def _instances(sample: DataSample) -> dict[str, torch.Tensor]:
    return {key: value for key, value in sample.pred_instances.items()}


def test_hand_made_instances_lose_every_field_of_the_low_scoring_ones():
    sample = DataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[0.0, 0, 4, 4], [1, 1, 5, 5], [2, 2, 6, 6]]),
        scores=torch.tensor([0.5, 0.125, 0.25]),
        labels=torch.tensor([2, 0, 1]),
        masks=torch.rand(3, 4, 4) > 0.5,
        keypoints=torch.arange(3 * 2 * 3, dtype=torch.float32).reshape(3, 2, 3),
    )
    sample.pred_sem_seg = torch.zeros(4, 4, dtype=torch.long)
    masks = sample.pred_instances.masks.clone()
    _drop_low_scores(sample, 0.25)
    pred = sample.pred_instances
    assert pred.scores.tolist() == [0.5, 0.25]  # at the threshold kept, as drawing does
    assert pred.labels.tolist() == [2, 1]
    assert pred.bboxes.tolist() == [[0.0, 0, 4, 4], [2, 2, 6, 6]]
    assert torch.equal(pred.masks, masks[[0, 2]])
    assert pred.keypoints[:, 0, 0].tolist() == [0.0, 12.0]
    assert sample.pred_sem_seg.shape == (4, 4)  # dense maps untouched
    _drop_low_scores(sample, 0.9)
    assert len(sample.pred_instances) == 0 and sample.pred_instances.keypoints.shape == (0, 2, 3)


def test_instances_without_scores_are_kept():
    sample = DataSample()
    sample.pred_instances = InstanceData(bboxes=torch.zeros(2, 4), labels=torch.zeros(2))
    _drop_low_scores(sample, 0.5)
    assert len(sample.pred_instances) == 2


def test_a_detector_returns_the_unfiltered_predictions_above_the_threshold():
    inferencer = Inferencer(
        "configs/dino/dino_vit-t_synthetic.py",
        device="cpu",
        score_thr=0.0,
        cfg_options={"model.backbone.depth": 2},
    )
    everything = _instances(inferencer(IMAGE))
    scores = everything["scores"]
    threshold = float(scores.median())  # an untrained model: about half above it
    inferencer.score_thr = threshold
    kept = inferencer([IMAGE, IMAGE])
    keep = scores >= threshold
    assert 0 < int(keep.sum()) < len(scores)
    for sample in kept:
        filtered = _instances(sample)
        assert filtered.keys() == everything.keys()
        for key, value in everything.items():
            torch.testing.assert_close(filtered[key], value[keep], msg=key)
        assert bool((filtered["scores"] >= threshold).all())


def test_instance_masks_of_a_panoptic_model_follow_its_scores():
    inferencer = Inferencer(
        "configs/mask2former/mask2former_vit-t_synthetic-panoptic.py", device="cpu", score_thr=0
    )
    unfiltered = inferencer(IMAGE)
    everything = _instances(unfiltered)
    assert "masks" in everything
    threshold = float(everything["scores"].median())
    inferencer.score_thr = threshold
    sample = inferencer(IMAGE)
    keep = everything["scores"] >= threshold
    assert 0 < int(keep.sum()) < len(keep)
    for key, value in _instances(sample).items():
        torch.testing.assert_close(value, everything[key][keep], msg=key)
    assert torch.equal(sample.pred_panoptic_seg, unfiltered.pred_panoptic_seg)  # the map: whole
