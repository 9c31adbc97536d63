"""tools/analyze_results.py and visionfm.evaluation.result_analysis: per-class AP equal to
COCOeval run on each category alone; the confusion matrix, per-image errors and worst-image
ranking against a hand-made case (boxes and masks); the tool's files on the synthetic world;
bad results entries refused by file and entry."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.cocoeval import COCOeval

from visionfm.evaluation.coco_format import coco_from_dict, load_ann_file, per_class_ap, quiet
from visionfm.evaluation.result_analysis import (
    evaluate,
    match_detections,
    read_results,
    worst_images,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "_base_" / "datasets" / "synthetic_instances.py")


def _ann(id_, image_id, cat, box, iscrowd=0) -> dict:
    return dict(id=id_, image_id=image_id, category_id=cat, bbox=box, area=box[2] * box[3],
                iscrowd=iscrowd)  # fmt: skip


def _det(image_id, cat, box, score) -> dict:
    return dict(image_id=image_id, category_id=cat, bbox=box, score=score)


# Three 100x100 images, cat = 1, dog = 2. Image 1: the cat found, the dog detected as a cat
# (a confusion). Image 2: the dog found, a dog detected on empty ground (background), a cat
# inside a crowd region (ignored), a cat under the score threshold (ignored). Image 3: one
# of two cats found and detected twice (the duplicate: background), the other cat and a dog
# missed.
HAND_GT = [
    _ann(1, 1, 1, [10, 10, 30, 30]), _ann(2, 1, 2, [60, 60, 30, 30]),
    _ann(3, 2, 2, [20, 20, 40, 40]), _ann(4, 2, 1, [0, 60, 40, 40], iscrowd=1),
    _ann(5, 3, 1, [5, 5, 20, 20]), _ann(6, 3, 1, [50, 50, 20, 20]), _ann(7, 3, 2, [80, 5, 15, 15]),
]  # fmt: skip
HAND_DETS = [
    _det(1, 1, [10, 10, 30, 30], 0.9), _det(1, 1, [60, 60, 30, 30], 0.8),
    _det(2, 2, [20, 20, 40, 40], 0.95), _det(2, 2, [70, 70, 20, 20], 0.6),
    _det(2, 1, [5, 65, 30, 30], 0.5), _det(2, 1, [20, 20, 40, 40], 0.2),
    _det(3, 1, [50, 50, 20, 20], 0.7), _det(3, 1, [51, 50, 20, 20], 0.5),
]  # fmt: skip
# rows: true cat, dog, background; columns: detected cat, dog, background (missed)
HAND_MATRIX = [[2, 0, 1], [1, 1, 1], [1, 1, 0]]
HAND_COUNTS = {1: dict(tp=1, fp=1, fn=1), 2: dict(tp=1, fp=1, fn=0), 3: dict(tp=1, fp=1, fn=2)}


def _polygon(box: list[float]) -> list[list[float]]:
    x, y, w, h = box
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _hand_gt(masks: bool = False, bird: bool = False):
    """The hand-made case's ground truth (``bird``: and a class without ground truth)."""
    anns = [dict(a, segmentation=_polygon(a["bbox"])) if masks else a for a in HAND_GT]
    images = [dict(id=i, file_name=f"{i}.png", height=100, width=100) for i in (1, 2, 3)]
    categories = [dict(id=1, name="cat"), dict(id=2, name="dog")]
    categories += [dict(id=3, name="bird")] if bird else []
    return coco_from_dict(dict(images=images, annotations=anns, categories=categories))


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_confusion_matrix_errors_and_worst_images_of_a_hand_made_case(iou_type):
    dets = HAND_DETS
    if iou_type == "segm":  # the same boxes as polygons: the same matching
        dets = [
            {**{k: v for k, v in d.items() if k != "bbox"}, "segmentation": _polygon(d["bbox"])}
            for d in HAND_DETS
        ]
    gt = _hand_gt(masks=iou_type == "segm")
    matrix, counts = match_detections(gt, dets, iou_type, [1, 2, 3], score_thr=0.3, iou_thr=0.5)
    assert matrix.tolist() == HAND_MATRIX
    assert counts == HAND_COUNTS
    assert worst_images(counts, 10) == [3, 1, 2]  # 3, 2 and 1 errors
    assert worst_images(counts, 2) == [3, 1]
    # no crowd region: the cat inside it is a false positive on the background
    no_crowd = _hand_gt(masks=iou_type == "segm")
    no_crowd.dataset["annotations"] = [a for a in no_crowd.dataset["annotations"] if a["id"] != 4]
    quiet(no_crowd.createIndex)
    matrix, counts = match_detections(no_crowd, dets, iou_type, [1, 2, 3], score_thr=0.3)
    assert matrix[2].tolist() == [2, 1, 0] and counts[2] == dict(tp=1, fp=2, fn=0)
    # a lower threshold takes the cat under it in: it overlaps the dog, already found
    matrix, _ = match_detections(gt, dets, iou_type, [1, 2, 3], score_thr=0.1)
    assert matrix[2].tolist() == [2, 1, 0]


