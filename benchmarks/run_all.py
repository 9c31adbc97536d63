"""Run every benchmark suite and write one report, ``benchmarks/results/REPORT.md``.

    python benchmarks/run_all.py [--quick] [--suites attention vit ...] [--threads 2]
                                 [--compile] [--results-dir DIR] [--report-only]

Each suite runs as a subprocess with its own command line (``--threads``, ``--out`` for its
markdown table and ``--json`` for its rows, in the results directory); its output is shown
as it runs and kept in ``work_dirs/benchmark_logs/<suite>.log``. A suite that fails is
reported as such and the others still run. ``--quick`` gives each suite its smallest
settings (see ``SUITES``) and, so that it does not overwrite the full tables, writes to
``benchmarks/results/quick/`` unless ``--results-dir`` says otherwise; its numbers are a
smoke test, not measurements to quote.

The report: the machine (CPU model, cores, torch / timm / transformers versions, GPU if
any), a targets table parsed from the suites' JSON (see ``targets``), then every suite's own
markdown (each case with our figure, the reference's measured in the same process, and the
ratio), with plots where a curve says more than a table (attention time and memory against
sequence length; AP against minutes for time to accuracy). ``--report-only`` rebuilds the
report from the files already in the results directory, running nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common as common

LOGS = common.ROOT / "work_dirs" / "benchmark_logs"


@dataclass
class Suite:
    title: str
    script: str
    stem: str  # <stem>.md and <stem>.json in the results directory
    quick: list[str] = field(default_factory=list)  # extra arguments in --quick mode
    full: list[str] = field(default_factory=list)  # extra arguments otherwise
    threads: int | None = None  # instead of --threads (a suite that runs two jobs at once)


SUITES = {
    "attention": Suite(
        "Attention: default path vs math reference",
        "bench_attention.py",
        "attention_cpu",
        quick=["--sizes", "512", "4096", "--min-repeats", "1", "--budget-s", "0"],
    ),
    "vit": Suite(
        "ViT forward: visionfm vs timm", "bench_vit.py", "vit_cpu", ["--runs", "3", "--warmup", "1"]
    ),
    "backbones": Suite(
        "Backbones: visionfm vs timm vs HF transformers",
        "bench_backbones.py",
        "backbones_cpu",
        quick=["--sizes", "224", "--batches", "1", "--repeats", "3"],
        full=["--repeats", "5"],  # 64 fresh processes; 7 repeats take ~30 min here
    ),
    "deform_attn": Suite(
        "Multi-scale deformable attention: visionfm vs HF transformers",
        "bench_deform_attn.py",
        "deform_attn_cpu",
        quick=["--runs", "3", "--warmup", "1"],
    ),
    "detector": Suite(
        "Detectors: latency, training throughput and memory, vs HF Deformable DETR",
        "bench_detector.py",
        "detector_cpu",
        quick=["--num", "3", "--no-large", "--train-iters", "1", "--train-warmup", "1"],
    ),
    "mfu": Suite("Model FLOP utilisation", "bench_mfu.py", "mfu", quick=["--quick"]),
    "grounding": Suite(
        "Grounding DINO: visionfm vs HF transformers, prompt cache on video",
        "bench_grounding.py",
        "grounding",
        quick=["--size", "160", "--runs", "2", "--frames", "2"],
    ),
    "published_detr": Suite(
        "Published Deformable DETR (R50 plain / box refine / two-stage): visionfm vs HF",
        "bench_published_detr.py",
        "published_detr",
        quick=["--size", "256", "320", "--runs", "1", "--variants", "plain"],
    ),
    "published_rf_detr": Suite(
        "Published RF-DETR-S: visionfm vs HF",
        "bench_published_rf_detr.py",
        "published_rf_detr",
        quick=["--size", "320", "--runs", "1"],  # 400 tokens: >= the 300 queries
    ),
    "published_mask2former": Suite(
        "Published Mask2Former Swin-T: visionfm vs HF",
        "bench_published_mask2former.py",
        "published_mask2former",
        quick=["--size", "192", "--runs", "1"],
    ),
    "point_scale": Suite(
        "Point clouds: PTv3 vs kNN attention at 10k-1M points, ops vs loops",
        "bench_point_scale.py",
        "point_scale",
        quick=["--quick"],
        threads=1,  # on a shared 2-core machine 2 OpenMP threads stall on each other
    ),
    "time_to_accuracy": Suite(
        "Time to accuracy: DINO demo vs HF Deformable DETR / RT-DETRv2",
        "bench_time_to_accuracy.py",
        "time_to_accuracy",
        quick=["--minutes", "0.5", "--max-train-images", "40", "--max-val-images", "16"],
        # one after the other, each alone on the 2 cores, 15 minutes each (issue 18's run);
        # RT-DETRv2's 2000-iteration warm-up would outlast the budget (see its docstring)
        full=[
            "--minutes",
            "15",
            "--which",
            "ours",
            "hf-deformable",
            "hf-rtdetr",
            "--rtdetr-warmup",
            "200",
        ],
        threads=2,
    ),
}


# ---------------------------------------------------------------- running


def run_suite(name: str, suite: Suite, args) -> dict:
    """Runs one suite, its output teed to the terminal and its log; -> status dict."""
    cmd = [sys.executable, str(common.ROOT / "benchmarks" / suite.script)]
    cmd += suite.quick if args.quick else suite.full
    cmd += ["--threads", str(suite.threads or args.threads)]
    cmd += ["--out", str(args.results_dir / f"{suite.stem}.md")]
    cmd += ["--json", str(args.results_dir / f"{suite.stem}.json")]
    if name == "mfu" and args.compile:
        cmd.append("--compile")
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}.log"
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=common.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        while chunk := os.read(proc.stdout.fileno(), 4096):  # keeps tqdm's \r updates
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            out.write(chunk)
        proc.wait()
    minutes = (time.perf_counter() - start) / 60
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    print(f"=== {name}: {status} in {minutes:.1f} min; log {log}", flush=True)
    shown = " ".join([os.path.relpath(cmd[1], common.ROOT), *cmd[2:]])
    return dict(status=status, minutes=minutes, log=str(log), command=shown)


# ---------------------------------------------------------------- targets


def _load(results: Path, stem: str) -> dict | None:
    path = results / f"{stem}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _row(target: str, measured: str, passed: bool | None, source: str) -> dict:
    result = "NOT RUN" if passed is None else ("PASS" if passed else "MISS")
    return dict(target=target, measured=measured, result=result, source=source)


def backbone_target(results: Path) -> dict:
    """Every ours/timm wall-time ratio (bench_backbones and bench_vit) <= 1.0."""
    cases = []  # (label, ours / timm wall, ours / timm CPU)
    backbones = _load(results, "backbones_cpu")
    for r in backbones["rows"] if backbones else []:
        label = f"{r['family']} {r['size']} px b{r['batch']}"
        cases.append(
            (label, r["ms"]["ours"] / r["ms"]["timm"], r["cpu_ms"]["ours"] / r["cpu_ms"]["timm"])
        )
    vit = _load(results, "vit_cpu")
    for r in vit["rows"] if vit else []:
        cases.append(
            (f"{r['model']} {r['px']} px b1", r["ours"] / r["timm"], r["cpu_ours"] / r["cpu_timm"])
        )
    name = "every backbone forward: time ours / timm <= 1.0"
    if not cases:
        return _row(name, "no backbone results", None, "bench_backbones, bench_vit")
    worst = max(cases, key=lambda c: c[1])
    above = sum(c[1] > 1.0 for c in cases)
    measured = (
        f"worst {worst[1]:.3f} ({worst[0]}; CPU-time ratio {worst[2]:.3f}); "
        f"{above} of {len(cases)} cases above 1.0"
    )
    return _row(name, measured, above == 0, "bench_backbones, bench_vit")


def mfu_target(results: Path) -> list[dict]:
    """ViT-B/16 forward at batch 8 >= 70% of the measured float32 matmul rate (+ GPU info)."""
    mfu = _load(results, "mfu")
    name = "ViT-B/16 forward, batch 8: >= 70% of measured fp32 matmul FLOP/s"
    if mfu is None:
        return [_row(name, "no results", None, "bench_mfu")]
    cpu = mfu["cpu"]
    eager = cpu["vit"]["variants"]["eager"]
    measured = (
        f"{cpu['vit_fraction']:.1%} ({eager['tflops']:.3f} of "
        f"{cpu['matmul_peak_tflops']['float32']:.3f} TFLOP/s)"
    )
    passed = cpu["vit_fraction"] >= 0.70
    if cpu["vit"]["batch"] != 8:  # measured, but not what the target is about
        measured, passed = measured + f"; at batch {cpu['vit']['batch']}, not 8", None
    rows = [_row(name, measured, passed, "bench_mfu")]
    if "gpu" in mfu:
        train = mfu["gpu"]["train"]
        rows.append(
            dict(
                target=f"GPU ViT-L/16 train step, {train['tokens']} tokens: MFU vs "
                f"{mfu['peak_tflops']:g} TFLOP/s bf16 peak",
                measured=f"{train['mfu']:.1%} ({train['achieved_tflops']:.0f} TFLOP/s, "
                f"{mfu['gpu']['name']})",
                result="info",
                source="bench_mfu",
            )
        )
    return rows


def deform_target(results: Path) -> dict:
    """Deformable attention >= 1.5x faster than HF in every case, at <= HF's memory."""
    deform = _load(results, "deform_attn_cpu")
    name = "deformable attention: >= 1.5x faster than HF at <= its memory"
    if deform is None:
        return _row(name, "no results", None, "bench_deform_attn")
    rows = deform["rows"]
    slow = min(rows, key=lambda r: r["hf_ms"] / r["ours_ms"])
    speed = slow["hf_ms"] / slow["ours_ms"]
    where = f"{slow['threads']} thread(s), {slow['case']} {slow['mode']}"
    measured = f"slowest case {speed:.2f}x ({where})"
    memory = [r["ours_mib"] / r["hf_mib"] for r in rows if r.get("ours_mib") and r.get("hf_mib")]
    if memory:
        measured += f"; memory ours / HF at most {max(memory):.2f}"
    else:
        measured += "; memory not measured"
    measured += f"; OMP_WAIT_POLICY={deform.get('omp_wait_policy', 'unset')}"
    passed = speed >= 1.5 and bool(memory) and max(memory) <= 1.0
    return _row(name, measured, passed, "bench_deform_attn")


