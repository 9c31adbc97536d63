"""CocoMetric against pycocotools run by hand on the same data: perfect and imperfect
predictions, non-contiguous category ids, repeated samples, empty predictions, the results
json, ground truth taken from the samples instead of the ann file, and mask AP (segm) with
RLE / polygon ground truth against pycocotools."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import BaseDataElement, InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visionfm.evaluation import CocoMetric
from visionfm.evaluation import coco_metric as coco_metric_module
from visionfm.registry import METRICS

# Category ids are not contiguous and the dataset's class order differs from the id order.
CATEGORIES = [dict(id=3, name="circle"), dict(id=7, name="square"), dict(id=10, name="triangle")]
CLASSES = ("square", "triangle", "circle")  # label 0 -> id 7, 1 -> 10, 2 -> 3
NAME_TO_ID = {c["name"]: c["id"] for c in CATEGORIES}
H, W = 480, 640
IMAGE_IDS = [11, 12, 15, 20, 42]  # image 20 has no ground truth
AP_KEYS = ["bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l"]


def make_world(seed: int = 0) -> tuple[dict, dict]:
    """A COCO json dict and, per image id, its boxes (xyxy), labels and crowd flags.

    Boxes of all three COCO size ranges; image 15 also has a crowd region."""
    rng = np.random.default_rng(seed)
    images = [dict(id=i, file_name=f"{i}.jpg", height=H, width=W) for i in IMAGE_IDS]
    annotations, gt = [], {}
    for img_id in IMAGE_IDS:
        n = 0 if img_id == 20 else int(rng.integers(2, 5))
        sizes = rng.choice([12.0, 50.0, 150.0], size=n) * rng.uniform(0.8, 1.2, size=(2, n))
        x1 = rng.uniform(0, W - 200, size=n)
        y1 = rng.uniform(0, H - 200, size=n)
        boxes = np.stack([x1, y1, x1 + sizes[0], y1 + sizes[1]], 1).round(1).reshape(-1, 4)
        labels = rng.integers(0, 3, size=n)
        crowd = np.zeros(n, dtype=bool)
        if img_id == 15:
            boxes = np.concatenate([boxes, [[300.0, 200.0, 420.0, 300.0]]])
            labels = np.concatenate([labels, [1]])
            crowd = np.concatenate([crowd, [True]])
        gt[img_id] = dict(boxes=boxes, labels=labels, crowd=crowd)
        for box, label, is_crowd in zip(boxes, labels, crowd):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=img_id,
                    category_id=NAME_TO_ID[CLASSES[label]],
                    bbox=[float(box[0]), float(box[1]), float(w), float(h)],
                    area=float(w * h),
                    iscrowd=int(is_crowd),
                )
            )
    return dict(images=images, annotations=annotations, categories=CATEGORIES), gt


def perfect_predictions(gt: dict) -> dict:
    return {
        i: dict(
            boxes=g["boxes"][~g["crowd"]],
            labels=g["labels"][~g["crowd"]],
            scores=np.ones((~g["crowd"]).sum()),
        )
        for i, g in gt.items()
    }


def imperfect_predictions(gt: dict, seed: int = 1) -> dict:
    """Shifted boxes, some wrong labels, false positives (also on the image without GT)."""
    rng = np.random.default_rng(seed)
    preds = {}
    for img_id, g in gt.items():
        boxes = g["boxes"][~g["crowd"]] + rng.normal(0, 4, size=(int((~g["crowd"]).sum()), 4))
        labels = g["labels"][~g["crowd"]].copy()
        if len(labels):
            labels[0] = (labels[0] + 1) % 3
        fp = rng.uniform(0, 300, size=(2, 2))
        boxes = np.concatenate([boxes, np.concatenate([fp, fp + 40], 1)])
        labels = np.concatenate([labels, rng.integers(0, 3, size=2)])
        preds[img_id] = dict(boxes=boxes, labels=labels, scores=rng.uniform(0.05, 1, len(labels)))
    return preds


def make_samples(
    preds: dict, gt: dict | None = None, ori_shape: tuple[int, int] = (H, W)
) -> list[dict]:
    """Data samples as mmengine's Evaluator hands them to ``process`` (dicts of tensors);
    with masks where ``preds`` / ``gt`` hold them."""
    samples = []
    for img_id, p in preds.items():
        pred_instances = dict(
            bboxes=torch.as_tensor(p["boxes"], dtype=torch.float32).reshape(-1, 4),
            scores=torch.as_tensor(p["scores"], dtype=torch.float32),
            labels=torch.as_tensor(p["labels"], dtype=torch.long),
        )
        if "masks" in p:
            pred_instances["masks"] = torch.as_tensor(p["masks"])
        sample = dict(img_id=img_id, ori_shape=ori_shape, pred_instances=pred_instances)
        if gt is not None:
            g = gt[img_id]
            for key, keep in (("gt_instances", ~g["crowd"]), ("ignored_instances", g["crowd"])):
                sample[key] = dict(
                    bboxes=torch.as_tensor(g["boxes"][keep], dtype=torch.float32).reshape(-1, 4),
                    labels=torch.as_tensor(g["labels"][keep], dtype=torch.long),
                )
                if "masks" in g:
                    sample[key]["masks"] = torch.as_tensor(g["masks"][keep])
        samples.append(sample)
    return samples


def run_metric(samples: list[dict], classes=CLASSES, batch_size: int = 2, **kwargs) -> dict:
    metric = CocoMetric(**kwargs)
    metric.dataset_meta = dict(classes=classes)
    for start in range(0, len(samples), batch_size):
        metric.process({}, samples[start : start + batch_size])
    return metric.compute_metrics(metric.results)


def cocoeval_stats(ann_path: str, results: list[dict] | str, iou_type: str) -> np.ndarray:
    """pycocotools' own COCOeval ('bbox' or 'segm') of ``results`` (a list or a json path)
    against the json at ``ann_path``: its 12 summary stats."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(ann_path)
        evaluator = COCOeval(coco, coco.loadRes(results), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def pycocotools_by_hand(ann_path: str, preds: dict, iou_type: str = "bbox") -> np.ndarray:
    """COCOeval stats ('bbox': xyxy ``boxes``, 'segm': ``masks``) computed directly from the
    json and the predictions."""
    results = []
    for img_id, p in preds.items():
        for i, (label, score) in enumerate(zip(p["labels"], np.float32(p["scores"]))):
            result = dict(image_id=img_id, category_id=NAME_TO_ID[CLASSES[int(label)]])
            if iou_type == "segm":
                result["segmentation"] = _rle(p["masks"][i])
            else:
                x1, y1, x2, y2 = np.asarray(p["boxes"][i], dtype=np.float32)
                result["bbox"] = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
            results.append(dict(result, score=float(score)))
    return cocoeval_stats(ann_path, results, iou_type)


def written(path, world: tuple[dict, dict]) -> tuple[str, dict]:
    """Write the json of a ``make_world`` / ``make_mask_world`` result to ``path``; return
    the path (str) and the per-image ground truth."""
    data, gt = world
    path.write_text(json.dumps(data))
    return str(path), gt


@pytest.fixture
def world(tmp_path):
    return written(tmp_path / "instances.json", make_world())


def test_perfect_predictions_give_ap_one(world):
    ann_path, gt = world
    metrics = run_metric(make_samples(perfect_predictions(gt)), ann_file=ann_path)
    for key in AP_KEYS:
        assert metrics[key] == 1.0, (key, metrics)
    assert metrics["bbox_AR@100"] == 1.0


def test_imperfect_predictions_equal_pycocotools(world):
    ann_path, gt = world
    preds = imperfect_predictions(gt)
    metrics = run_metric(make_samples(preds), ann_file=ann_path)
    stats = pycocotools_by_hand(ann_path, preds)
    assert 0.05 < metrics["bbox_mAP"] < 0.95  # a case where mistakes matter
    for i, key in enumerate(AP_KEYS):
        assert metrics[key] == pytest.approx(round(stats[i], 4), abs=1e-4), key
    assert metrics["bbox_AR@1"] == pytest.approx(round(stats[6], 4), abs=1e-4)
    assert metrics["bbox_AR@10"] == pytest.approx(round(stats[7], 4), abs=1e-4)
    assert metrics["bbox_AR@100"] == pytest.approx(round(stats[8], 4), abs=1e-4)


def test_labels_map_to_non_contiguous_category_ids_by_name(world, tmp_path):
    ann_path, gt = world
    samples = make_samples(perfect_predictions(gt))
    prefix = str(tmp_path / "out" / "preds")
    run_metric(samples, ann_file=ann_path, outfile_prefix=prefix)
    entries = json.loads(open(prefix + ".bbox.json").read())
    pairs = {
        (int(label), e["category_id"])
        for s in samples
        for label, e in zip(
            s["pred_instances"]["labels"], [e for e in entries if e["image_id"] == s["img_id"]]
        )
    }
    assert pairs <= {(0, 7), (1, 10), (2, 3)} and len({p[0] for p in pairs}) == 3
    # the same predictions under classes in id order no longer match their categories
    wrong = run_metric(samples, classes=("circle", "square", "triangle"), ann_file=ann_path)
    assert wrong["bbox_mAP"] < 0.7


def test_only_processed_images_are_evaluated(world):
    ann_path, gt = world
    subset = {i: p for i, p in perfect_predictions(gt).items() if i in (11, 15, 20)}
    metrics = run_metric(make_samples(subset), ann_file=ann_path)
    assert metrics["bbox_mAP"] == 1.0 and metrics["bbox_AR@100"] == 1.0
    unknown = {99: subset[11]}
    with pytest.raises(ValueError, match=r"\[99\].*instances\.json"):
        run_metric(make_samples(unknown), ann_file=ann_path)


def test_class_missing_from_ann_file_is_a_clear_error(world):
    ann_path, gt = world
    with pytest.raises(ValueError, match=r"'hexagon'.*instances\.json"):
        run_metric(
            make_samples(perfect_predictions(gt)), classes=("square", "hexagon"), ann_file=ann_path
        )


def test_repeated_samples_counted_once(world):
    ann_path, gt = world
    preds = imperfect_predictions(gt)
    samples = make_samples(preds)
    once = run_metric(samples, ann_file=ann_path)
    # two processes, the second padded with repeats of the first images (as
    # DefaultSampler pads), gathered as collect_results would: rank 0's then rank 1's
    rank0, rank1 = CocoMetric(ann_file=ann_path), CocoMetric(ann_file=ann_path)
    rank0.process({}, samples[:3])
    rank1.process({}, samples[3:] + samples[:1])
    merged = CocoMetric(ann_file=ann_path)
    merged.dataset_meta = dict(classes=CLASSES)
    assert merged.compute_metrics(rank0.results + rank1.results) == once
    doubled = run_metric(samples + samples, ann_file=ann_path)
    assert doubled == once


def test_empty_predictions_give_zero(world):
    ann_path, gt = world
    empty = {i: dict(boxes=np.zeros((0, 4)), labels=np.zeros(0), scores=np.zeros(0)) for i in gt}
    metrics = run_metric(make_samples(empty), ann_file=ann_path)
    assert metrics["bbox_mAP"] == 0.0 and metrics["bbox_mAP_50"] == 0.0
    assert metrics["bbox_AR@100"] == 0.0
    from_samples = run_metric(make_samples(empty, gt))
    assert from_samples == metrics


def test_results_json_is_coco_results_format(world, tmp_path):
    ann_path, gt = world
    preds = imperfect_predictions(gt)
    prefix = str(tmp_path / "dump")
    assert (
        run_metric(make_samples(preds), ann_file=ann_path, outfile_prefix=prefix, format_only=True)
        == {}
    )
    entries = json.loads(open(prefix + ".bbox.json").read())
    assert isinstance(entries, list) and len(entries) == sum(
        len(p["labels"]) for p in preds.values()
    )
    for e in entries:
        assert set(e) == {"image_id", "category_id", "bbox", "score"}
        assert isinstance(e["image_id"], int) and e["category_id"] in NAME_TO_ID.values()
        assert len(e["bbox"]) == 4 and all(isinstance(v, float) for v in e["bbox"])
        assert e["bbox"][2] >= 0 and e["bbox"][3] >= 0
    from_json = cocoeval_stats(ann_path, prefix + ".bbox.json", "bbox")
    np.testing.assert_allclose(from_json, pycocotools_by_hand(ann_path, preds), atol=1e-6)
    with pytest.raises(ValueError, match="outfile_prefix"):
        CocoMetric(format_only=True)


def test_ground_truth_from_samples_matches_ann_file(world, tmp_path):
    ann_path, gt = world
    preds = imperfect_predictions(gt)
    with_file = run_metric(make_samples(preds), ann_file=ann_path)
    prefix = str(tmp_path / "fromsamples")
    without = run_metric(make_samples(preds, gt), outfile_prefix=prefix)
    assert without == with_file
    dumped = json.loads(open(prefix + ".gt.json").read())
    assert len(dumped["images"]) == len(IMAGE_IDS)
    assert sum(a["iscrowd"] for a in dumped["annotations"]) == 1
    with pytest.raises(KeyError, match="gt_instances"):
        run_metric(make_samples(preds))


def test_through_mmengine_evaluator_with_data_elements(world):
    ann_path, gt = world
    preds = perfect_predictions(gt)
    evaluator = Evaluator(METRICS.build(dict(type="CocoMetric", ann_file=ann_path)))
    evaluator.dataset_meta = dict(classes=CLASSES)
    for s in make_samples(preds):
        element = BaseDataElement(metainfo=dict(img_id=s["img_id"], ori_shape=s["ori_shape"]))
        element.pred_instances = InstanceData(**s["pred_instances"])
        evaluator.process([element])
    metrics = evaluator.evaluate(len(preds))
    assert metrics["coco/bbox_mAP"] == 1.0 and metrics["coco/bbox_mAP_50"] == 1.0


def test_classwise_table_and_argument_checks(world, monkeypatch):
    ann_path, gt = world
    logged = []
    monkeypatch.setattr(coco_metric_module, "print_log", lambda msg, **kw: logged.append(msg))
    run_metric(make_samples(perfect_predictions(gt)), ann_file=ann_path, classwise=True)
    table = next(m for m in logged if m.startswith("category"))
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert set(rows) == set(CLASSES)
    assert all(v == ["1.000"] * 3 for v in rows.values())
    with pytest.raises(ValueError, match="keypoints"):
        CocoMetric(metric="keypoints")
    with pytest.raises(ValueError, match="proposal_nums"):
        CocoMetric(proposal_nums=(100, 10))
    with pytest.raises(FileNotFoundError):
        CocoMetric(ann_file=ann_path + ".missing")


# ---------------------------------------------------------------- mask AP ('segm')

SH, SW = 60, 80  # small images: the masks are dense arrays


def disk(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:SH, :SW]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def _rle(mask: np.ndarray) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=[int(s) for s in rle["size"]], counts=rle["counts"].decode("ascii"))


