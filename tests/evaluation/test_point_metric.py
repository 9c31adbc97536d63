"""PointClsMetric and PointSegMetric against hand-computed cases and a plain-loop confusion
matrix; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionfm.evaluation import PointClsMetric, PointSegMetric
from visionfm.registry import METRICS


def _run(metric, samples: list[dict]) -> dict:
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_cls_metric_hand_computed():
    # gt 0,0,0,1,2 ; pred 0,0,1,1,0 -> OA 3/5; per class 2/3, 1/1, 0/1 -> mAcc 5/9
    gt, pred = [0, 0, 0, 1, 2], [0, 0, 1, 1, 0]
    metric = PointClsMetric()
    metric.dataset_meta = dict(classes=("a", "b", "c", "d"))  # d absent: not in the mean
    out = _run(
        metric,
        [
            dict(gt_label=torch.tensor(g), pred_label=torch.tensor(p), file=f"{i}.txt")
            for i, (g, p) in enumerate(zip(gt, pred, strict=True))
        ],
    )
    assert out == {"cls/acc": 0.6, "cls/mAcc": round(5 / 9, 4)}


def _confusion(pred: np.ndarray, gt: np.ndarray, k: int, ignore: int) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    for p, g in zip(pred, gt, strict=True):
        if g != ignore:
            cm[g, p] += 1
    return cm


def test_seg_metric_hand_computed_and_ignores_minus_one():
    # class 0: gt {0,1}, pred {0}; class 1: gt {2,3}, pred {1,2,3}; point 4 ignored
    gt = torch.tensor([0, 0, 1, 1, -1])
    pred = torch.tensor([0, 1, 1, 1, 0])
    metric = METRICS.build(dict(type="PointSegMetric", num_classes=2))
    out = _run(metric, [dict(gt_segment=gt, pred_segment=pred)])
    # IoU0 = 1 / (1 + 2 - 1) = 0.5, IoU1 = 2 / (3 + 2 - 2) = 2/3; Acc 1/2, 2/2; allAcc 3/4
    assert out == {
        "seg/mIoU": round((0.5 + 2 / 3) / 2, 4),
        "seg/mAcc": 0.75,
        "seg/allAcc": 0.75,
    }


def test_seg_metric_matches_a_confusion_matrix_loop():
    rng = np.random.default_rng(0)
    k, samples, cm = 5, [], np.zeros((5, 5), np.int64)
    for n in (100, 37, 250):
        gt = rng.integers(-1, k, n)
        pred = np.where(rng.random(n) < 0.6, np.maximum(gt, 0), rng.integers(0, k, n))
        cm += _confusion(pred, gt, k, -1)
        samples.append(dict(gt_segment=torch.from_numpy(gt), pred_segment=torch.from_numpy(pred)))
    metric = PointSegMetric(num_classes=k)
    out = _run(metric, samples)
    inter = np.diag(cm)
    iou = inter / (cm.sum(0) + cm.sum(1) - inter)
    assert out["seg/mIoU"] == pytest.approx(iou.mean(), abs=1e-4)
    assert out["seg/mAcc"] == pytest.approx((inter / cm.sum(1)).mean(), abs=1e-4)
    assert out["seg/allAcc"] == pytest.approx(inter.sum() / cm.sum(), abs=1e-4)


def test_seg_metric_logs_per_class_iou(logs):
    metric = PointSegMetric(num_classes=2, classwise=True)
    metric.dataset_meta = dict(classes=("floor", "wall"))
    _run(metric, [dict(gt_segment=torch.tensor([0, 1]), pred_segment=torch.tensor([0, 0]))])
    table = next(m for m in logs if "per-class" in m)
    assert "floor" in table and "wall" in table and "0.5000" in table


def test_bad_input_is_named():
    metric = PointSegMetric(num_classes=2)
    with pytest.raises(ValueError, match=r"scene_3\.ply.*\(4,\) predictions for \(3,\)"):
        metric.process(
            {},
            [
                dict(
                    gt_segment=torch.zeros(3),
                    pred_segment=torch.zeros(4, dtype=torch.long),
                    file="scene_3.ply",
                )
            ],
        )
    with pytest.raises(ValueError, match=r"s\.ply: labels outside 0\.\.1 \(ground truth \[7\]"):
        metric.process(
            {},
            [
                dict(
                    gt_segment=torch.tensor([7, 0]), pred_segment=torch.tensor([0, 0]), file="s.ply"
                )
            ],
        )
    with pytest.raises(KeyError, match="pred_label"):
        PointClsMetric().process({}, [dict(gt_label=torch.tensor(0))])
    cls = PointClsMetric(num_classes=2)
    cls.process({}, [dict(gt_label=torch.tensor(5), pred_label=torch.tensor(0))])
    with pytest.raises(ValueError, match="outside 0..1"):
        cls.compute_metrics(cls.results)
