"""PanopticMetric: hand-computed PQ cases (IoU threshold, void, crowd, stuff), random images
against an independent numpy reference written segment pair by segment pair, the ann-file
path (COCO panoptic json + PNGs) against the sample path, and de-duplication of repeated
images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR as DIV
from visionfm.data.data_sample import DataSample
from visionfm.data.files import id_to_rgb
from visionfm.evaluation import PanopticMetric
from visionfm.evaluation.panoptic_metric import panoptic_stats, pq_summary, split_panoptic
from visionfm.registry import METRICS

CLASSES = ("cat", "dog", "sky", "grass")  # things 0, 1; stuff 2, 3
THINGS = ("cat", "dog")
H, W = 20, 30


def pan_map(segments, shape=(H, W)) -> np.ndarray:
    """[(label, instance, mask)] -> (H, W) label * DIV + instance, -1 void."""
    pan = np.full(shape, -1, np.int64)
    for label, inst, mask in segments:
        pan[mask] = label * DIV + inst
    return pan


def box(y0, y1, x0, x1, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def run(gt_segments, pred, ignored=(), classes=CLASSES, things=THINGS, **kwargs) -> dict:
    """One image through the sample path: gt [(label, mask)], crowd [(label, mask)]."""
    metric = PanopticMetric(**kwargs)
    metric.dataset_meta = dict(classes=classes, thing_classes=things)
    sample = dict(
        img_id=1,
        ori_shape=(H, W),
        pred_panoptic_seg=torch.as_tensor(pred),
        gt_instances=dict(
            labels=torch.tensor([lab for lab, _ in gt_segments], dtype=torch.long),
            masks=torch.as_tensor(np.array([m for _, m in gt_segments]).reshape(-1, H, W)),
        ),
        ignored_instances=dict(
            labels=torch.tensor([lab for lab, _ in ignored], dtype=torch.long),
            masks=torch.as_tensor(np.array([m for _, m in ignored]).reshape(-1, H, W)),
        ),
    )
    metric.process({}, [sample])
    return metric.compute_metrics(metric.results)


# ---------------------------------------------------------------- hand-computed cases


def test_perfect_prediction_is_one():
    cat, sky = box(2, 8, 2, 10), ~box(2, 8, 2, 10)
    m = run([(0, cat), (2, sky)], pan_map([(0, 1, cat), (2, 0, sky)]))
    assert m["PQ"] == m["SQ"] == m["RQ"] == 1.0
    assert m["PQ_th"] == m["PQ_st"] == 1.0


def test_iou_threshold_false_positive_and_negative():
    """cat: IoU 84 / 100 -> TP; sky: IoU 120 / 300 = 0.4 -> FP + FN."""
    cat_gt = box(0, 10, 0, 10)
    cat_pr = box(0, 10, 0, 6) | box(0, 6, 6, 10)  # 60 + 24 = 84 px, all inside the GT box
    iou_cat = 84 / 100
    sky_gt = box(10, 20, 0, 30)  # 300 px
    sky_pr = box(16, 20, 0, 30)  # 120 px inside: IoU 0.4
    m = run([(0, cat_gt), (2, sky_gt)], pan_map([(0, 1, cat_pr), (2, 0, sky_pr)]))
    assert m["PQ_th"] == pytest.approx(round(iou_cat, 4))
    assert m["SQ_th"] == pytest.approx(round(iou_cat, 4)) and m["RQ_th"] == 1.0
    assert m["PQ_st"] == 0.0 and m["RQ_st"] == 0.0 and m["SQ_st"] == 0.0
    assert m["PQ"] == pytest.approx(round(iou_cat / 2, 4))


def test_exactly_half_iou_is_not_a_match():
    gt, pr = box(0, 10, 0, 10), box(0, 10, 0, 5)  # inter 50, union 100: IoU exactly 0.5
    m = run([(0, gt)], pan_map([(0, 1, pr)]))
    assert m["PQ"] == 0.0 and m["RQ"] == 0.0  # one FP and one FN


def test_void_pixels_leave_the_union():
    """Half the prediction lies on void ground truth: those pixels are not in the union."""
    gt = box(0, 10, 0, 10)  # 100 px; everything else is void (not annotated)
    pr = box(0, 10, 0, 10) | box(0, 10, 10, 20)  # 100 on the cat + 100 on void
    m = run([(0, gt)], pan_map([(0, 1, pr)]))
    assert m["PQ"] == 1.0  # IoU = 100 / (200 + 100 - 100 - 100) = 1


def test_prediction_mostly_on_void_or_crowd_is_not_a_false_positive():
    cat = box(0, 10, 0, 10)
    crowd = box(10, 20, 0, 30)
    on_crowd = box(12, 18, 2, 12)  # a second cat, inside the crowd region
    m = run([(0, cat)], pan_map([(0, 1, cat), (0, 2, on_crowd)]), ignored=[(0, crowd)])
    assert m["PQ"] == 1.0  # no FP, and the crowd is never a FN
    # on a crowd region of ANOTHER class it is a false positive
    m = run([(0, cat)], pan_map([(0, 1, cat), (0, 2, on_crowd)]), ignored=[(1, crowd)])
    assert m["RQ_th"] == pytest.approx(round(1 / 1.5, 4))  # cat: TP 1, FP 1 -> 1 / 1.5
    # and one mostly on void (nothing annotated) is ignored
    m = run([(0, cat)], pan_map([(0, 1, cat), (1, 1, on_crowd)]))
    assert m["PQ"] == 1.0


def test_groups_without_classes_report_minus_one():
    cat = box(0, 10, 0, 10)
    m = run([(0, cat)], pan_map([(0, 1, cat)]))
    assert m["PQ_th"] == 1.0 and m["PQ_st"] == -1.0 and m["PQ"] == 1.0


# ---------------------------------------------------------------- random vs reference


def reference_stats(gt_ids, gt_segments, pred_ids, pred_labels, num_classes) -> np.ndarray:
    """panopticapi's rules written segment pair by segment pair with boolean masks."""
    stats = np.zeros((num_classes, 4))
    void = ~np.isin(gt_ids, list(gt_segments))
    matched_gt, matched_pred = set(), set()
    for p, plabel in pred_labels.items():
        pm = pred_ids == p
        for g, (glabel, crowd) in gt_segments.items():
            gm = gt_ids == g
            if crowd or glabel != plabel or not gm.any():
                continue
            inter = (pm & gm).sum()
            union = (pm | gm).sum() - (pm & void).sum()
            if inter / union > 0.5:
                stats[glabel] += [1, 0, 0, inter / union]
                matched_gt.add(g)
                matched_pred.add(p)
    for g, (glabel, crowd) in gt_segments.items():
        if not crowd and g not in matched_gt and (gt_ids == g).any():
            stats[glabel, 2] += 1
    for p, plabel in pred_labels.items():
        pm = pred_ids == p
        if p in matched_pred or not pm.any():
            continue
        crowd = np.zeros_like(pm)
        for g, (glabel, is_crowd) in gt_segments.items():
            if is_crowd and glabel == plabel:
                crowd |= gt_ids == g
        if ((pm & void).sum() + (pm & crowd).sum()) / pm.sum() > 0.5:
            continue
        stats[plabel, 1] += 1
    return stats