def _tight_box(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def make_mask_world(seed: int = 0) -> tuple[dict, dict]:
    """COCO json with RLE and polygon segmentations (and a crowd region on image 2), and
    per image: gt masks, their tight boxes, labels, crowd flags."""
    rng = np.random.default_rng(seed)
    images, annotations, gt = [], [], {}
    for img_id in (1, 2, 3):
        masks, labels, crowd = [], [], []
        for _ in range(int(rng.integers(2, 4))):
            masks.append(disk(*rng.uniform(15, 60, 2), rng.uniform(5, 14)))
            labels.append(int(rng.integers(0, 3)))
            crowd.append(False)
        if img_id == 2:
            masks.append(np.zeros((SH, SW), bool))
            masks[-1][40:58, 2:30] = True
            labels.append(0)
            crowd.append(True)
        gt[img_id] = dict(masks=np.array(masks), labels=np.array(labels), crowd=np.array(crowd))
        images.append(dict(id=img_id, file_name=f"{img_id}.jpg", height=SH, width=SW))
        for k, (mask, label, is_crowd) in enumerate(zip(masks, labels, crowd)):
            x1, y1, x2, y2 = _tight_box(mask)
            if k == 0 and not is_crowd:  # a polygon: the box outline of the mask
                segm = [[x1, y1, x2, y1, x2, y2, x1, y2]]
                box_mask = np.zeros((SH, SW), bool)
                box_mask[int(y1) : int(y2), int(x1) : int(x2)] = True
                gt[img_id]["masks"][k] = box_mask
                mask = box_mask
            else:
                segm = _rle(mask)
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=img_id,
                    category_id=NAME_TO_ID[CLASSES[label]],
                    bbox=[x1, y1, x2 - x1, y2 - y1],
                    area=float(mask.sum()),
                    iscrowd=int(is_crowd),
                    segmentation=segm,
                )
            )
        gt[img_id]["boxes"] = np.array([_tight_box(m) for m in gt[img_id]["masks"]])
    return dict(images=images, annotations=annotations, categories=CATEGORIES), gt