def attention_targets(results: Path, n: int = 4096) -> list[dict]:
    """At N = 4096, our peak memory <= 1/4 of math's, for each (bias, pass)."""
    attention = _load(results, "attention_cpu")
    name = f"attention at N={n}: peak memory <= 1/4 of math's"
    rows = [r for r in attention["rows"] if r["n"] == n] if attention else []
    if not rows:
        why = "no results" if attention is None else f"N={n} not in this run"
        return [_row(name, why, None, "bench_attention")]
    by_key = {(r["bias"], r["pass"], r["path"]): r for r in rows}
    out = []
    for bias in (False, True):
        for pas in ("fwd", "fwd+bwd"):
            ours, ref = by_key[bias, pas, "ours"], by_key[bias, pas, "math"]
            ratio = ours["peak_mb"] / ref["peak_mb"]
            measured = f"{ratio:.3f} ({ours['peak_mb']:.1f} vs {ref['peak_mb']:.1f} MB)"
            if bias and pas == "fwd+bwd":  # the bias gradient is an output both allocate
                grad = ours["heads"] * n * n * 4 / 2**20
                measured += (
                    f"; {(ours['peak_mb'] - grad) / (ref['peak_mb'] - grad):.3f} without the "
                    f"{grad:.0f} MB bias gradient both must allocate"
                )
            label = f"{name} ({'with' if bias else 'no'} bias, {pas})"
            out.append(_row(label, measured, ratio <= 0.25, "bench_attention"))
    return out


