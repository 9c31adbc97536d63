"""DepthMetric against a hand case and an independent per-pixel reference, with crops,
invalid pixels, the depth range, per-image averaging, alignment and its error messages."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from visionfm.data import DataSample
from visionfm.evaluation import DepthMetric
from visionfm.registry import METRICS


def _sample(gt: np.ndarray, pred: np.ndarray, name: str = "a.png", **fields) -> DataSample:
    h, w = gt.shape
    sample = DataSample(metainfo=dict(img_path=name, img_shape=(h, w), ori_shape=(h, w)))
    sample.gt_depth = torch.from_numpy(gt.astype(np.float32))
    sample.pred_depth = torch.from_numpy(pred.astype(np.float32))
    for key, value in fields.items():
        setattr(sample, key, value)
    return sample


def _run(metric: DepthMetric, samples: list) -> dict:
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def reference(gts, preds, lo, hi, boxes) -> dict:
    """Plain loops over pixels; ``boxes``: per image (top, bottom, left, right) pixels."""
    per_image = []
    for gt, pred, (t, b, left, r) in zip(gts, preds, boxes):
        pairs = []
        for i in range(t, b):
            for j in range(left, r):
                g = float(gt[i, j])
                if lo < g < hi:
                    p = min(max(float(pred[i, j]), lo), hi)
                    pairs.append((g, p))
        n = len(pairs)
        e = [math.log(p) - math.log(g) for g, p in pairs]
        mean_e = sum(e) / n
        res = dict(
            abs_rel=sum(abs(g - p) / g for g, p in pairs) / n,
            sq_rel=sum((g - p) ** 2 / g for g, p in pairs) / n,
            rmse=math.sqrt(sum((g - p) ** 2 for g, p in pairs) / n),
            rmse_log=math.sqrt(sum(x * x for x in e) / n),
            log10=sum(abs(math.log10(g) - math.log10(p)) for g, p in pairs) / n,
            silog=100 * math.sqrt(sum(x * x for x in e) / n - mean_e**2),
        )
        for k, th in (("d1", 1.25), ("d2", 1.25**2), ("d3", 1.25**3)):
            res[k] = sum(max(g / p, p / g) < th for g, p in pairs) / n
        per_image.append(res)
    return {k: sum(r[k] for r in per_image) / len(per_image) for k in per_image[0]}


def test_hand_case():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]])  # the 0 is missing ground truth
    pred = np.array([[1.0, 1.0], [5.0, 3.0]])
    got = _run(DepthMetric(), [_sample(gt, pred)])
    expected = dict(
        abs_rel=0.25, sq_rel=0.25, rmse=math.sqrt(2 / 3),
        rmse_log=math.sqrt((math.log(2) ** 2 + math.log(1.25) ** 2) / 3),
        log10=(math.log10(2) + math.log10(1.25)) / 3, d1=1 / 3, d2=2 / 3, d3=2 / 3,
    )  # fmt: skip
    for key, value in expected.items():
        assert got[f"depth/{key}"] == pytest.approx(value, abs=1e-4), key


@pytest.mark.parametrize(
    "crop, shape, box",
    [("nyu", (480, 640), (45, 471, 41, 601)), ("garg", (375, 1242), (153, 371, 44, 1197)),
     ("eigen", (375, 1242), (124, 342, 44, 1197)), (None, (30, 40), (0, 30, 0, 40))],
)  # fmt: skip
def test_matches_an_independent_reference(crop, shape, box):
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for _ in range(2):
        gt = rng.uniform(0.2, 12.0, shape)  # some beyond max_depth=10
        gt[rng.random(shape) < 0.6] = 0  # sparse, as KITTI
        pred = gt * rng.uniform(0.7, 1.4, shape) + rng.normal(0, 0.3, shape)
        pred[0, 0] = -1.0  # clamped to min_depth
        gts.append(gt.astype(np.float32))
        preds.append(pred.astype(np.float32))
    metric = DepthMetric(eval_crop=crop or "none", min_depth=0.5, max_depth=10.0)
    got = _run(metric, [_sample(g, p, f"{i}.png") for i, (g, p) in enumerate(zip(gts, preds))])
    # the reference sees the float32 values the metric sees
    expected = reference(
        [g.astype(np.float64) for g in gts],
        [p.astype(np.float64) for p in preds],
        0.5,
        10.0,
        [box] * 2,
    )
    for key, value in expected.items():
        assert got[f"depth/{key}"] == pytest.approx(value, abs=1e-4), key


def test_images_are_averaged_not_pixels_and_repeats_dropped():
    a = _sample(np.full((2, 2), 2.0), np.full((2, 2), 1.0), "a.png")  # abs_rel 0.5, 4 pixels
    gt_b = np.zeros((4, 4))
    gt_b[0, 0] = 2.0
    b = _sample(gt_b, np.full((4, 4), 2.0), "b.png")  # abs_rel 0, 1 pixel
    again = _sample(np.full((2, 2), 2.0), np.full((2, 2), 1.0), "a.png")
    got = _run(DepthMetric(), [a, b, again])
    assert got["depth/abs_rel"] == pytest.approx(0.25)  # pooled would be 0.4


def test_reads_the_original_ground_truth_from_depth_path(tmp_path):
    raw = np.array([[0, 256 * 5], [256 * 20, 256 * 40]], np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), raw)
    sample = DataSample(
        metainfo=dict(img_path="x.png", depth_path=str(tmp_path / "d.png"), depth_scale=256.0,
                      img_shape=(4, 4), ori_shape=(2, 2), flip=True)
    )  # fmt: skip
    sample.pred_depth = torch.tensor([[1.0, 5.0], [20.0, 20.0]])
    got = _run(DepthMetric(max_depth=80.0), [sample])
    assert got["depth/abs_rel"] == pytest.approx(0.5 / 3, abs=1e-4)


def test_dataset_meta_supplies_range_and_crop():
    gt = np.full((480, 640), 5.0)
    pred = np.full((480, 640), 5.0)
    pred[:45] = 50.0  # outside Eigen's NYU crop
    metric = METRICS.build(dict(type="DepthMetric"))
    metric.dataset_meta = dict(eval_crop="nyu", min_depth=1e-3, max_depth=10.0)
    assert _run(metric, [_sample(gt, pred)])["depth/abs_rel"] == 0.0
    metric = DepthMetric(eval_crop="none")  # an explicit setting wins
    metric.dataset_meta = dict(eval_crop="nyu")
    assert _run(metric, [_sample(gt, pred)])["depth/abs_rel"] > 0.05


def test_alignment_for_relative_and_scale_ambiguous_predictions():
    gt = np.random.default_rng(1).uniform(1.0, 5.0, (8, 8))
    relative = DataSample(metainfo=dict(img_path="r", img_shape=(8, 8), ori_shape=(8, 8)))
    relative.gt_depth = torch.from_numpy(gt)
    relative.pred_disparity = torch.from_numpy(3.0 / gt + 0.25)
    got = _run(DepthMetric(align="scale_shift"), [relative])
    assert got["depth/abs_rel"] < 1e-6 and got["depth/d1"] == 1.0
    with pytest.raises(ValueError, match="align='scale_shift'"):
        DepthMetric().process({}, [relative])
    scaled = _sample(gt, 3.0 * gt)
    assert _run(DepthMetric(align="median"), [scaled])["depth/abs_rel"] < 1e-6
    assert _run(DepthMetric(), [_sample(gt, 1.5 * gt)])["depth/abs_rel"] == pytest.approx(0.5)


def test_actionable_errors():
    with pytest.raises(ValueError, match="at the original size"):
        DepthMetric().process({}, [_sample(np.ones((4, 4)), np.ones((2, 2)))])
    flipped = _sample(np.ones((4, 4)), np.ones((4, 4)))
    flipped.set_metainfo(dict(flip=True))
    with pytest.raises(KeyError, match="depth_path"):
        DepthMetric().process({}, [flipped])
    with pytest.raises(ValueError, match="align"):
        DepthMetric(align="affine")
    with pytest.raises(ValueError, match="eval_crop"):
        DepthMetric(eval_crop="kitti")