def mask_predictions(gt: dict, seed: int = 2) -> dict:
    """Dilated / eroded / shifted masks, a wrong label and a false positive per image."""
    rng = np.random.default_rng(seed)
    preds = {}
    for img_id, g in gt.items():
        masks = [np.roll(m, int(rng.integers(-3, 4)), axis=1) for m in g["masks"][~g["crowd"]]]
        labels = list(g["labels"][~g["crowd"]])
        labels[0] = (labels[0] + 1) % 3
        masks.append(disk(*rng.uniform(10, 50, 2), 6.0))
        labels.append(int(rng.integers(0, 3)))
        masks = np.array(masks)
        preds[img_id] = dict(
            masks=masks,
            labels=np.array(labels),
            scores=rng.uniform(0.1, 1.0, len(labels)),
            boxes=np.array([_tight_box(m) for m in masks]),
        )
    return preds


def mask_samples(preds: dict, gt: dict | None = None) -> list[dict]:
    return make_samples(preds, gt, ori_shape=(SH, SW))


@pytest.fixture
def mask_world(tmp_path):
    return written(tmp_path / "instances_masks.json", make_mask_world())


SEGM_KEYS = ["segm_mAP", "segm_mAP_50", "segm_mAP_75", "segm_mAP_s", "segm_mAP_m", "segm_mAP_l"]