def test_a_class_without_ground_truth_has_no_ap_and_its_detections_are_background():
    gt = _hand_gt(bird=True)
    dets = [*HAND_DETS, _det(1, 3, [40, 40, 10, 10], 0.9)]  # a bird where nothing is
    coco_eval = evaluate(gt, dets, "bbox", [1, 2, 3])
    ap = per_class_ap(coco_eval)
    assert np.isnan(ap[2]).all() and not np.isnan(ap[:2]).any()
    for k, cat_id in enumerate((1, 2)):
        assert ap[k] == pytest.approx(_alone(gt, dets, cat_id, [1, 2, 3]), abs=1e-12)
    assert np.nanmean(ap[:, 0]) == pytest.approx(coco_eval.stats[0], abs=1e-12)
    matrix, counts = match_detections(gt, dets, "bbox", [1, 2, 3])
    assert matrix.tolist() == [[2, 0, 0, 1], [1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]]
    assert counts[1] == dict(tp=1, fp=2, fn=1)
    class_table = runpy.run_path(str(ROOT / "tools" / "analyze_results.py"))["class_table"]
    rows = class_table(["cat", "dog", "bird"], ap, [3, 2, 0], [4, 3, 1]).splitlines()
    assert rows[4] == "| bird | - | - | - | 0 | 1 |"
    means = " | ".join(f"{v:.3f}" for v in ap[:2].mean(0))  # over the classes with ground truth
    assert rows[5] == f"| **mean** | {means} | 5 | 8 |"


def test_worst_images_leaves_out_images_without_errors():
    counts = {5: dict(tp=2, fp=0, fn=0), 2: dict(tp=0, fp=1, fn=0), 9: dict(tp=0, fp=0, fn=1)}
    assert worst_images(counts, 5) == [2, 9]  # ties by image id


def _noisy_results(gt, seed: int = 0) -> list[dict]:
    """The ground-truth boxes jittered, some missed, some relabelled, two false positives per
    image, random scores: a results list with a non-trivial AP per class."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(gt.getCatIds())
    out = []
    for ann in gt.dataset["annotations"]:
        if rng.random() < 0.15:
            continue
        x, y, w, h = ann["bbox"]
        dx, dy, dw, dh = rng.normal(0, 0.08, 4) * [w, h, w, h]
        cat = ann["category_id"] if rng.random() > 0.15 else int(rng.choice(cat_ids))
        box = [x + dx, y + dy, max(w + dw, 1.0), max(h + dh, 1.0)]
        out.append(_det(ann["image_id"], cat, box, float(rng.uniform(0.05, 1))))
    for img in gt.dataset["images"]:
        for _ in range(2):
            x, y = rng.uniform(0, img["width"] - 20), rng.uniform(0, img["height"] - 20)
            box = [x, y, float(rng.uniform(5, 20)), float(rng.uniform(5, 20))]
            out.append(_det(img["id"], int(rng.choice(cat_ids)), box, float(rng.uniform(0, 0.6))))
    return out


def _rle(mask: np.ndarray) -> dict:
    """(H, W) mask -> a COCO RLE as results json holds it (counts a str)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return dict(size=rle["size"], counts=rle["counts"].decode())


