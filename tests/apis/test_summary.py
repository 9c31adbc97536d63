"""summarize: a sample's predictions as JSON values, checked on hand-made samples against
hand-computed summaries; label_names: phrases before class names."""

from __future__ import annotations

import json

import torch
from mmengine.structures import InstanceData

from visionfm.apis.summary import label_names, summarize
from visionfm.data import DataSample


def _sample(**metainfo) -> DataSample:
    return DataSample(metainfo=dict(ori_shape=(2, 4), classes=("cat", "dog"), **metainfo))


def test_instances_with_masks_and_keypoints_by_hand():
    sample = _sample()
    masks = torch.zeros(2, 2, 4, dtype=torch.bool)
    masks[0, :, :3] = True  # 6 pixels
    masks[1, 1, 3] = True  # 1 pixel
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[0.0, 0.0, 3.0, 2.0], [3.0, 1.0, 4.0, 2.0]]),
        scores=torch.tensor([0.75, 0.5]),
        labels=torch.tensor([1, 7]),  # 7: past the class names
        masks=masks,
        keypoints=torch.tensor([[[0.5, 0.5, 0.25]], [[3.5, 1.5, 1.0]]]),
    )
    assert summarize(sample) == {
        "image_size": [2, 4],
        "instances": [
            dict(box=[0.0, 0.0, 3.0, 2.0], score=0.75, label=1, name="dog", mask_area=6,
                 keypoints=[[0.5, 0.5, 0.25]]),
            dict(box=[3.0, 1.0, 4.0, 2.0], score=0.5, label=7, name="7", mask_area=1,
                 keypoints=[[3.5, 1.5, 1.0]]),
        ],
    }  # fmt: skip


def test_float32_values_are_returned_unrounded_and_as_json():
    sample = _sample()
    boxes = torch.tensor([[0.1, 0.2, 3.3, 1.7]])
    sample.pred_instances = InstanceData(
        bboxes=boxes, scores=torch.tensor([1 / 3]), labels=torch.tensor([0])
    )
    summary = json.loads(json.dumps(summarize(sample)))
    assert torch.equal(torch.tensor([summary["instances"][0]["box"]]), boxes)
    assert torch.tensor(summary["instances"][0]["score"]) == torch.tensor(1 / 3)


def test_an_empty_prediction_is_an_empty_list():
    sample = _sample()
    sample.pred_instances = InstanceData(
        bboxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long),
        masks=torch.zeros(0, 2, 4, dtype=torch.bool),
    )  # fmt: skip
    assert summarize(sample)["instances"] == []


def test_dense_maps_by_hand():
    sample = _sample()
    sample.pred_sem_seg = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 255]])
    sample.pred_panoptic_seg = torch.tensor([[1001, 1001, 0, 0], [0, 1002, -1, -1]])
    sample.pred_depth = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 3.0]]])  # (1, H, W)
    summary = summarize(sample)
    assert summary["sem_seg"] == {"dog": 5 / 8, "cat": 2 / 8}
    assert list(summary["sem_seg"]) == ["dog", "cat"]  # largest first
    assert summary["panoptic_seg"] == [
        dict(id=0, name="cat", area=3),
        dict(id=1001, name="dog", area=2),
        dict(id=1002, name="dog", area=1),
    ]
    assert summary["depth"] == dict(min=1.0, max=4.0, mean=2.0)
    assert "instances" not in summary


def test_a_prompted_models_labels_name_its_phrases():
    sample = _sample()
    sample.phrases = ["red car", "person"]
    sample.pred_instances = InstanceData(
        bboxes=torch.zeros(2, 4), scores=torch.ones(2), labels=torch.tensor([1, 0])
    )
    summary = summarize(sample)
    assert label_names(sample) == summary["phrases"] == ["red car", "person"]
    assert [row["name"] for row in summary["instances"]] == ["person", "red car"]
    assert label_names(DataSample()) == []