def test_mask_ap_equals_pycocotools(mask_world):
    ann_path, gt = mask_world
    preds = mask_predictions(gt)
    metrics = run_metric(mask_samples(preds), ann_file=ann_path, metric=["bbox", "segm"])
    stats = pycocotools_by_hand(ann_path, preds, "segm")
    assert 0.05 < metrics["segm_mAP"] < 0.95
    for i, key in enumerate(SEGM_KEYS):
        assert metrics[key] == pytest.approx(round(stats[i], 4), abs=1e-4), key
    assert metrics["segm_AR@100"] == pytest.approx(round(stats[8], 4), abs=1e-4)
    assert "bbox_mAP" in metrics
    perfect = {
        i: dict(
            masks=g["masks"][~g["crowd"]],
            labels=g["labels"][~g["crowd"]],
            scores=np.ones((~g["crowd"]).sum()),
            boxes=np.array([_tight_box(m) for m in g["masks"][~g["crowd"]]]),
        )
        for i, g in gt.items()
    }
    assert run_metric(mask_samples(perfect), ann_file=ann_path, metric="segm")["segm_mAP"] == 1.0


def test_mask_ap_ground_truth_from_samples_equals_ann_file(mask_world, tmp_path):
    ann_path, gt = mask_world
    preds = mask_predictions(gt)
    from_file = run_metric(mask_samples(preds), ann_file=ann_path, metric="segm")
    prefix = str(tmp_path / "m" / "res")
    from_samples = run_metric(mask_samples(preds, gt), metric="segm", outfile_prefix=prefix)
    for key in SEGM_KEYS:
        assert from_samples[key] == pytest.approx(from_file[key], abs=1e-4), key
    entries = json.loads(open(prefix + ".segm.json").read())
    assert isinstance(entries[0]["segmentation"]["counts"], str)  # json-ready RLE