def time_to_accuracy_row(results: Path) -> dict | None:
    tta = _load(results, "time_to_accuracy")
    if tta is None:
        return None
    parts = []
    labels = {
        "ours": "ours",
        "hf": "HF",
        "hf-deformable": "HF Deformable",
        "hf-rtdetr": "HF RT-DETRv2",
    }
    for key, label in labels.items():
        if key in tta:
            run = tta[key]
            reached = run["minutes_to_target"]
            text = f"{reached:.1f} min" if reached is not None else "not reached"
            parts.append(f"{label}: {text} (best {run['best'] or 0:.3f})")
    # ours must reach the target in at most 2/3 of the minutes of the fastest HF baseline; a
    # baseline that does not reach it within the budget needs more than the budget
    passed = None
    baselines = [tta[k]["minutes_to_target"] for k in labels if k != "ours" and k in tta]
    if "ours" in tta and baselines:
        ours = tta["ours"]["minutes_to_target"]
        best = min(tta["minutes"] if hf is None else hf for hf in baselines)
        passed = ours is not None and ours <= 2 / 3 * best
    return _row(
        f"time to {tta['metric']} {tta['target']:g}: ours in <= 2/3 of the fastest HF "
        f"baseline's minutes ({tta['minutes']:g}-min budget, {tta['train_images']} training "
        "images)",
        "; ".join(parts),
        passed,
        "bench_time_to_accuracy",
    )


