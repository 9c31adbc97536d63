"""Where a detector goes wrong: per-class AP, precision-recall curves, a confusion matrix and
the worst images, from its COCO results json.

    python tools/test.py CONFIG CHECKPOINT --out results.json
    python tools/analyze_results.py CONFIG results.json --out DIR [--score-thr 0.3]
        [--iou-thr 0.5] [--show 20]

RESULTS_JSON: COCO results, boxes (``bbox``) or masks (``segmentation``), as ``tools/test.py
--out FILE.json`` (boxes) or ``--out DIR`` (``DIR/coco.bbox.json``, ``DIR/coco.segm.json``)
writes them. The ground truth is the ``ann_file`` of the config's test_evaluator CocoMetric,
the images those of its test split; an entry naming another image or an unknown category is
an error naming the file and the entry. Written to DIR:

- ``class_ap.md``: AP (IoU 0.50:0.95), AP50, AP75 of each class (pycocotools' COCOeval,
  area all, 100 detections per image; ``-`` for a class without ground truth), its numbers
  of ground-truth objects and detections, and the mean over classes (COCO's mAP); printed too;
- ``pr_curves/NN_<class>.png``: precision against recall at IoU 0.5 and 0.75, per class;
- ``confusion_matrix.png``: detections scoring >= --score-thr matched one-to-one to ground
  truth at IoU >= --iou-thr (``visionfm.evaluation.result_analysis``): rows the true class
  and a background row (false positives), columns the detected class and a background
  column (misses); colours by row fraction, counts written;
- ``worst/NN_<image>.png``: the --show images with the most errors (false positives +
  misses under that matching), ground truth (left) beside the detections scoring >=
  --score-thr (right), their counts beneath;
- ``analysis.json``: the numbers behind all of these (the curves: ``pr_curves``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter

import cv2
import matplotlib
import numpy as np
import pycocotools.mask as mask_util
from mmengine.config import Config, DictAction

from visionfm.data.transforms import LoadImage
from visionfm.engine import load_config
from visionfm.engine.cli import run_tool
from visionfm.evaluation.coco_format import load_ann_file, per_class_ap
from visionfm.evaluation.result_analysis import (
    evaluate,
    match_detections,
    read_results,
    worst_images,
)
from visionfm.registry import DATASETS
from visionfm.visualization import add_caption, draw_instances, side_by_side

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def ground_truth_file(cfg: Config) -> str:
    """The ``ann_file`` of the config's test_evaluator CocoMetric."""
    evaluators = cfg.get("test_evaluator") or []
    evaluators = evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]
    for evaluator in evaluators:
        if evaluator.get("type") == "CocoMetric" and evaluator.get("ann_file"):
            return evaluator["ann_file"]
    raise SystemExit(
        "error: the config's test_evaluator has no CocoMetric with an ann_file "
        f"({[e.get('type') for e in evaluators]}): the results' ground truth is unknown"
    )


def image_paths(cfg: Config) -> dict[int, str]:
    """Image id -> file of the images of the config's test split."""
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    infos = (dataset.get_data_info(i) for i in range(len(dataset)))
    return {int(info["img_id"]): info["img_path"] for info in infos}


def class_table(names: list[str], ap: np.ndarray, num_gt: list[int], num_det: list[int]) -> str:
    """Markdown: a row per class (AP, AP50, AP75 of ``ap`` (K, 3), '-' for nan, and the
    counts), then the mean over the classes with ground truth."""
    lines = ["| class | AP | AP50 | AP75 | GT | detections |", "|---|---:|---:|---:|---:|---:|"]
    for name, row, gt, det in zip(names, ap, num_gt, num_det):
        cells = " | ".join("-" if np.isnan(v) else f"{v:.3f}" for v in row)
        lines.append(f"| {name} | {cells} | {gt} | {det} |")
    means = [np.nanmean(col) if not np.isnan(col).all() else np.nan for col in ap.T]
    cells = " | ".join("-" if np.isnan(v) else f"{v:.3f}" for v in means)
    lines.append(f"| **mean** | {cells} | {sum(num_gt)} | {sum(num_det)} |")
    return "\n".join(lines)


def plot_pr_curves(coco_eval, names: list[str], out_dir: str) -> dict[str, dict[str, list]]:
    """``out_dir/NN_<class>.png``: precision (R,) against recall thresholds at IoU 0.5 and
    0.75 (``coco_eval.eval['precision']``: area all, last maxDets). Returns the curves drawn,
    class name -> {'0.5': (R,) precision, '0.75': ...} (classes without ground truth: {})."""
    os.makedirs(out_dir, exist_ok=True)
    precision = coco_eval.eval["precision"]  # (T, R, K, areas, maxDets)
    recall = coco_eval.params.recThrs
    iou_thrs = list(np.round(coco_eval.params.iouThrs, 2))
    curves: dict[str, dict[str, list]] = {}
    for k, name in enumerate(names):
        fig, ax = plt.subplots(figsize=(4, 4))
        curves[name] = {}
        for thr in (0.5, 0.75):
            p = precision[iou_thrs.index(thr), :, k, 0, -1]
            if (p > -1).any():
                ax.plot(recall, p, label=f"IoU {thr}: AP {p.mean():.3f}")
                curves[name][str(thr)] = p.tolist()
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=name)
        if ax.lines:
            ax.legend(loc="lower left")
        else:
            ax.set_title(f"{name} (no ground truth)")
        fig.tight_layout()
        safe = re.sub(r"[^\w.-]+", "_", name)
        fig.savefig(os.path.join(out_dir, f"{k:02d}_{safe}.png"))
        plt.close(fig)
    return curves


