"""IoUMetric against a hand-computed case and an independent numpy confusion-matrix
reference (several images, ignored pixels, classes absent or only predicted), results
gathered from several processes, padded ground truth, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from visionfm.data.data_sample import DataSample
from visionfm.evaluation import IoUMetric
from visionfm.registry import METRICS


def _sample(pred, gt, name: str = "img.png") -> dict:
    s = DataSample(metainfo=dict(img_path=name))
    s.pred_sem_seg = torch.as_tensor(np.asarray(pred), dtype=torch.long)
    s.gt_sem_seg = torch.as_tensor(np.asarray(gt), dtype=torch.long)
    return s.to_dict()


def _evaluate(pairs, num_classes: int, **kwargs) -> dict[str, float]:
    metric = IoUMetric(num_classes=num_classes, **kwargs)
    metric.process(None, [_sample(p, g) for p, g in pairs])
    return metric.compute_metrics(metric.results)


def reference(pairs, num_classes: int, ignore_index: int = 255) -> dict[str, float]:
    """mIoU / mAcc / aAcc from one confusion matrix over all images (rows: gt, cols: pred),
    classes with an empty union (IoU) / no ground truth (Acc) left out of the means."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for pred, gt in pairs:
        pred, gt = np.asarray(pred).ravel(), np.asarray(gt).ravel()
        keep = gt != ignore_index
        np.add.at(conf, (gt[keep], pred[keep]), 1)
    tp = np.diag(conf).astype(float)
    gt_total, pred_total = conf.sum(1), conf.sum(0)
    union = gt_total + pred_total - tp
    ious = [tp[c] / union[c] for c in range(num_classes) if union[c] > 0]
    accs = [tp[c] / gt_total[c] for c in range(num_classes) if gt_total[c] > 0]
    return dict(mIoU=np.mean(ious), mAcc=np.mean(accs), aAcc=tp.sum() / conf.sum())


def test_hand_computed_case():
    gt = [[0, 0, 1], [1, 2, 255]]
    pred = [[0, 1, 1], [1, 1, 2]]  # the last pixel is ignored, its prediction not counted
    # class 0: intersect 1, pred 1, label 2 -> IoU 1 / 2, Acc 1 / 2
    # class 1: intersect 2, pred 4, label 2 -> IoU 2 / 4, Acc 1
    # class 2: intersect 0, pred 0, label 1 -> IoU 0, Acc 0
    # class 3: in neither -> left out of the means
    scores = _evaluate([(pred, gt)], num_classes=4)
    assert scores["mIoU"] == pytest.approx(round((1 / 2 + 2 / 4 + 0) / 3, 4))
    assert scores["mAcc"] == pytest.approx(round((1 / 2 + 1 + 0) / 3, 4))
    assert scores["aAcc"] == pytest.approx(round(3 / 5, 4))


def test_class_only_predicted_counts_as_zero_class_absent_everywhere_is_excluded():
    gt = np.zeros((2, 2), np.int64)
    perfect = _evaluate([(gt, gt)], num_classes=3)
    assert perfect == dict(mIoU=1.0, mAcc=1.0, aAcc=1.0)  # classes 1, 2 absent: excluded
    pred = np.array([[0, 0], [0, 2]])  # a false positive of class 2 (no ground truth)
    scores = _evaluate([(pred, gt)], num_classes=3)
    assert scores["mIoU"] == pytest.approx((3 / 4 + 0) / 2)  # class 2 counts with IoU 0
    assert scores["mAcc"] == 0.75  # accuracy only over classes with ground truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_numpy_confusion_matrix_over_several_images(seed):
    rng = np.random.default_rng(seed)
    k = 5
    pairs = []
    for h, w in [(7, 9), (12, 5), (4, 4), (10, 11)]:
        gt = rng.integers(0, k - 1, (h, w))  # class 4 never in the ground truth
        pred = np.where(rng.random((h, w)) < 0.6, gt, rng.integers(0, k, (h, w)))
        gt[rng.random((h, w)) < 0.2] = 255
        pairs.append((pred, gt))
    scores = _evaluate(pairs, num_classes=k)
    ref = reference(pairs, k)
    for key in ("mIoU", "mAcc", "aAcc"):
        assert scores[key] == pytest.approx(ref[key], abs=5e-5)


def test_results_gathered_from_several_processes_equal_one_process():
    """Each process stores per-image count vectors; the collected list is simply their
    concatenation (as mmengine's collect_results gives), so the sums are the same."""
    rng = np.random.default_rng(3)
    samples = [
        _sample(rng.integers(0, 4, (6, 8)), rng.integers(0, 4, (6, 8)), f"{i}.png")
        for i in range(6)
    ]
    single = IoUMetric(num_classes=4)
    single.process(None, samples)
    ranks = [IoUMetric(num_classes=4) for _ in range(2)]
    ranks[0].process(None, samples[0::2])
    ranks[1].process(None, samples[1::2])
    gathered = ranks[0].results + ranks[1].results
    assert all(r.shape == (3, 4) for r in gathered)  # small: 3 x K counts per image
    assert single.compute_metrics(single.results) == ranks[0].compute_metrics(gathered)


def test_through_the_evaluator_with_classes_from_the_dataset_and_a_table():
    evaluator = Evaluator(METRICS.build(dict(type="IoUMetric", classwise=True)))
    evaluator.dataset_meta = dict(classes=("bg", "cat", "dog"))
    gt = np.array([[0, 1], [2, 2]])
    s = DataSample(metainfo=dict(img_path="a.png"))
    s.pred_sem_seg, s.gt_sem_seg = torch.as_tensor(gt), torch.as_tensor(gt)
    evaluator.process([s], None)
    assert evaluator.evaluate(1) == {"seg/mIoU": 1.0, "seg/mAcc": 1.0, "seg/aAcc": 1.0}


def test_padded_ground_truth_is_cropped_to_the_prediction():
    gt = np.full((6, 8), 255)
    gt[:4, :5] = np.arange(20).reshape(4, 5) % 3
    pred = gt[:4, :5]
    assert _evaluate([(pred, gt)], num_classes=3)["mIoU"] == 1.0


def test_errors_name_the_image_and_the_problem():
    metric = IoUMetric(num_classes=3)
    with pytest.raises(ValueError, match=r"b\.png: prediction \(4, 5\) and ground truth"):
        metric.process(None, [_sample(np.zeros((4, 5)), np.zeros((3, 5)), "b.png")])
    with pytest.raises(ValueError, match=r"c\.png: labels outside 0..2 \(ground truth \[7\]"):
        metric.process(None, [_sample(np.zeros((2, 2)), [[0, 7], [1, 255]], "c.png")])
    with pytest.raises(ValueError, match="prediction range 0..3"):
        metric.process(None, [_sample([[0, 3]], [[0, 1]])])
    with pytest.raises(KeyError, match="pred_sem_seg"):
        metric.process(None, [dict(gt_sem_seg=torch.zeros(2, 2))])
    with pytest.raises(ValueError, match="num_classes"):
        IoUMetric().process(None, [_sample([[0]], [[0]])])