def detector_rows(results: Path) -> list[dict]:
    """Info rows: per detector config, latency (ours / HF, bf16 / fp32) and training."""
    detector = _load(results, "detector_cpu")
    if detector is None or "latency" not in detector:  # none, or the old single-row shape
        return []
    rows = []
    for case in detector["latency"]:
        v, name = case["variants"], Path(case["config"]).stem
        parts = [f"{v['ours fp32']['median_ms']:.0f} ms fp32, bf16 / fp32 "
                 f"{case['bf16_over_fp32']:.2f}"]  # fmt: skip
        if case.get("ours_over_hf") is not None:
            parts.append(f"ours / HF {case['ours_over_hf']:.2f}")
        rows.append(dict(
            target=f"{name}: inference latency per image ({case['input_hw'][0]} × "
            f"{case['input_hw'][1]})",
            measured="; ".join(parts), result="info", source="bench_detector",
        ))  # fmt: skip
    for case in detector["train"]:
        v, name = case["variants"], Path(case["config"]).stem
        parts = [f"{v['ours fp32']['images_per_s']:.2f} img/s, "
                 f"{common.fmt(v['ours fp32']['peak_mib'], '.0f')} MiB peak fp32"]  # fmt: skip
        parts += [
            f"{key} time / ours fp32 {v[key]['time_vs_ours_fp32']:.2f}"
            for key in ("ours bf16", "HF fp32")
            if key in v
        ]
        rows.append(dict(
            target=f"{name}: training step, batch {case['batch']}, {case['size']} px",
            measured="; ".join(parts), result="info", source="bench_detector",
        ))  # fmt: skip
    return rows


def published_detr_target(results: Path) -> dict:
    """Published Deformable DETR: ours / HF latency <= 1.0 for every variant run."""
    data = _load(results, "published_detr")
    name = "published Deformable DETR: latency ours / HF <= 1.0 (same weights and input)"
    if data is None:
        return _row(name, "no results", None, "bench_published_detr")
    ratios = {r["variant"]: r["median_ms"]["ours"] / r["median_ms"]["HF"] for r in data["results"]}
    measured = ", ".join(f"{v} {x:.2f}" for v, x in ratios.items())
    measured += f" (wall; {data['size'][0]} x {data['size'][1]}, load {data['load_average'][0]})"
    return _row(name, measured, max(ratios.values()) <= 1.0, "bench_published_detr")