def random_image(rng, num_classes=4):
    """Blocky random ground truth (with void and crowd) and a perturbed prediction."""
    shape = (24, 32)
    gt_ids = np.kron(rng.integers(0, 7, (6, 8)), np.ones((4, 4), np.int64))
    segments = {
        g: (int(rng.integers(0, num_classes)), bool(rng.random() < 0.15)) for g in range(1, 7)
    }
    pred_ids = gt_ids.copy()
    noise = rng.random(shape) < 0.25
    pred_ids[noise] = rng.integers(0, 9, noise.sum())
    labels = {p: (segments[p][0] if p in segments and rng.random() < 0.8 else int(rng.integers(0, num_classes)))
              for p in range(1, 9)}  # fmt: skip
    return gt_ids, segments, pred_ids, labels


def test_random_images_match_the_reference():
    rng = np.random.default_rng(0)
    total_ref = np.zeros((4, 4))
    total = np.zeros((4, 4))
    for _ in range(30):
        gt_ids, segments, pred_ids, labels = random_image(rng)
        labels = {p: lab for p, lab in labels.items() if (pred_ids == p).any()}
        ours = panoptic_stats(gt_ids, segments, pred_ids, labels, 4)
        ref = reference_stats(gt_ids, segments, pred_ids, labels, 4)
        np.testing.assert_allclose(ours, ref)
        total += ours
        total_ref += ref
    assert total[:, 0].sum() > 10 and total[:, 1].sum() > 10  # matches and mistakes both occur
    summary = pq_summary(total, [True, True, False, False])
    tp, fp, fn, iou = total_ref.T
    pq = iou / (tp + fp / 2 + fn / 2)
    assert summary["all"]["pq"] == pytest.approx(pq.mean())
    assert summary["things"]["pq"] == pytest.approx(pq[:2].mean())
    assert summary["stuff"]["rq"] == pytest.approx((tp / (tp + fp / 2 + fn / 2))[2:].mean())


def test_split_panoptic_encodes_void_and_labels():
    pan = np.array([[-1, 2 * DIV + 0, 2 * DIV], [1 * DIV + 3, 1 * DIV + 3, 1 * DIV + 4]])
    ids, labels = split_panoptic(pan)
    assert ids[0, 0] == 0 and len(set(ids[ids > 0].tolist())) == 3
    assert sorted(labels.values()) == [1, 1, 2]
    assert labels[ids[1, 0]] == 1 and labels[ids[0, 1]] == 2
    with pytest.raises(ValueError, match=">= -1"):
        split_panoptic(np.array([[-2]]))


