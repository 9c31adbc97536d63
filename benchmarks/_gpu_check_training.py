"""Sections 3 and 5 of the GPU check (``benchmarks/gpu_check.py``): mixed-precision training of
the demo detector, and its time to bbox AP; the synthetic data they train on and the hook that
records their losses, times and validation metrics. Each section takes the run's ``ctx`` and
returns ``{'status', 'summary', 'lines' (markdown), 'data' (for the .json)}``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _common as common
from _gpu_check_common import FAIL, SKIP, error_line, judge, overall, peak_gib, release, reset_peak
from mmengine.hooks import Hook

DEMO_CONFIG = common.ROOT / "configs/dino/dino_vit-t_synthetic.py"


# ---------------------------------------------------------------- training runs (3 and 5)


class SyntheticData:
    """The synthetic world on disk (``tools/make_synthetic.py``), once per (train, val) size.

    ``background``: the tool runs in a subprocess from the start of the check, so that the
    data is written while the first sections run (the full run's 2,200 images take tens of
    seconds); otherwise its ``make_synthetic`` runs in this process when the data is needed
    (tiny --quick sets: a subprocess would spend longer importing than writing).
    """

    def __init__(self, root: Path, background: bool) -> None:
        self.root, self.background, self.procs = root, background, {}

    def _out(self, num_train: int, num_val: int) -> Path:
        return self.root / f"synthetic_{num_train}_{num_val}"

    def start(self, num_train: int, num_val: int) -> None:
        if not self.background or (num_train, num_val) in self.procs:
            return
        log = open(self.root / f"make_synthetic_{num_train}_{num_val}.log", "w")  # noqa: SIM115
        cmd = [
            sys.executable,
            str(common.ROOT / "tools/make_synthetic.py"),
            "--out",
            str(self._out(num_train, num_val)),
            "--num-train",
            str(num_train),
            "--num-val",
            str(num_val),
            "--seed",
            "0",
            "--num-videos",
            "0",
            "--no-progress",
        ]
        self.procs[(num_train, num_val)] = subprocess.Popen(cmd, stdout=log, stderr=log), log

    def wait(self, num_train: int, num_val: int) -> Path:
        """The data folder, once written; RuntimeError with the tool's output if it failed."""
        out = self._out(num_train, num_val)
        if not self.background:
            if not out.exists():
                from visionfm.data.synthetic import make_synthetic

                make_synthetic(out, num_train, num_val, seed=0, num_videos=0, progress=False)
            return out
        self.start(num_train, num_val)
        proc, log = self.procs[(num_train, num_val)]
        proc.wait()
        log.close()
        if proc.returncode != 0:
            tail = Path(log.name).read_text()[-2000:]
            raise RuntimeError(f"tools/make_synthetic.py exited with {proc.returncode}:\n{tail}")
        return out


class BudgetSpent(Exception):
    """Raised by ``Recorder`` when the time budget has passed."""


class Recorder(Hook):
    """Loss of every iteration, its time, the loss scaler's scale; validation metrics with the
    minutes since training started (each reported through ``progress``). Stops training once
    ``target`` = (metric, value) is reached (after that epoch's validation) or ``budget_s``
    has passed (at once, raising ``BudgetSpent``)."""

    priority = "VERY_LOW"

    def __init__(
        self,
        budget_s: float = math.inf,
        target: tuple[str, float] | None = None,
        progress: Callable[[str], object] = print,
    ):
        self.budget_s, self.target, self.progress = budget_s, target, progress
        self.losses, self.times, self.scales, self.curve = [], [], [], []

    def before_train(self, runner) -> None:
        self.start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(float(outputs["loss"].detach()))  # a sync: the work is finished
        self.times.append(time.perf_counter() - self.start)
        scaler = getattr(runner.optim_wrapper, "loss_scaler", None)
        self.scales.append(None if scaler is None else float(scaler.get_scale()))
        if self.times[-1] > self.budget_s:
            raise BudgetSpent

    def after_val_epoch(self, runner, metrics=None) -> None:
        minutes = (time.perf_counter() - self.start) / 60
        point = dict(
            epoch=runner.epoch,
            iteration=runner.iter,
            minutes=minutes,
            **{k: float(v) for k, v in (metrics or {}).items()},
        )
        self.curve.append(point)
        value = point.get(self.target[0], math.nan) if self.target else math.nan
        self.progress(
            f"epoch {point['epoch']}, iteration {point['iteration']}, "
            f"{minutes:.2f} min: {self.target[0] if self.target else ''} {value:.3f}"
        )
        if minutes * 60 > self.budget_s:
            point["after_budget"] = True
        elif self.target and value >= self.target[1]:
            runner.train_loop.stop_training = True