def test_thing_classes_name_the_labels_of_a_panoptic_dataset(mask_world):
    """Instance predictions of a panoptic model are over its thing classes (labels 0..T-1);
    the panoptic dataset's classes also hold stuff names the instances json lacks."""
    ann_path, gt = mask_world
    preds = mask_predictions(gt)
    metric = CocoMetric(ann_file=ann_path, metric="segm")
    metric.dataset_meta = dict(classes=(*CLASSES, "sky"), thing_classes=CLASSES)
    metric.process({}, mask_samples(preds))
    ours = metric.compute_metrics(metric.results)
    assert ours["segm_mAP"] == pytest.approx(
        round(pycocotools_by_hand(ann_path, preds, "segm")[0], 4), abs=1e-4
    )


def test_segm_needs_masks_at_the_original_size(mask_world):
    ann_path, gt = mask_world
    samples = mask_samples(mask_predictions(gt))
    masks = samples[0]["pred_instances"].pop("masks")
    with pytest.raises(KeyError, match="masks"):
        run_metric(samples, ann_file=ann_path, metric="segm")
    samples[0]["pred_instances"]["masks"] = masks[:, :-1]  # not at the original size
    with pytest.raises(ValueError, match="original image size"):
        run_metric(samples, ann_file=ann_path, metric="segm")