# ---------------------------------------------------------------- ann file path


@pytest.fixture
def panoptic_files(tmp_path):
    """Two images in COCO panoptic format: categories with non-contiguous ids, stuff id
    below the things', a crowd segment and void pixels."""
    categories = [
        dict(id=1, name="sky", isthing=0),
        dict(id=5, name="cat", isthing=1),
        dict(id=9, name="dog", isthing=1),
        dict(id=12, name="grass", isthing=0),
    ]
    rng = np.random.default_rng(1)
    images, annotations, gts = [], [], {}
    (tmp_path / "pan").mkdir()
    for img_id in (3, 7):
        gt_ids, segments, _, _ = random_image(rng)
        label_cat = {0: 5, 1: 9, 2: 1, 3: 12}  # label order: cat, dog, sky, grass
        seg_ids = {g: g * 1000 + 17 for g in segments}
        png = np.zeros(gt_ids.shape, np.int64)
        for g in segments:
            png[gt_ids == g] = seg_ids[g]
        cv2.imwrite(str(tmp_path / "pan" / f"{img_id}.png"), id_to_rgb(png)[:, :, ::-1])
        images.append(dict(id=img_id, file_name=f"{img_id}.jpg", height=24, width=32))
        info = [
            dict(id=seg_ids[g], category_id=label_cat[lab], iscrowd=int(crowd))
            for g, (lab, crowd) in segments.items()
            if (gt_ids == g).any()
        ]
        annotations.append(dict(image_id=img_id, file_name=f"{img_id}.png", segments_info=info))
        gts[img_id] = (gt_ids, segments)
    path = tmp_path / "panoptic.json"
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return str(path), str(tmp_path / "pan"), gts


def test_ann_file_path_equals_the_reference(panoptic_files):
    path, prefix, gts = panoptic_files
    rng = np.random.default_rng(5)
    metric = PanopticMetric(ann_file=path, seg_prefix=prefix, classwise=True)
    metric.dataset_meta = dict(classes=("cat", "dog", "sky", "grass"))
    total = np.zeros((4, 4))
    for img_id, (gt_ids, segments) in gts.items():
        _, _, pred_ids, labels = random_image(rng)
        pred = np.full(gt_ids.shape, -1, np.int64)
        for p, lab in labels.items():
            pred[pred_ids == p] = lab * DIV + p
        sample = DataSample(metainfo=dict(img_id=img_id))
        sample.pred_panoptic_seg = torch.as_tensor(pred)
        metric.process({}, [sample.to_dict()])
        metric.process({}, [sample.to_dict()])  # a padded sampler repeats an image
        present = {p: lab for p, lab in labels.items() if (pred_ids == p).any()}
        total += reference_stats(gt_ids, segments, pred_ids, present, 4)
    assert all(r["stats"].shape == (4, 4) for r in metric.results)  # small per-image results
    out = metric.compute_metrics(metric.results)
    summary = pq_summary(total, [True, True, False, False])
    assert out["PQ"] == pytest.approx(round(summary["all"]["pq"], 4))
    assert out["SQ_th"] == pytest.approx(round(summary["things"]["sq"], 4))
    assert out["RQ_st"] == pytest.approx(round(summary["stuff"]["rq"], 4))
    assert "PQ_cat" in out or "PQ_dog" in out


def test_through_mmengine_evaluator_and_errors(panoptic_files):
    path, prefix, gts = panoptic_files
    evaluator = Evaluator(
        METRICS.build(dict(type="PanopticMetric", ann_file=path, seg_prefix=prefix))
    )
    evaluator.dataset_meta = dict(classes=("cat", "dog", "sky", "grass"))
    samples = []
    for img_id, (gt_ids, segments) in gts.items():
        pred = np.full(gt_ids.shape, -1, np.int64)
        for g, (lab, crowd) in segments.items():
            if not crowd:
                pred[gt_ids == g] = lab * DIV + g
        sample = DataSample(metainfo=dict(img_id=img_id))
        sample.pred_panoptic_seg = torch.as_tensor(pred)
        samples.append(sample)
    evaluator.process(samples)
    out = evaluator.evaluate(len(samples))
    assert out["coco_panoptic/PQ"] == 1.0
    metric = PanopticMetric(ann_file=path, seg_prefix=prefix)
    metric.dataset_meta = dict(classes=("cat", "dog", "sky", "grass"))
    small = DataSample(metainfo=dict(img_id=3))
    small.pred_panoptic_seg = torch.full((5, 5), -1)
    with pytest.raises(ValueError, match="original"):
        metric.process({}, [small.to_dict()])
    small.pred_panoptic_seg = torch.full((24, 32), 9 * DIV)
    with pytest.raises(ValueError, match="outside"):
        metric.process({}, [small.to_dict()])
    with pytest.raises(FileNotFoundError):
        PanopticMetric(ann_file=path + ".missing")
