"""Plot a run's learning curves from its work dir: loss and lr per iteration, and the
validation metric against wall-clock minutes.

    python tools/analyze_logs.py WORK_DIR [--metric coco/bbox_mAP] [--out curves.png] [--md table.md]

Reads every ``WORK_DIR/<timestamp>/<timestamp>.log`` that mmengine wrote, one per run, and
merges them oldest first, so that a training continued with ``tools/train.py --resume``
shows all its epochs: a run replaces what earlier runs logged from its first epoch on (a
resume restarts at the checkpoint's epoch and redoes the ones after it). Runs that trained
nothing (a ``tools/test.py --work-dir`` run) are skipped.

Minutes are training time (incl. validation), from the log lines' timestamps: a run's count
from its first training iteration's log line back by that iteration window's own duration,
i.e. from the start of its training, and a resumed run's continue from the last line kept
of the runs before it. So the gap between runs (the time the training was stopped, the
resumed run's start-up) and the time spent on iterations that the resume redid are not
counted.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_STAMP = re.compile(r"^(?:\d{4}/)?(\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - INFO - (.*)$")
_TRAIN = re.compile(
    r"Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\].*?lr: ([\d.e+-]+).*?time: ([\d.]+).*?\bloss: ([\d.e+-]+)"
)
_VAL = re.compile(r"Epoch\(val\)\s+\[(\d+)\]\[\s*\d+/\d+\]\s+(\S+: .*)$")


def parse_log(path: str, metric: str) -> tuple[list[dict], list[dict]]:
    """(train rows: epoch/iter/minutes/lr/loss, val rows: epoch/minutes/metrics) from one
    log; minutes from the start of its training."""
    train, val, start = [], [], None
    for line in open(path, encoding="utf-8"):
        m = _STAMP.match(line.rstrip())
        if not m:
            continue
        when = datetime.strptime(m.group(1), "%m/%d %H:%M:%S")
        if t := _TRAIN.search(m.group(2)):
            epoch, it, per_epoch = int(t.group(1)), int(t.group(2)), int(t.group(3))
            if start is None:  # back-date by the iterations this first line covers
                start = when.timestamp() - float(t.group(5)) * it
            train.append(
                dict(
                    epoch=epoch,
                    iter=(epoch - 1) * per_epoch + it,
                    lr=float(t.group(4)),
                    loss=float(t.group(6)),
                    minutes=(when.timestamp() - start) / 60,
                )
            )
        elif (v := _VAL.search(m.group(2))) and metric in m.group(2) and start is not None:
            values = dict(re.findall(r"(\S+): ([\d.-]+)", v.group(2)))
            val.append(
                dict(
                    epoch=int(v.group(1)),
                    minutes=(when.timestamp() - start) / 60,
                    **{k: float(x) for k, x in values.items()},
                )
            )
    return train, val


def merge_runs(runs: list[tuple[list[dict], list[dict]]]) -> tuple[list[dict], list[dict]]:
    """One (train rows, val rows) of several runs' :func:`parse_log` rows, oldest run first
    (see the module doc): each run replaces the earlier runs' rows from its first epoch on,
    and its minutes continue from the last row kept before it."""
    train: list[dict] = []
    val: list[dict] = []
    for run_train, run_val in runs:
        if not run_train:
            continue
        first = run_train[0]["epoch"]
        train = [r for r in train if r["epoch"] < first]
        val = [r for r in val if r["epoch"] < first]
        offset = max((r["minutes"] for r in train + val), default=0.0)
        train += [dict(r, minutes=r["minutes"] + offset) for r in run_train]
        val += [dict(r, minutes=r["minutes"] + offset) for r in run_val]
    return train, val


def read_work_dir(work_dir: str, metric: str) -> tuple[list[dict], list[dict]]:
    """The merged (train rows, val rows) of every mmengine log under ``work_dir``
    (``<timestamp>/<timestamp>.log``, one per run; see the module doc)."""
    logs = sorted(glob.glob(os.path.join(work_dir, "*", "*.log")))
    if not logs:
        raise FileNotFoundError(f"no mmengine log (<timestamp>/<timestamp>.log) under {work_dir}")
    return merge_runs([parse_log(log, metric) for log in logs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work_dir")
    parser.add_argument("--metric", default="coco/bbox_mAP")
    parser.add_argument("--out", help="PNG path (default WORK_DIR/curves.png)")
    parser.add_argument("--md", help="also write the metric table as markdown here")
    args = parser.parse_args()

    train, val = read_work_dir(args.work_dir, args.metric)
    if not train:
        raise SystemExit(f"{args.work_dir}: its mmengine logs have no training iterations")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot([r["iter"] for r in train], [r["loss"] for r in train])
    axes[0].set(xlabel="iteration", ylabel="total loss", title="loss")
    axes[1].plot([r["iter"] for r in train], [r["lr"] for r in train])
    axes[1].set(xlabel="iteration", ylabel="lr", title="learning rate")
    axes[2].plot([r["minutes"] for r in val], [r[args.metric] for r in val], marker="o")
    axes[2].set(
        xlabel="minutes of training (incl. validation)",
        ylabel=args.metric,
        title=f"{args.metric} vs time",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = args.out or os.path.join(args.work_dir, "curves.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    ap50 = args.metric + "_50"  # COCO metrics log their AP50 beside the AP
    with_ap50 = any(ap50 in r for r in val)
    rows = [
        f"| epoch | minutes | {args.metric} |" + (" AP50 |" if with_ap50 else ""),
        "|---|---|---|" + ("---|" if with_ap50 else ""),
    ]
    for r in val:
        row = f"| {r['epoch']} | {r['minutes']:.1f} | {r[args.metric]:.3f} |"
        rows.append(row + (f" {r.get(ap50, float('nan')):.3f} |" if with_ap50 else ""))
    table = "\n".join(rows)
    if args.md:
        with open(args.md, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    print(table)
    print(f"curves written to {out}")


if __name__ == "__main__":
    main()
