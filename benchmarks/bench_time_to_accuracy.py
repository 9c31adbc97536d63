"""Time to accuracy: our DINO demo detector vs HF transformers' Deformable DETR (the
original recipe) and RT-DETRv2, trained from random weights on the synthetic data on CPU.

    python benchmarks/bench_time_to_accuracy.py [--which ours hf-deformable hf-rtdetr
        visionfm-deformable] [--side-by-side] [--minutes 15] [--target-ap 0.5]
        [--metric bbox_mAP] [--threads 2] [--ours-procs 2]
        [--data data/synthetic] [--max-train-images N] [--max-val-images N] [--epochs N]
        [--hf-backbone resnet18] [--hf-lr 2e-4] [--rtdetr-lr 1e-4] [--rtdetr-warmup 2000]
        [--work-dir work_dirs/time_to_accuracy] [--out results/time_to_accuracy.md] [--json FILE]

All train on the same COCO json (``--max-train-images`` / ``--max-val-images`` take the
first images by id, written as subset jsons in the run's work dir), with images resized to
128 px, random horizontal flips, one data loader worker, ``--threads`` intra-op threads, and
are evaluated after every epoch on the validation json by pycocotools (COCO bbox AP). The
run of each stops at the time budget ``--minutes``; an evaluation that ends after the
budget does not count.

- ``ours``: ``tools/train.py configs/dino/dino_vit-t_synthetic.py`` in a subprocess, as
  ``make demo`` runs it: ``--ours-procs`` (2) gloo DDP processes started by torchrun, each
  with ``--threads / --ours-procs`` threads and batch 4 (its schedule, its EMA weights
  validated; ``--epochs`` overrides ``train_cfg.max_epochs``), stopped at the budget.
  Minutes, iterations and AP are read from its mmengine logs with ``tools/analyze_logs.py``'s
  ``read_work_dir``.
- ``hf-deformable``: ``transformers.DeformableDetrForObjectDetection`` trained as the
  original Deformable DETR trains it (d_model 128, 3 + 3 layers, 4 levels, 100 queries,
  two-stage + box refinement with the encoder proposal loss HF omits, AdamW 2e-4, batch 8):
  see ``benchmarks/hf_deformable_detr.py``.
- ``hf-rtdetr``: ``transformers.RTDetrV2ForObjectDetection`` (RT-DETRv2-S, ResNet-18-vd)
  with its own loss (denoising, VFL) and its authors' recipe (AdamW 1e-4, warm-up, EMA),
  batch 8, 128 x 128: see ``benchmarks/hf_rt_detr.py``. (``hf`` / ``both`` still mean
  ``hf-deformable`` / ``ours hf-deformable``.)
- ``visionfm-deformable``: a check of the ``hf-deformable`` baseline, not a competitor: the
  same model (the same 13.6 M parameters) and recipe rebuilt from visionfm's own modules
  (``benchmarks/configs/deformable-detr_r18_two-stage_synthetic.py``), one process of
  ``--threads`` threads, trained like ``ours``. Two implementations of one recipe should
  learn alike per iteration.

They train one after the other, each alone on the machine, in the order given; with
``--side-by-side`` ours and one HF baseline train at the same time, each with ``--threads``
threads (``--threads 1`` on a 2-core machine: one core each, so both share the machine's
memory bandwidth and caches alike, and the comparison takes one budget of wall time).

Minutes count from the first training iteration of each (ours: back-dated from the first
log line as ``tools/analyze_logs.py`` does) and include the evaluations and, for ours,
checkpoint saving. Writes a markdown report to ``benchmarks/results/time_to_accuracy.md``
(each curve with iterations and minutes, iterations per second, parameters), an
AP-vs-minutes plot next to it (``.png``) and, with ``--json``, the rows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _common as common
import torch
from hf_deformable_detr import LONG_SIDE, run_hf
from hf_rt_detr import run_rtdetr

CONFIG = "configs/dino/dino_vit-t_synthetic.py"
# visionfm configs trained by tools/train.py (run_ours): the demo, and the HF Deformable DETR
# baseline's recipe rebuilt from visionfm's own modules (a check of that baseline)
CONFIGS = {
    "ours": CONFIG,
    "visionfm-deformable": "benchmarks/configs/deformable-detr_r18_two-stage_synthetic.py",
}
OUT = common.RESULTS / "time_to_accuracy.md"
METRICS = ("bbox_mAP", "bbox_mAP_50")
BASELINES = {"hf-deformable": run_hf, "hf-rtdetr": run_rtdetr}
NAMES = {
    "ours": f"ours (`{CONFIG}`)",
    "visionfm-deformable": "visionfm Deformable DETR, the HF baseline's recipe (a check)",
    "hf-deformable": "HF `DeformableDetrForObjectDetection` (original recipe)",
    "hf-rtdetr": "HF `RTDetrV2ForObjectDetection` (RT-DETRv2-S recipe)",
}
ALIASES = {"hf": ["hf-deformable"], "both": ["ours", "hf-deformable"]}


# ---------------------------------------------------------------- data (shared)


def subset_annotations(src: Path, dst: Path, max_images: int | None, with_boxes: bool) -> Path:
    """The first ``max_images`` images by id of COCO json ``src`` (only images with boxes
    when ``with_boxes``) and their annotations, written to ``dst``; ``src`` if no limit."""
    if max_images is None:
        return src
    data = json.loads(src.read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    images = sorted(data["images"], key=lambda im: im["id"])
    images = [im for im in images if not with_boxes or im["id"] in annotated][:max_images]
    keep = {im["id"] for im in images}
    data["images"] = images
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(data))
    return dst


# ---------------------------------------------------------------- ours (subprocess)


def run_ours(args, train_ann: Path, val_ann: Path, run_dir: Path, key="ours") -> dict:
    """Train ``CONFIGS[key]`` with tools/train.py until the budget (the demo in
    ``--ours-procs`` DDP processes, as ``make demo``; other configs in one process of
    ``--threads`` threads, as the HF baselines); rows of (epoch, minutes, AP)."""
    sys.path.insert(0, str(common.ROOT / "tools"))
    from analyze_logs import read_work_dir

    config, procs = CONFIGS[key], args.ours_procs if key == "ours" else 1
    work_dir = run_dir / key
    options = [
        f"data_root={args.data.resolve()}/",
        f"train_dataloader.dataset.ann_file={train_ann.resolve()}",
        f"val_dataloader.dataset.ann_file={val_ann.resolve()}",
        f"val_evaluator.ann_file={val_ann.resolve()}",
    ]
    if args.epochs:
        options.append(f"train_cfg.max_epochs={args.epochs}")
    cmd = [sys.executable, "tools/train.py", config, "--work-dir", str(work_dir)]
    if procs > 1:  # as `make demo`: N gloo DDP processes sharing the threads
        torchrun = [sys.executable, "-m", "torch.distributed.run"]
        cmd = [*torchrun, f"--nproc_per_node={procs}", *cmd[1:], "--launcher", "pytorch"]
    cmd += ["--cfg-options", *options]
    threads = max(1, args.threads // procs)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    work_dir.mkdir(parents=True, exist_ok=True)
    budget_s = args.minutes * 60
    print(f"[{key}] {' '.join(cmd)}", flush=True)
    with open(work_dir / "stdout.log", "w") as stdout:
        proc = subprocess.Popen(
            cmd,
            cwd=common.ROOT,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        spawned, start, stopped = time.time(), None, False
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                if start is None:  # training start = now - minutes of the newest train row
                    with contextlib.suppress(FileNotFoundError):
                        train, _ = read_work_dir(str(work_dir), "coco/bbox_mAP")
                        if train:
                            start = time.time() - train[-1]["minutes"] * 60
                            print(f"[{key}] training started {time.time() - start:.0f} s ago")
                # stop at the budget (or, never having logged, at the budget plus 10 minutes)
                if time.time() >= (start + budget_s if start else spawned + budget_s + 600):
                    _stop(proc)
                    stopped = True
        except BaseException:  # e.g. Ctrl-C: the run is in its own session, stop it too
            _stop(proc)
            raise
    if not stopped and proc.returncode != 0:
        tail = (work_dir / "stdout.log").read_text()[-3000:]
        raise RuntimeError(f"tools/train.py failed ({proc.returncode}):\n{tail}")
    train, val = read_work_dir(str(work_dir), "coco/bbox_mAP")
    params_m, batch = _params_and_batch(config)
    # an epoch's iterations (the log has every 20th): DefaultSampler gives each of the procs
    # ceil(N / procs) of the N images with boxes, in batches of `batch`
    images = len({a["image_id"] for a in json.loads(train_ann.read_text())["annotations"]})
    per_epoch = math.ceil(math.ceil(images / procs) / batch)
    rows = [
        dict(
            epoch=v["epoch"],
            iteration=v["epoch"] * per_epoch,
            minutes=v["minutes"],
            **{m: v[f"coco/{m}"] for m in METRICS},
        )
        for v in val
        if v["minutes"] <= args.minutes
    ]
    iters = train[-1]["iter"] if train else 0
    return dict(
        rows=rows,
        stopped_at_budget=stopped,
        iterations=iters,
        s_per_iter=train[-1]["minutes"] * 60 / iters if iters else None,
        params_m=params_m,
        batch=batch * procs,  # the config's train_dataloader.batch_size is per process
        work_dir=str(work_dir),
    )


def _stop(proc: subprocess.Popen) -> None:
    """Ends tools/train.py and its data loader workers (its own process group)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _params_and_batch(config: str) -> tuple[float, int]:
    """-> (parameters in millions, train_dataloader.batch_size) of a visionfm config."""
    sys.path.insert(0, str(common.ROOT))
    from visionfm.engine import load_config
    from visionfm.registry import MODELS

    cfg = load_config(str(common.ROOT / config), None)
    model = MODELS.build(cfg.model)
    return sum(p.numel() for p in model.parameters()) / 1e6, cfg.train_dataloader.batch_size


