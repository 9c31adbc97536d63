"""CocoKeypointMetric against pycocotools' COCOeval run by hand, plus its rescoring and
OKS-NMS."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionfm.data import DataSample
from visionfm.data.datasets.coco_keypoints import COCO_KEYPOINT_NAMES, COCO_SIGMAS
from visionfm.evaluation import CocoKeypointMetric
from visionfm.evaluation.keypoint_metric import oks, oks_nms

K = 17


def _person(rng, ann_id: int, image_id: int, x0: float, y0: float, scale: float) -> dict:
    xy = rng.uniform(0, 1, (K, 2)) * [0.5 * scale, scale] + [x0, y0]
    vis = np.full(K, 2)
    vis[rng.choice(K, 3, replace=False)] = 0  # some unlabelled keypoints
    kps = np.concatenate([xy, vis[:, None]], 1)
    kps[vis == 0] = 0
    return dict(
        id=ann_id, image_id=image_id, category_id=1, iscrowd=0, num_keypoints=int((vis > 0).sum()),
        keypoints=kps.reshape(-1).tolist(), bbox=[x0, y0, 0.5 * scale, scale],
        area=0.3 * scale * scale,
    )  # fmt: skip


@pytest.fixture
def gt_file(tmp_path):
    rng = np.random.default_rng(0)
    coco = dict(
        images=[dict(id=1, width=200, height=150), dict(id=2, width=160, height=120)],
        categories=[
            dict(id=1, name="person", keypoints=list(COCO_KEYPOINT_NAMES), skeleton=[[1, 2]]),
            dict(id=2, name="ball"),
        ],
        annotations=[
            _person(rng, 1, 1, 10, 10, 100),
            _person(rng, 2, 1, 110, 30, 80),
            _person(rng, 3, 2, 40, 20, 90),
            dict(id=4, image_id=2, category_id=2, iscrowd=0, bbox=[5, 5, 10, 10], area=100),
        ],
    )
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(coco))
    return path, coco


def _samples(coco: dict, shift: float = 0.0, seed: int = 1) -> list[DataSample]:
    """One top-down sample per ground-truth person, keypoints moved by up to ``shift`` px."""
    rng = np.random.default_rng(seed)
    samples = []
    for i, ann in enumerate(a for a in coco["annotations"] if "keypoints" in a):
        kps = np.asarray(ann["keypoints"], np.float64).reshape(K, 3).copy()
        kps[:, :2] += rng.uniform(-shift, shift, (K, 2))
        kps[:, 2] = rng.uniform(0.5, 1.0, K)
        x, y, w, h = ann["bbox"]
        sample = DataSample(metainfo=dict(img_id=ann["image_id"], id=i))
        sample.pred_instances = InstanceData(
            keypoints=torch.from_numpy(kps)[None],
            bboxes=torch.tensor([[x, y, x + w, y + h]]),
            scores=torch.tensor([0.5 + 0.1 * i]),
            labels=torch.zeros(1, dtype=torch.long),
        )
        samples.append(sample)
    return samples


def _evaluate(metric: CocoKeypointMetric, samples) -> dict[str, float]:
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)


def _by_hand(path, entries) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        ev = COCOeval(gt, gt.loadRes(entries), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.array(COCO_SIGMAS)
        ev.params.catIds = [1]
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats


def test_perfect_predictions_score_one(gt_file):
    path, coco = gt_file
    metrics = _evaluate(CocoKeypointMetric(str(path)), _samples(coco))
    assert metrics["kpt_AP"] == pytest.approx(1.0) and metrics["kpt_AR"] == pytest.approx(1.0)


def test_shifted_predictions_match_cocoeval_by_hand(gt_file):
    path, coco = gt_file
    samples = _samples(coco, shift=6.0)
    metric = CocoKeypointMetric(str(path), score_mode="bbox", nms_thr=None)
    metrics = _evaluate(metric, samples)
    entries = [
        dict(image_id=s.img_id, category_id=1, score=float(s.pred_instances.scores[0]),
             keypoints=s.pred_instances.keypoints[0].reshape(-1).tolist())
        for s in samples
    ]  # fmt: skip
    stats = _by_hand(path, entries)
    assert 0.0 < metrics["kpt_AP"] < 1.0
    names = ["AP", "AP_50", "AP_75", "AP_m", "AP_l", "AR", "AR_50", "AR_75", "AR_m", "AR_l"]
    assert [metrics[f"kpt_{n}"] for n in names] == pytest.approx(np.round(stats, 4).tolist())


def test_unprocessed_images_count_as_misses(gt_file):
    path, coco = gt_file
    only_first = [s for s in _samples(coco) if s.img_id == 1]
    assert _evaluate(CocoKeypointMetric(str(path)), only_first)["kpt_AR"] == pytest.approx(
        2 / 3, abs=1e-3
    )
    processed = CocoKeypointMetric(str(path), img_ids="processed")
    assert _evaluate(processed, only_first)["kpt_AP"] == pytest.approx(1.0)


def test_rescoring_uses_confident_keypoints_only(gt_file):
    path, coco = gt_file
    sample = _samples(coco)[0]
    conf = torch.full((K,), 0.1, dtype=torch.float64)
    conf[:4] = torch.tensor([0.5, 0.7, 0.9, 0.3], dtype=torch.float64)
    sample.pred_instances.keypoints[0, :, 2] = conf
    metric = CocoKeypointMetric(str(path), keypoint_score_thr=0.2)
    metric.process({}, [sample])
    (entry,) = metric.entries(metric.results)
    assert entry["score"] == pytest.approx(0.5 * np.mean([0.5, 0.7, 0.9, 0.3]))


def test_oks_nms_drops_duplicates(gt_file):
    path, coco = gt_file
    samples = _samples(coco)
    duplicate = _samples(coco, shift=0.5, seed=3)[0]
    duplicate.set_metainfo(dict(id=99))
    duplicate.pred_instances.scores = torch.tensor([0.1])
    metric = CocoKeypointMetric(str(path))
    metric.process({}, samples + [duplicate])
    assert len(metric.entries(metric.results)) == len(samples)
    assert _evaluate(CocoKeypointMetric(str(path)), samples + [duplicate])["kpt_AP"] == 1.0


def test_oks_of_identical_keypoints_is_one():
    kps = np.random.default_rng(0).uniform(0, 50, (K, 3))
    assert oks(kps, kps[None], 100.0, np.array([100.0]), COCO_SIGMAS)[0] == pytest.approx(1.0)
    far = kps + [30.0, 0.0, 0.0]
    keep = oks_nms(
        np.stack([kps, kps + 0.1, far]),
        np.array([0.9, 0.8, 0.7]),
        np.full(3, 900.0),
        0.9,
        COCO_SIGMAS,
    )
    assert keep == [0, 2]


def test_full_image_samples_keep_the_person_label(gt_file):
    """A multi-head model's sample: all instances of an image, only 'person' ones evaluated."""
    path, coco = gt_file
    samples = _samples(coco)
    first = [s for s in samples if s.img_id == 1]
    image = DataSample(metainfo=dict(img_id=1))
    pred = InstanceData.cat([s.pred_instances for s in first])
    pred.labels = torch.ones(len(pred), dtype=torch.long)  # person is label 1 below
    junk = InstanceData(
        keypoints=torch.rand(1, K, 3, dtype=torch.float64) * 100, bboxes=torch.tensor([[0.0, 0, 9, 9]]),
        scores=torch.ones(1), labels=torch.zeros(1, dtype=torch.long),
    )  # fmt: skip
    image.pred_instances = InstanceData.cat([pred, junk])
    metric = CocoKeypointMetric(str(path), img_ids="processed")
    metric.dataset_meta = dict(classes=("ball", "person"))
    metric.process({}, [image])
    assert len(metric.entries(metric.results)) == 2


def test_needs_sigmas_for_other_skeletons(tmp_path):
    coco = dict(
        images=[dict(id=1, width=50, height=50)],
        categories=[dict(id=1, name="hand", keypoints=["a", "b", "c"])],
        annotations=[dict(id=1, image_id=1, category_id=1, keypoints=[1, 1, 2] * 3, bbox=[0, 0, 5, 5], area=25)],
    )  # fmt: skip
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(coco))
    sample = DataSample(metainfo=dict(img_id=1))
    sample.pred_instances = InstanceData(
        keypoints=torch.ones(1, 3, 3), bboxes=torch.tensor([[0.0, 0, 5, 5]]), scores=torch.ones(1)
    )
    with pytest.raises(ValueError, match="sigmas"):
        _evaluate(CocoKeypointMetric(str(path)), [sample])
    metrics = _evaluate(CocoKeypointMetric(str(path), sigmas=[0.05] * 3), [sample])
    assert metrics["kpt_AP"] == pytest.approx(1.0)