def plot_confusion_matrix(matrix: np.ndarray, names: list[str], path: str) -> None:
    """``matrix`` (K + 1, K + 1) counts (rows true, columns detected, background last) as a
    PNG: colours by the fraction of the row, counts written in the cells (up to 30 classes)."""
    labels = [*names, "background"]
    rows = matrix.sum(1, keepdims=True)
    fraction = matrix / np.maximum(rows, 1)
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="detected", ylabel="ground truth", title="confusion matrix")
    if len(labels) <= 30:
        for (r, c), count in np.ndenumerate(matrix):
            color = "white" if fraction[r, c] > 0.5 else "black"
            ax.text(c, r, str(count), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_worst(coco_gt, entries, iou_type, img_id, path, counts, names, score_thr) -> np.ndarray:
    """Ground truth (left) beside the detections scoring >= ``score_thr`` (right) of one
    image, its error counts beneath: (H', W', 3) uint8 RGB."""
    image = LoadImage()(dict(img_path=path))["img"]
    label_of = {c: k for k, c in enumerate(sorted(coco_gt.getCatIds()))}
    anns = [a for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[img_id])) if not a["iscrowd"]]
    dets = [e for e in entries if e["image_id"] == img_id and e["score"] >= score_thr]
    panels = []
    for items, scores in ((anns, None), (dets, np.array([e["score"] for e in dets]))):
        boxes = np.array(
            [e["bbox"] if "bbox" in e else mask_util.toBbox(coco_gt.annToRLE(e)) for e in items]
        ).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        masks = None
        if iou_type == "segm":
            masks = np.array([coco_gt.annToMask(e) for e in items], bool)
            masks = masks.reshape(len(items), *image.shape[:2])
        labels = np.array([label_of[e["category_id"]] for e in items], np.int64)
        panels.append(draw_instances(image, boxes, labels, names, scores=scores, masks=masks))
    c = counts[img_id]
    text = (
        f"{os.path.basename(path)}: {c['fp']} false positives, {c['fn']} missed, {c['tp']} "
        f"correct (left: ground truth, right: detections >= {score_thr})"
    )
    return add_caption(side_by_side(*panels), text)


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-class AP, PR curves, confusion matrix")
    parser.add_argument("config")
    parser.add_argument("results", help="COCO results json (tools/test.py --out)")
    parser.add_argument("--out", required=True, help="folder for the tables and PNGs")
    parser.add_argument("--score-thr", type=float, default=0.3, help="confusion matrix, worst")
    parser.add_argument("--iou-thr", type=float, default=0.5, help="confusion matrix, worst")
    parser.add_argument("--show", type=int, default=20, help="how many worst images to draw")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args()

    cfg = load_config(args.config, args.cfg_options)
    ann_file = ground_truth_file(cfg)
    try:
        coco_gt = load_ann_file(ann_file)
        paths = image_paths(cfg)
        unknown = sorted(set(paths) - set(coco_gt.getImgIds()))
        if unknown:
            raise ValueError(
                f"images {unknown[:10]} of the config's test split are not images of {ann_file}"
            )
        img_ids = sorted(paths)
        entries, iou_type = read_results(args.results, coco_gt, img_ids, ann_file)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from err

    cat_ids = sorted(coco_gt.getCatIds())
    names = [coco_gt.cats[c]["name"] for c in cat_ids]
    coco_eval = evaluate(coco_gt, entries, iou_type, img_ids)
    ap = per_class_ap(coco_eval)
    gt_anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img_ids))
    gt_count = Counter(a["category_id"] for a in gt_anns if not a["iscrowd"])
    det_count = Counter(e["category_id"] for e in entries)
    num_gt, num_det = [gt_count[c] for c in cat_ids], [det_count[c] for c in cat_ids]
    table = class_table(names, ap, num_gt, num_det)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "class_ap.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    print(table)
    curves = plot_pr_curves(coco_eval, names, os.path.join(args.out, "pr_curves"))

    matrix, counts = match_detections(
        coco_gt, entries, iou_type, img_ids, score_thr=args.score_thr, iou_thr=args.iou_thr
    )
    plot_confusion_matrix(matrix, names, os.path.join(args.out, "confusion_matrix.png"))
    worst = worst_images(counts, args.show)
    os.makedirs(os.path.join(args.out, "worst"), exist_ok=True)
    for rank, img_id in enumerate(worst, 1):
        drawn = draw_worst(
            coco_gt, entries, iou_type, img_id, paths[img_id], counts, names, args.score_thr
        )
        stem = os.path.splitext(os.path.basename(paths[img_id]))[0]
        path = os.path.join(args.out, "worst", f"{rank:02d}_{stem}.png")
        cv2.imwrite(path, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))

    summary = dict(
        iou_type=iou_type,
        score_thr=args.score_thr,
        iou_thr=args.iou_thr,
        classes=names,
        class_ap={
            name: dict(zip(("AP", "AP50", "AP75"), [None if np.isnan(v) else v for v in row]))
            for name, row in zip(names, ap.tolist())
        },
        mAP=float(coco_eval.stats[0]),
        pr_curves=dict(recall=coco_eval.params.recThrs.tolist(), precision=curves),
        confusion_matrix=matrix.tolist(),
        worst=[dict(image_id=i, file=paths[i], **counts[i]) for i in worst],
    )
    with open(os.path.join(args.out, "analysis.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    print(f"analysis written to {args.out}: {len(worst)} worst images drawn")


if __name__ == "__main__":
    run_tool(main)