# ---------------------------------------------------------------- report


def summarise(run: dict, metric: str, target: float) -> dict:
    """Adds minutes_to_target (None if not reached), best and last AP to ``run``."""
    reached = [r for r in run["rows"] if r[metric] >= target]
    run["minutes_to_target"] = reached[0]["minutes"] if reached else None
    run["best"] = max((r[metric] for r in run["rows"]), default=None)
    run["last"] = run["rows"][-1] if run["rows"] else None
    return run


def _markdown(result: dict, args) -> str:
    import timm
    import transformers

    metric = result["metric"]
    runs = {k: result[k] for k in NAMES if k in result}
    order = (
        f"trained at the same time ({args.threads} threads each)"
        if args.side_by_side
        else "one after the other, each alone"
    )
    lines = [
        "# Time to accuracy on CPU: our DINO demo vs HF transformers' DETRs, from random weights",
        "",
        f"Date: {common.timestamp()}. Machine: {common.machine()}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"timm {timm.__version__}; {args.threads} threads, "
        f"OMP_WAIT_POLICY={common.omp_wait_policy()}.",
        f"Data: `{args.data}`, {result['train_images']} training and {result['val_images']} "
        f"validation images, {LONG_SIDE} px. Budget {args.minutes:g} minutes each, {order}; "
        f"COCO bbox AP (pycocotools) after every epoch; target `{metric}` >= "
        f"{args.target_ap:g}. Minutes from the first training iteration, evaluations "
        "included; iterations / s over the whole run (evaluations included). Written by "
        "`python benchmarks/bench_time_to_accuracy.py`; see its docstring for the setups.",
        "",
        "| | model | params (M) | batch | iterations | iterations / s | minutes to target "
        f"| best {metric} | last epoch: minutes, {metric}, AP50 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, run in runs.items():
        last = run["last"]
        last_text = (
            f"{last['minutes']:.1f}, {last[metric]:.3f}, {last['bbox_mAP_50']:.3f}" if last else "—"
        )
        rate = 1 / run["s_per_iter"] if run["s_per_iter"] else None
        lines.append(
            f"| {NAMES[key]} | {_model_text(key, run)} | {run['params_m']:.1f} "
            f"| {run.get('batch', '—')} | {run['iterations']} | {common.fmt(rate, '.2f')} "
            f"| {common.fmt(run['minutes_to_target'], '.1f', 'not reached')} "
            f"| {common.fmt(run['best'], '.3f')} | {last_text} |"
        )
    reached = {k: r["minutes_to_target"] for k, r in runs.items() if r["minutes_to_target"]}
    if "ours" in reached and len(reached) > 1:
        lines.append("")
        lines += [
            f"{NAMES[k]} needs {m / reached['ours']:.2f}x the minutes ours needs to reach "
            "the target."
            for k, m in reached.items()
            if k != "ours"
        ]
    for key, run in runs.items():
        lines += [
            "",
            f"## {NAMES[key]}",
            "",
            "| epoch | iteration | minutes | bbox mAP | AP50 |",
            "|---:|---:|---:|---:|---:|",
            *(
                f"| {r['epoch']} | {r.get('iteration') or '—'} | {r['minutes']:.2f} "
                f"| {r['bbox_mAP']:.3f} | {r['bbox_mAP_50']:.3f} |"
                for r in run["rows"]
            ),
        ]
        if not run["rows"]:
            lines.append("| — | — | — | — | — |")
    plot = args.out.with_suffix(".png")
    if plot.exists():
        lines += ["", f"![{metric} vs minutes]({plot.name})"]
    return "\n".join(lines) + "\n"


def _model_text(key: str, run: dict) -> str:
    if key == "ours":
        return "DINO, ViT (patch 8, dim 96, depth 4) + simple pyramid, 2 enc + 3 dec layers, d 128"
    if key == "hf-deformable":
        return (
            f"Deformable DETR two-stage + box refine + encoder proposal loss, timm "
            f"{run['backbone']}, 4 levels, 100 queries, 3 enc + 3 dec layers, d 128, "
            f"AdamW lr {run['lr']:g}"
        )
    if key == "visionfm-deformable":
        return f"the same model and recipe from visionfm's modules (`{CONFIGS[key]}`)"
    return (
        f"RT-DETRv2-S, {run['backbone']}, 300 queries + 100 denoising, 3 dec layers, d 256, "
        f"AdamW lr {run['lr']:g}, warm-up {run['warmup']} it, EMA"
    )


def _plot(result: dict, path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result["metric"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in NAMES.items():
        if key in result and result[key]["rows"]:
            rows = result[key]["rows"]
            label = label.split(" (`")[0] if key == "ours" else label.replace("`", "")
            ax.plot(
                [r["minutes"] for r in rows], [r[metric] for r in rows], marker="o", label=label
            )
    ax.axhline(target, color="grey", linestyle="--", label=f"target {target:g}")
    ax.set(xlabel="minutes of training (evaluations included)", ylabel=f"COCO {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _which(values: list[str]) -> list[str]:
    """--which values, aliases expanded, each once, in the order given."""
    keys = [k for v in values for k in ALIASES.get(v, [v])]
    return list(dict.fromkeys(keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--which",
        nargs="+",
        choices=[*NAMES, *ALIASES],
        default=["ours", "hf-deformable", "hf-rtdetr"],
        help="any of ours, hf-deformable, hf-rtdetr (hf = hf-deformable, both = ours hf)",
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="train ours and one HF baseline at once, --threads each",
    )
    parser.add_argument("--minutes", type=float, default=15.0, help="time budget of each")
    parser.add_argument("--target-ap", type=float, default=0.5)
    parser.add_argument("--metric", choices=METRICS, default="bbox_mAP")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--ours-procs",
        type=int,
        default=2,
        help="ours: DDP processes (torchrun, gloo) sharing --threads, as `make demo` trains",
    )
    parser.add_argument("--data", type=Path, default=common.ROOT / "data" / "synthetic")
    parser.add_argument("--max-train-images", type=int, help="first N training images only")
    parser.add_argument("--max-val-images", type=int, help="first N validation images only")
    parser.add_argument("--epochs", type=int, help="ours: override max_epochs; HF: stop after N")
    parser.add_argument("--hf-backbone", default="resnet18", help="timm model name")
    parser.add_argument("--hf-lr", type=float, default=2e-4, help="Deformable DETR's AdamW lr")
    parser.add_argument("--rtdetr-lr", type=float, default=1e-4, help="RT-DETRv2's AdamW lr")
    parser.add_argument(
        "--rtdetr-warmup", type=int, default=2000, help="RT-DETRv2's linear lr warm-up (iters)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=common.ROOT / "work_dirs" / "time_to_accuracy"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    which = _which(args.which)
    baselines = [k for k in which if k not in CONFIGS]
    if args.side_by_side and ("ours" not in which or len(baselines) != 1):
        parser.error("--side-by-side trains ours and one HF baseline: e.g. --which ours hf-rtdetr")

    run_dir = args.work_dir / datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    annotations = args.data / "annotations"
    train_ann = subset_annotations(
        annotations / "instances_train.json",
        run_dir / "instances_train.json",
        args.max_train_images,
        with_boxes=True,
    )
    val_ann = subset_annotations(
        annotations / "instances_val.json",
        run_dir / "instances_val.json",
        args.max_val_images,
        with_boxes=False,
    )
    result: dict = dict(
        metric=args.metric,
        target=args.target_ap,
        minutes=args.minutes,
        threads=args.threads,
        train_images=len(json.loads(train_ann.read_text())["images"]),
        val_images=len(json.loads(val_ann.read_text())["images"]),
    )
    if args.side_by_side:  # ours is a subprocess: watch it from a thread while HF trains here
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            ours = pool.submit(run_ours, args, train_ann, val_ann, run_dir)
            run = BASELINES[baselines[0]](args, train_ann, val_ann)
            result[baselines[0]] = summarise(run, args.metric, args.target_ap)
            result["ours"] = summarise(ours.result(), args.metric, args.target_ap)
    else:
        for key in which:
            run = (
                run_ours(args, train_ann, val_ann, run_dir, key)
                if key in CONFIGS
                else BASELINES[key](args, train_ann, val_ann)
            )
            result[key] = summarise(run, args.metric, args.target_ap)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    _plot(result, args.out.with_suffix(".png"), args.target_ap)  # before the markdown links it
    markdown = _markdown(result, args)
    common.write_results(args.out, markdown, args.json, result)
    print(markdown)


if __name__ == "__main__":
    main()
