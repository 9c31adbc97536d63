"""RefExpMetric / PhraseGroundingMetric against hand-computed numbers, and COCO AP of class
prompt predictions on the synthetic world."""

from __future__ import annotations

import json

import pytest
import torch
from mmengine.structures import InstanceData

from visionfm.data.data_sample import DataSample
from visionfm.data.synthetic import make_synthetic
from visionfm.evaluation import CocoMetric, PhraseGroundingMetric, RefExpMetric
from visionfm.registry import DATASETS, METRICS


def _sample(gt, gt_labels, pred, scores, labels=None, **meta) -> DataSample:
    sample = DataSample(metainfo=meta)
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor(gt, dtype=torch.float32), labels=torch.tensor(gt_labels)
    )
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(pred, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels if labels is not None else [0] * len(scores)),
    )
    return sample


GT = [[0, 0, 10, 10]]
HIT = [0, 0, 10, 9]  # IoU 0.9
NEAR = [0, 0, 10, 5]  # IoU 0.5: counts (>=)
MISS = [0, 0, 10, 4]  # IoU 0.4


def _evaluate(metric, samples) -> dict:
    metric.process({}, [s.to_dict() for s in samples])
    return metric.compute_metrics(metric.results)


def test_refexp_precision_at_k_by_hand():
    metric = RefExpMetric(topk=(1, 2, 3))
    samples = [
        # rank of the first correct box after sorting by score: 0, 1, 2, none
        _sample(GT, [0], [MISS, HIT], [0.2, 0.9], expression_id=1, dataset_name="a", split="val"),
        _sample(GT, [0], [NEAR, MISS], [0.5, 0.7], expression_id=2, dataset_name="a", split="val"),
        _sample(GT, [0], [MISS, MISS, HIT], [0.9, 0.8, 0.1], expression_id=3,
                dataset_name="b", split="val", held_out=True),
        _sample(GT, [0], [MISS], [0.9], expression_id=4, dataset_name="b", split="val",
                held_out=True),
        _sample(GT, [0], [HIT], [0.9], expression_id=1, dataset_name="a", split="val"),  # repeat
    ]  # fmt: skip
    got = _evaluate(metric, samples)
    assert got == {
        "P@1": 0.25, "P@2": 0.5, "P@3": 0.75,
        "a_val_P@1": 0.5, "a_val_P@2": 1.0, "a_val_P@3": 1.0,
        "b_val_P@1": 0.0, "b_val_P@2": 0.0, "b_val_P@3": 0.5,
        "held_out_P@1": 0.0, "held_out_P@2": 0.0, "held_out_P@3": 0.5,
    }  # fmt: skip


def test_refexp_needs_one_gt_box_and_handles_no_predictions():
    metric = RefExpMetric()
    with pytest.raises(ValueError, match=r"expression 7 .* has 2 ground-truth boxes"):
        metric.process({}, [_sample(GT * 2, [0, 0], [HIT], [1.0], expression_id=7).to_dict()])
    assert _evaluate(RefExpMetric(), [_sample(GT, [0], [], [])])["P@1"] == 0.0


def test_phrase_grounding_recall_any_box_by_hand():
    metric = METRICS.build(dict(type="PhraseGroundingMetric", topk=(1, 2)))
    assert isinstance(metric, PhraseGroundingMetric)
    gt = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10]]
    samples = [
        # phrase 0 (two boxes): its best-scored box (0.95) misses both, its next one hits
        # its SECOND box (any-box) -> recalled at 2, not at 1; phrase 1: its best box
        # misses (IoU 0.4), the next hits -> recalled at 2; phrase 0's box on phrase 1's
        # box does not count for phrase 1
        _sample(gt[:2] + gt[2:], [0, 0, 1],
                [[20, 20, 30, 29], [40, 0, 50, 4], [40, 0, 50, 10], [40, 0, 50, 10]],
                [0.9, 0.8, 0.7, 0.95], labels=[0, 1, 1, 0]),
        # phrase 0 of another image: no prediction for it -> never recalled
        _sample(gt[:1], [0], [[0, 0, 10, 10]], [0.9], labels=[1]),
    ]  # fmt: skip
    got = _evaluate(metric, samples)
    assert got == {"R@1": 0.0, "R@2": pytest.approx(2 / 3, abs=1e-4)}


# ---- open-vocabulary COCO AP with class prompts -------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return make_synthetic(tmp_path_factory.mktemp("ovd"), 2, 4, num_videos=0, progress=False)


def _class_prompt_results(world, wrong: bool) -> dict:
    ann_file = str(world["val"]["instances"])
    ds = DATASETS.build(
        dict(type="CocoGroundingDataset", ann_file=ann_file, test_mode=True,
             data_prefix=dict(img=str(world["val"]["images"])),
             pipeline=[dict(type="LoadImage"), dict(type="LoadAnnotations"),
                       dict(type="PackInputs")])
    )  # fmt: skip
    metric = CocoMetric(ann_file=ann_file)
    metric.dataset_meta = ds.metainfo
    samples = []
    for i in range(len(ds)):
        sample = ds[i]["data_samples"]
        gt = sample.gt_instances
        num_phrases = len(sample.phrases)
        labels = (gt.labels + 1) % num_phrases if wrong else gt.labels
        sample.pred_instances = InstanceData(
            bboxes=gt.bboxes, scores=torch.ones(len(gt)), labels=labels
        )
        samples.append(sample.to_dict())
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def test_coco_ap_of_class_prompt_predictions(world):
    assert _class_prompt_results(world, wrong=False)["bbox_mAP"] == 1.0
    assert _class_prompt_results(world, wrong=True)["bbox_mAP"] == 0.0


def test_coco_metric_maps_phrase_indices_through_phrase_ids(world):
    # a shuffled training-style prompt: phrase j is class phrase_ids[j]
    coco = json.loads(world["val"]["instances"].read_text())
    ann = coco["annotations"][0]
    x, y, w, h = ann["bbox"]
    sample = DataSample(metainfo=dict(img_id=ann["image_id"], phrase_ids=[4, 3, 2, 1, 0]))
    phrase = [4, 3, 2, 1, 0].index(ann["category_id"] - 1)
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[x, y, x + w, y + h]]),
        scores=torch.ones(1),
        labels=torch.tensor([phrase]),
    )
    metric = CocoMetric(ann_file=str(world["val"]["instances"]))
    metric.process({}, [sample.to_dict()])
    assert metric.results[0]["labels"].tolist() == [ann["category_id"] - 1]