def published_latency_target(results: Path, stem: str, model: str) -> dict:
    """A published model's latency: ours / HF <= 1.0 (same weights and input)."""
    data = _load(results, stem)
    name = f"published {model}: latency ours / HF <= 1.0 (same weights and input)"
    if data is None:
        return _row(name, "no results", None, f"bench_{stem}")
    ratio = data["latency"]["ours"]["median_ms"] / data["latency"]["HF"]["median_ms"]
    cpu = data["latency"]["ours"]["cpu_ms"] / data["latency"]["HF"]["cpu_ms"]
    measured = f"{ratio:.2f} (wall; CPU time {cpu:.2f}; {data['size']} px, load "
    measured += f"{data['load_average'][0]})"
    return _row(name, measured, ratio <= 1.0, f"bench_{stem}")


def point_scale_target(results: Path) -> dict:
    """Serialized attention measured at every size, with the kNN baseline's ratio."""
    data = _load(results, "point_scale")
    name = "point clouds: serialized attention measured at 10k / 100k / 1M points vs kNN"
    if data is None:
        return _row(name, "no results", None, "bench_point_scale")
    got = {(r["kind"], r["n"], r["pass"]): r for r in data["rows"]}
    parts, measured_all = [], True
    for n in data["sizes"]:
        ser, knn = got.get(("serialized", n, "fwd+bwd")), got.get(("knn", n, "fwd+bwd"))
        search = data["search"].get(str(n), {})
        if not ser or "ms" not in ser:
            measured_all = False
            parts.append(f"{n:,}: {ser.get('error', 'not run') if ser else 'not run'}")
        elif knn and "ms" in knn and "ms" in search:
            parts.append(
                f"{n:,}: (kNN search + blocks) / serialized {(search['ms'] + knn['ms']) / ser['ms']:.1f}"
            )
        else:
            parts.append(f"{n:,}: serialized {ser['ms']:.0f} ms, kNN baseline incomplete")
    return _row(name, "; ".join(parts) + " (fwd+bwd)", measured_all, "bench_point_scale")


def targets(results: Path) -> list[dict]:
    rows = [backbone_target(results), *mfu_target(results), deform_target(results)]
    rows += attention_targets(results)
    rows.append(published_detr_target(results))
    rows.append(published_latency_target(results, "published_rf_detr", "RF-DETR-S"))
    rows.append(published_latency_target(results, "published_mask2former", "Mask2Former Swin-T"))
    rows.append(point_scale_target(results))
    tta = time_to_accuracy_row(results)
    return rows + ([tta] if tta else []) + detector_rows(results)


# ---------------------------------------------------------------- plots


def plot_attention(results: Path) -> Path | None:
    """Time and peak memory vs N for ours and math (fwd, fwd+bwd; with / without bias)."""
    attention = _load(results, "attention_cpu")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return None
    if attention is None or len({r["n"] for r in attention["rows"]}) < 2:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for col, pas in enumerate(("fwd", "fwd+bwd")):
        for bias, style in ((False, "-"), (True, "--")):
            for path, color in (("ours", "tab:blue"), ("math", "tab:orange")):
                rows = sorted(
                    (r for r in attention["rows"] if (r["pass"], r["bias"], r["path"]) == (pas, bias, path)),
                    key=lambda r: r["n"],
                )  # fmt: skip
                label = f"{path}{' + bias' if bias else ''}"
                n = [r["n"] for r in rows]
                axes[0, col].plot(
                    n, [r["ms"] for r in rows], style, color=color, marker="o", label=label
                )
                axes[1, col].plot(
                    n, [r["peak_mb"] for r in rows], style, color=color, marker="o", label=label
                )
        axes[0, col].set(title=f"{pas}: time", ylabel="ms (median)")
        axes[1, col].set(title=f"{pas}: peak memory above inputs", ylabel="MB", xlabel="N tokens")
    sizes = sorted({r["n"] for r in attention["rows"]})
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = results / "attention_cpu.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- report