def demo_runner(ctx, data_root: Path, name: str, options: dict, recorder: Recorder):
    """A runner of the demo config on ``data_root`` in a work dir of its own, logging quietly,
    with ``recorder`` registered; ``options`` override the config."""
    from visionfm.engine import build_runner, load_config

    run_name = f"gpu_check_{name}_{os.getpid()}"
    workers = 0 if ctx.device_type == "cpu" else 4
    cfg = load_config(
        str(DEMO_CONFIG),
        {
            "data_root": f"{data_root}/",
            "work_dir": str(ctx.tmp / name),
            "experiment_name": run_name,  # a logger, message hub and visualizer of its own
            "visualizer.name": run_name,
            "visualizer.vis_backends": [dict(type="LocalVisBackend")],
            "train_dataloader.num_workers": workers,
            "train_dataloader.persistent_workers": workers > 0,
            "val_dataloader.num_workers": workers,
            "val_dataloader.persistent_workers": workers > 0,
            "default_hooks.checkpoint": None,
            "default_hooks.logger.interval": 50,
            "log_level": "WARNING",
            "nan_policy": "skip",
            **options,
        },
    )
    runner = build_runner(cfg)
    runner.register_hook(recorder)
    return runner


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _precision_options(precision: str, device_type: str) -> dict | str:
    """Config overrides for a precision, or why it cannot run on this device."""
    if precision == "fp32":
        return {}
    dtype = {"bf16": "bfloat16", "fp16": "float16"}[precision]
    if device_type == "cuda":  # mmengine's AmpOptimWrapper: autocast + a dynamic loss scaler
        return {
            "optim_wrapper.type": "AmpOptimWrapper",
            "optim_wrapper.dtype": dtype,
            "optim_wrapper.loss_scale": "dynamic",
        }
    if precision == "fp16":
        return "float16 training needs a loss scaler, which mmengine's AmpOptimWrapper has on CUDA only"
    return {
        "optim_wrapper.type": "AutocastOptimWrapper",
        "optim_wrapper.dtype": dtype,
        "optim_wrapper.device_type": device_type,
    }