def _noisy_masks(gt, seed: int = 0) -> list[dict]:
    """The ground-truth masks shifted a few pixels, some missed, some relabelled, a square
    false positive per image, random scores: mask results with a non-trivial AP."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(gt.getCatIds())
    out = []
    for ann in gt.dataset["annotations"]:
        if rng.random() < 0.15:
            continue
        mask = np.roll(gt.annToMask(ann), tuple(rng.integers(-3, 4, 2)), (0, 1))
        cat = ann["category_id"] if rng.random() > 0.15 else int(rng.choice(cat_ids))
        out.append(dict(image_id=ann["image_id"], category_id=cat, segmentation=_rle(mask),
                        score=float(rng.uniform(0.05, 1))))  # fmt: skip
    for img in gt.dataset["images"]:
        mask = np.zeros((img["height"], img["width"]), np.uint8)
        y, x = rng.integers(0, img["height"] - 12), rng.integers(0, img["width"] - 12)
        mask[y : y + 12, x : x + 12] = 1
        out.append(dict(image_id=img["id"], category_id=int(rng.choice(cat_ids)),
                        segmentation=_rle(mask), score=float(rng.uniform(0, 0.6))))  # fmt: skip
    return out


def _eval_alone(gt, entries, cat_id: int, img_ids, iou_type: str = "bbox") -> COCOeval:
    """COCOeval of one category alone, evaluated, accumulated and summarized."""
    dt, _ = quiet(gt.loadRes, [dict(e) for e in entries])
    coco_eval = COCOeval(gt, dt, iouType=iou_type)
    coco_eval.params.catIds, coco_eval.params.imgIds = [cat_id], list(img_ids)
    quiet(lambda: (coco_eval.evaluate(), coco_eval.accumulate(), coco_eval.summarize()))
    return coco_eval


def _alone(gt, entries, cat_id: int, img_ids, iou_type: str = "bbox") -> np.ndarray:
    """COCOeval's AP, AP50, AP75 of one category evaluated alone (-1: no ground truth)."""
    return _eval_alone(gt, entries, cat_id, img_ids, iou_type).stats[:3]


def test_class_ap_equals_cocoeval_of_each_category_alone(synthetic_root):
    gt = load_ann_file(str(synthetic_root / "annotations" / "instances_val.json"))
    entries = _noisy_results(gt)
    img_ids = gt.getImgIds()
    coco_eval = evaluate(gt, entries, "bbox", img_ids)
    ap = per_class_ap(coco_eval)
    cat_ids = sorted(gt.getCatIds())
    assert ap.shape == (len(cat_ids), 3)
    for k, cat_id in enumerate(cat_ids):
        expected = _alone(gt, entries, cat_id, img_ids)
        if expected[0] == -1:
            assert np.isnan(ap[k]).all()
        else:
            assert ap[k] == pytest.approx(expected, abs=1e-12)
    # not trivial: every class found in part (its AP75 may be 0: the boxes are jittered),
    # none perfectly, the classes apart
    found = ap[~np.isnan(ap[:, 0])]
    assert len(found) >= 3 and (found[:, 0] > 0.05).all() and (found[:, 1] < 1).all()
    assert np.ptp(found[:, 0]) > 0.1
    assert np.nanmean(ap[:, 0]) == pytest.approx(coco_eval.stats[0], abs=1e-12)


def _tool(monkeypatch, *args) -> None:
    monkeypatch.setattr(sys, "argv", ["analyze_results", *map(str, args)])
    runpy.run_path(str(ROOT / "tools" / "analyze_results.py"), run_name="__main__")