def machine() -> list[str]:
    import timm
    import torch

    try:
        import transformers

        hf = transformers.__version__
    except ImportError:
        hf = "not installed"
    gpu = (
        ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if torch.cuda.is_available()
        else "none"
    )
    return [
        f"- CPU: {common.cpu_model()}, {os.cpu_count()} logical cores "
        f"({torch.backends.cpu.get_cpu_capability()}); {platform.system()} {platform.release()}",
        f"- GPU: {gpu}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, timm "
        f"{timm.__version__}, transformers {hf}",
    ]


def _demote(markdown: str, levels: int = 1) -> str:
    """Pushes every markdown heading down ``levels`` levels (a suite's '# x' -> '## x')."""
    return "\n".join(
        "#" * levels + line if line.startswith("#") else line for line in markdown.splitlines()
    )


def write_report(args, statuses: dict[str, dict]) -> Path:
    results = args.results_dir
    plots = {"attention": plot_attention(results)}
    how = (
        "Rebuilt by `python benchmarks/run_all.py --report-only` from the results already "
        "there (each suite's table gives its own date, threads and settings)."
        if args.report_only
        else f"Written by `python benchmarks/run_all.py{' --quick' if args.quick else ''}`; "
        f"{args.threads} threads, OMP_WAIT_POLICY={common.omp_wait_policy()}."
    )
    lines = [
        "# Performance report",
        "",
        f"Date: {common.timestamp()}. {how}",
        "",
        *machine(),
        "",
    ]
    if args.quick:
        lines += [
            "**Quick mode**: every suite at its smallest settings (few repeats, few sizes); a "
            "smoke test of the suite, not numbers to quote.",
            "",
        ]
    lines += [
        "## Targets",
        "",
        "Parsed from the suites' JSON output (`run_all.py`, `targets()`); the worst case "
        "over every measured case counts.",
        "",
        "| target | measured | result | suite |",
        "|---|---|---|---|",
        *(
            f"| {t['target']} | {t['measured']} | **{t['result']}** | {t['source']} |"
            for t in targets(results)
        ),
        "",
    ]
    if statuses:
        lines += ["## Runs", "", "| suite | status | minutes | command |", "|---|---|---:|---|"]
        lines += [
            f"| {name} | {s['status']} | {s['minutes']:.1f} | `{s['command']}` |"
            for name, s in statuses.items()
        ]
        lines.append("")
    for name, suite in SUITES.items():
        md = results / f"{suite.stem}.md"
        if name not in args.suites and not md.exists():
            continue
        # the suite's own markdown, its title as this section's; notes under the title
        title, *body = _demote(md.read_text().strip()).split("\n") if md.exists() else [""]
        lines += [title or f"## {suite.title}", ""]
        if name in statuses and statuses[name]["status"] != "ok":
            lines += [f"The suite {statuses[name]['status']}; see `{statuses[name]['log']}`."]
            lines += ["(The table below is from an earlier run.)" if md.exists() else "", ""]
        elif md.exists() and statuses and name not in statuses:
            lines += [f"(From an earlier run: `{md.name}`.)", ""]
        lines += [*body, ""]
        if plots.get(name):
            lines += [f"![{name}]({plots[name].name})", ""]
    report = results / "REPORT.md"
    report.write_text("\n".join(lines))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each suite's smallest settings")
    parser.add_argument("--suites", nargs="+", choices=list(SUITES), default=list(SUITES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="bench_mfu: time torch.compile")
    parser.add_argument("--results-dir", type=Path, help="default benchmarks/results(/quick)")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild REPORT.md from existing results"
    )
    args = parser.parse_args()
    if args.results_dir is None:
        args.results_dir = common.RESULTS / "quick" if args.quick else common.RESULTS
    args.results_dir.mkdir(parents=True, exist_ok=True)

    statuses = {}
    if not args.report_only:
        for name in args.suites:
            statuses[name] = run_suite(name, SUITES[name], args)
    report = write_report(args, statuses)
    print(f"\nwrote {report}")
    failed = [name for name, s in statuses.items() if s["status"] != "ok"]
    if failed:
        sys.exit(f"failed suites: {', '.join(failed)}")


if __name__ == "__main__":
    main()