def _amp_run(ctx, data_root: Path, precision: str, options: dict, epochs: int) -> dict:
    """One training run of section 3 -> its table row."""
    reset_peak(ctx.device)
    rec = Recorder(progress=ctx.progress)
    runner = demo_runner(
        ctx,
        data_root,
        f"amp_{precision}",
        {
            **options,
            "train_cfg.max_epochs": epochs,
            "train_dataloader.batch_size": ctx.batch,
            "val_dataloader": None,
            "val_cfg": None,
            "val_evaluator": None,
        },
        rec,
    )
    runner.train()
    n, warm = len(rec.losses), min(10, len(rec.losses) // 2)
    k = max(1, min(20, n // 4))
    row = dict(
        precision=precision,
        iterations=n,
        first_loss=_mean(rec.losses[:k]),
        last_loss=_mean(rec.losses[-k:]),
        non_finite=sum(not math.isfinite(v) for v in rec.losses),
        nan_skipped=runner.message_hub.get_info("nan_skipped", 0),
        scaler_skips=sum(1 for a, b in zip(rec.scales, rec.scales[1:]) if a and b and b < a),
        iters_per_s=(n - warm) / (rec.times[-1] - rec.times[warm - 1]) if warm else None,
        peak_gib=peak_gib(ctx.device),
    )
    dropped = row["last_loss"] < 0.9 * row["first_loss"]
    row["status"] = overall([judge(row["non_finite"] == 0), judge(dropped, not ctx.quick)])
    return row


def amp_training_section(ctx) -> dict:
    """Section 3 (module doc)."""
    data_root = ctx.data.wait(*ctx.amp_images)
    epochs = 1 if ctx.quick else 8  # 200 images, batch 8: 25 iterations an epoch
    rows = []
    for precision in ("fp32", "bf16", "fp16"):
        options = _precision_options(precision, ctx.device_type)
        if isinstance(options, str):
            rows.append(dict(precision=precision, status=SKIP, reason=options))
            continue
        try:
            rows.append(_amp_run(ctx, data_root, precision, options, epochs))
        except Exception as err:  # one precision failing does not hide the others
            rows.append(dict(precision=precision, status=FAIL, reason=error_line(err)))
            del err
        release(ctx)
        ctx.progress(f"amp_training {precision}: {rows[-1]['status']}")
    lines = [
        f"The demo detector on {ctx.amp_images[0]} synthetic images, batch {ctx.batch}, "
        f"{epochs} epochs (its schedule: warm-up, cosine); loss = mean of the first / last "
        "k = min(20, n / 4) iterations' summed loss. PASS: no non-finite loss and the last "
        "below 0.9 x the first. Loss-scaler skips: steps where the dynamic scale fell "
        "(overflowing float16 gradients: that step is skipped by design).",
        "",
        "| precision | iterations | loss first -> last | non-finite losses | steps skipped "
        "(nan guard) | loss-scaler skips | iterations/s | peak GiB | status |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "reason" in r:
            lines.append(f"| {r['precision']} | — | {r['reason']} | | | | | | {r['status']} |")
            continue
        lines.append(
            f"| {r['precision']} | {r['iterations']} | {r['first_loss']:.3f} -> "
            f"{r['last_loss']:.3f} | {r['non_finite']} | {r['nan_skipped']} | "
            f"{r['scaler_skips']} | {common.fmt(r['iters_per_s'], '.1f')} | "
            f"{common.fmt(r['peak_gib'], '.2f')} | {r['status']} |"
        )
    summary = "; ".join(
        f"{r['precision']} {r['status']}"
        + (f" ({r['first_loss']:.2f} -> {r['last_loss']:.2f})" if "reason" not in r else "")
        for r in rows
    )
    return dict(
        status=overall([r["status"] for r in rows]), summary=summary, lines=lines, data=rows
    )


# ---------------------------------------------------------------- 5. time to AP


def time_to_ap_section(ctx) -> dict:
    """Section 5 (module doc)."""
    data_root = ctx.data.wait(*ctx.tta_images)
    metric = "coco/bbox_mAP"
    rec = Recorder(ctx.tta_minutes * 60, (metric, ctx.target_ap), ctx.progress)
    options = {"train_dataloader.batch_size": ctx.batch}
    if ctx.quick:
        options["train_cfg.max_epochs"] = 2
    runner = demo_runner(ctx, data_root, "tta", options, rec)
    ended = "the schedule's last epoch"
    try:
        runner.train()
    except BudgetSpent:
        ended = "the time budget"
    if rec.curve and rec.curve[-1].get(metric, -1) >= ctx.target_ap:
        ended = "reaching the target"
    curve = [p for p in rec.curve if not p.get("after_budget")]
    reached = next((p for p in curve if p.get(metric, -1) >= ctx.target_ap), None)
    best = max((p.get(metric, -1) for p in curve), default=None)
    iters_per_s = len(rec.times) / rec.times[-1] if rec.times else None
    status = judge(reached is not None, not ctx.quick)
    lines = [
        f"The demo config on {ctx.tta_images[0]} / {ctx.tta_images[1]} synthetic images, batch "
        f"{ctx.batch} (lr scaled to it by auto_scale_lr), EMA weights validated after every "
        f"epoch; budget {ctx.tta_minutes:g} min from the start of training, evaluations "
        f"included (one ending after it does not count). Target {metric} >= {ctx.target_ap}. "
        f"{len(rec.times)} iterations at {common.fmt(iters_per_s, '.1f')} iterations/s overall; "
        f"training ended at {ended}.",
        "",
        "| epoch | iteration | minutes | bbox AP | AP50 |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {p['epoch']} | {p['iteration']} | {p['minutes']:.2f} | "
        f"{p.get(metric, math.nan):.3f} | {p.get('coco/bbox_mAP_50', math.nan):.3f} |"
        for p in curve
    ]
    if reached:
        summary = f"AP {reached[metric]:.3f} >= {ctx.target_ap} after {reached['minutes']:.2f} min"
    else:
        best_text = "no evaluation" if best is None else f"best {best:.3f}"
        summary = f"AP {ctx.target_ap} not reached ({best_text}; training ended at {ended})"
    return dict(
        status=status,
        summary=summary,
        lines=lines,
        data=dict(curve=curve, reached=reached, iterations=len(rec.times), ended=ended),
    )