def _table(path: Path) -> dict[str, list[str]]:
    """class -> cells of a markdown table's rows."""
    rows = [line.strip("|").split("|") for line in path.read_text().splitlines()[2:]]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def _regions(gt, items: list[dict], iou_type: str, shape) -> np.ndarray:
    """(N, H, W) bool: what the drawing of ``items`` (annotations or results entries) covers
    for sure: each mask, or each box's outline (1 px, as ``draw_instances`` rounds it)."""
    if iou_type == "segm":
        return np.array([gt.annToMask(e) for e in items], bool).reshape(-1, *shape)
    rings = np.zeros((len(items), *shape), bool)
    for ring, e in zip(rings, items):
        x, y, w, h = e["bbox"]
        x0, y0, x1, y1 = (int(round(v)) for v in (x, y, x + w, y + h))
        x1, y1 = min(max(x1 - 1, x0), shape[1] - 1), min(max(y1 - 1, y0), shape[0] - 1)
        ring[max(y0, 0) : y1 + 1, [max(x0, 0), x1]] = True
        ring[[max(y0, 0), y1], max(x0, 0) : x1 + 1] = True
    return rings


def _check_worst_drawing(png, image, gt, img_id, entries, iou_type, score_thr=0.3) -> None:
    """The ground truth drawn on the left panel, the detections scoring >= ``score_thr`` on
    the right one, the counts beneath; the right panel left alone away from those."""
    h, w = image.shape[:2]
    assert png.shape[1] == 2 * w + 4 and png.shape[0] > h  # side by side, counts beneath
    left, right = png[:h, :w], png[:h, w + 4 :]
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[img_id]))
    shown = [e for e in entries if e["image_id"] == img_id and e["score"] >= score_thr]
    for panel, items in ((left, anns), (right, shown)):
        where = _regions(gt, items, iou_type, (h, w)).any(0)
        assert (panel[where] != image[where]).any(-1).mean() > 0.8
    boxes = [e["bbox"] if "bbox" in e else mask_util.toBbox(gt.annToRLE(e)) for e in shown]
    near = np.zeros((h, w), bool)
    for x, y, bw, bh in np.reshape(boxes, (-1, 4)).round().astype(int):
        near[max(y - 3, 0) : y + bh + 3, max(x - 3, 0) : x + bw + 3] = True
    assert (right[~near] != image[~near]).any(-1).mean() < 0.15  # captions above at most


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_tool_writes_the_table_curves_matrix_and_worst_images(
    synthetic_root, tmp_path, monkeypatch, capsys, iou_type
):
    ann_file = synthetic_root / "annotations" / "instances_val.json"
    gt = load_ann_file(str(ann_file))
    entries = (_noisy_results if iou_type == "bbox" else _noisy_masks)(gt, seed=1)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(entries))
    out = tmp_path / "analysis"
    _tool(monkeypatch, CONFIG, results, "--out", out, "--show", 3,
          "--cfg-options", f"data_root={synthetic_root}/")  # fmt: skip
    assert "| **mean** |" in capsys.readouterr().out

    cat_ids = sorted(gt.getCatIds())
    names = [gt.cats[c]["name"] for c in cat_ids]
    table = _table(out / "class_ap.md")
    crowdless = [a for a in gt.dataset["annotations"] if not a["iscrowd"]]
    summary = json.loads((out / "analysis.json").read_text())
    curves = summary["pr_curves"]
    for name, cat_id in zip(names, cat_ids):
        alone = _eval_alone(gt, entries, cat_id, gt.getImgIds(), iou_type)
        expected, precision = alone.stats[:3], alone.eval["precision"][:, :, 0, 0, -1]
        assert curves["recall"] == pytest.approx(alone.params.recThrs.tolist())
        cells = table[name]
        if expected[0] == -1:
            assert cells[:3] == ["-", "-", "-"] and curves["precision"][name] == {}
        else:
            assert [float(c) for c in cells[:3]] == pytest.approx(expected, abs=5e-4)
            assert curves["precision"][name] == {  # (R,) at IoU 0.5 and 0.75
                "0.5": pytest.approx(precision[0].tolist()),
                "0.75": pytest.approx(precision[5].tolist()),
            }
        assert int(cells[3]) == sum(a["category_id"] == cat_id for a in crowdless)
        assert int(cells[4]) == sum(e["category_id"] == cat_id for e in entries)
    assert sorted(p.name for p in (out / "pr_curves").iterdir()) == [
        f"{k:02d}_{name}.png" for k, name in enumerate(names)
    ]

    assert summary["iou_type"] == iou_type
    matrix = np.array(summary["confusion_matrix"])
    assert matrix.shape == (len(names) + 1,) * 2
    assert matrix[:-1].sum(1).tolist() == [  # each ground-truth object once
        sum(a["category_id"] == c for a in crowdless) for c in cat_ids
    ]
    assert matrix[:, :-1].sum(0).tolist() == [  # each detection >= 0.3 once (no crowd here)
        sum(e["category_id"] == c and e["score"] >= 0.3 for e in entries) for c in cat_ids
    ]
    assert cv2.imread(str(out / "confusion_matrix.png")) is not None

    worst = summary["worst"]
    errors = [w["fp"] + w["fn"] for w in worst]
    assert len(worst) == 3 and errors == sorted(errors, reverse=True) and errors[-1] > 0
    drawn = sorted((out / "worst").iterdir())
    assert [p.name for p in drawn] == [
        f"{rank:02d}_{Path(w['file']).stem}.png" for rank, w in enumerate(worst, 1)
    ]
    for path, w in zip(drawn, worst):
        png = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image = cv2.cvtColor(cv2.imread(w["file"]), cv2.COLOR_BGR2RGB)
        _check_worst_drawing(png, image, gt, w["image_id"], entries, iou_type)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda e: e[3].update(image_id=99999), r"entry 3 names image_id 99999"),
        (lambda e: e[1].update(category_id=77), r"entry 1 names category_id 77"),
        (lambda e: e[0].pop("score"), r"entry 0 \(.*\) has no \['score'\]"),
        (lambda e: e[2].update(bbox=[1, 2, 3]), r"entry 2: bbox \[1, 2, 3\] is not"),
    ],
)
def test_bad_entries_are_refused_naming_the_file_and_entry(
    synthetic_root, tmp_path, monkeypatch, edit, message
):
    gt = load_ann_file(str(synthetic_root / "annotations" / "instances_val.json"))
    entries = _noisy_results(gt)
    edit(entries)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(entries))
    with pytest.raises(SystemExit, match=rf"^error: {re.escape(str(results))}: {message}"):
        _tool(monkeypatch, CONFIG, results, "--out", tmp_path / "out",
              "--cfg-options", f"data_root={synthetic_root}/")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_results_that_are_not_a_list_of_entries_are_refused(tmp_path):
    gt = _hand_gt()
    path = tmp_path / "r.json"
    for content, message in (({"a": 1}, "expected a list"), ([], "holds no detections"),
                             ([[1]], "entry 0 is a list")):  # fmt: skip
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*{message}"):
            read_results(str(path), gt, [1, 2, 3])
    path.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_results(str(path), gt, [1, 2, 3])


