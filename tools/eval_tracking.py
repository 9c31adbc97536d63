"""Score tracks against ground truth: HOTA, DetA, AssA, MOTA, IDF1, identity switches, FP, FN.

    python tools/eval_tracking.py PRED_DIR GT_DIR [--iou-thr 0.5] [--out scores.json]

Both folders hold MOT-challenge text files (``frame,id,x,y,w,h,conf,-1,-1,-1``, frames from
1), one per sequence, paired by name: ``GT_DIR/video_000.txt`` with ``PRED_DIR/video_000.txt``.
``tools/demo.py CONFIG CHECKPOINT VIDEO --track --out PRED_DIR`` writes such a file beside each
video it tracks; the synthetic world's clips carry theirs (``data/synthetic/videos/val``)::

    python tools/demo.py CONFIG CHECKPOINT data/synthetic/videos/val/video_000.mp4 --track \
        --out outputs/track
    python tools/eval_tracking.py outputs/track data/synthetic/videos/val

Every ground-truth sequence needs its predictions (else an error naming the missing files);
prediction files without ground truth are named and skipped. Scores come from
``visionfm.evaluation.mot_metrics.evaluate_mot`` (motmetrics and trackeval, in the dev
extras); the table has one row per sequence and ``OVERALL`` (all sequences pooled).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from visionfm.data.mot_format import read_mot
from visionfm.engine.cli import run_tool
from visionfm.evaluation.mot_metrics import MOT_COLUMNS, evaluate_mot


def load_pairs(pred_dir: str, gt_dir: str) -> tuple[dict, dict]:
    """``({name: gt rows}, {name: pred rows})`` of the ``.txt`` files of ``gt_dir`` and their
    namesakes in ``pred_dir``; prediction files without ground truth are reported."""
    for folder in (pred_dir, gt_dir):
        if not os.path.isdir(folder):
            raise SystemExit(f"error: {folder} is not a folder of MOT-challenge .txt files")
    gt_names = sorted(p.stem for p in Path(gt_dir).glob("*.txt"))
    pred_names = sorted(p.stem for p in Path(pred_dir).glob("*.txt"))
    if not gt_names:
        raise SystemExit(f"error: {gt_dir} has no ground-truth .txt files")
    missing = [n for n in gt_names if n not in pred_names]
    if missing:
        raise SystemExit(
            f"error: no predictions for {len(missing)} of {len(gt_names)} sequences: "
            + ", ".join(os.path.join(pred_dir, f"{n}.txt") for n in missing)
        )
    extra = [n for n in pred_names if n not in gt_names]
    if extra:
        print(f"skipped (no ground truth in {gt_dir}): {', '.join(f'{n}.txt' for n in extra)}")
    try:
        gt = {n: read_mot(Path(gt_dir) / f"{n}.txt") for n in gt_names}
        pred = {n: read_mot(Path(pred_dir) / f"{n}.txt") for n in gt_names}
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    return gt, pred


def format_table(scores: dict[str, dict[str, float]]) -> str:
    """A markdown table: a row per sequence, fractions as percentages, counts as integers."""
    lines = [
        "| sequence | " + " | ".join(MOT_COLUMNS) + " |",
        "|---|" + "---:|" * len(MOT_COLUMNS),
    ]
    for name, row in scores.items():
        cells = [
            f"{row[c]:.0f}" if c in ("IDSW", "FP", "FN", "GT") else f"{100 * row[c]:.1f}"
            for c in MOT_COLUMNS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="HOTA / MOTA / IDF1 of MOT-challenge tracks")
    parser.add_argument("pred_dir", help="folder of predicted tracks, <sequence>.txt")
    parser.add_argument("gt_dir", help="folder of ground-truth tracks, <sequence>.txt")
    parser.add_argument("--iou-thr", type=float, default=0.5, help="box match for MOTA / IDF1")
    parser.add_argument("--out", help="also write the scores to this json file")
    args = parser.parse_args()
    gt, pred = load_pairs(args.pred_dir, args.gt_dir)
    scores = evaluate_mot(gt, pred, iou_thr=args.iou_thr)
    print(format_table(scores))
    if args.out:
        Path(args.out).write_text(json.dumps(scores, indent=1))


if __name__ == "__main__":
    run_tool(main)