@pytest.mark.parametrize(
    "segmentation, message",
    [
        (dict(size=[50, 50], counts="PP5"), r"RLE size \[50, 50\] is not its image's \[height, "
                                            r"width\] \[100, 100\]"),
        (dict(counts="PP5"), "an RLE segmentation needs 'size' and 'counts'"),
        ([[1, 2, 3, 4]], "segmentation is neither an RLE"),
        ("abc", "segmentation is neither an RLE"),
    ],
)  # fmt: skip
def test_bad_mask_entries_are_refused(tmp_path, segmentation, message):
    good = dict(image_id=1, category_id=1, segmentation=_polygon([10, 10, 30, 30]), score=0.9)
    path = tmp_path / "r.json"
    path.write_text(json.dumps([good, dict(good, segmentation=segmentation)]))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: entry 1: {message}"):
        read_results(str(path), _hand_gt(masks=True), [1, 2, 3])


def test_a_config_without_coco_ground_truth_is_refused(tmp_path, monkeypatch):
    config = ROOT / "configs" / "_base_" / "datasets" / "synthetic_semantic.py"
    with pytest.raises(SystemExit, match="test_evaluator has no CocoMetric with an ann_file"):
        _tool(monkeypatch, config, tmp_path / "r.json", "--out", tmp_path / "out")
