"""Published Deformable DETR on CPU: per-image latency and peak memory of ours against HF
transformers' ``DeformableDetrForObjectDetection`` with the same weights and the same input.

    python benchmarks/bench_published_detr.py [--size 480 640] [--runs 5] [--threads 2]
        [--variants plain box_refine two_stage] [--out results/published_detr.md] [--json FILE]

The models: random HF Deformable DETRs of the published R50 architecture (SenseTime/
deformable-detr, -with-box-refine, -with-box-refine-two-stage: ResNet-50 from timm, d_model
256, 6 + 6 layers, 300 queries, 4 levels x 4 points, 91 classes; nothing is downloaded),
saved with ``save_pretrained`` and loaded into our ``TaskModel`` built by
``deformable_detr_model_config`` (the published-weights path of ``load_model_weights``).
Parameters HF initialises to zero get small random values, so that the compared boxes depend
on every layer. Per variant, in one process with the same threads:

- the outputs are held equal first: largest |ours - HF| of the last layer's logits and boxes
  on one image at half of ``--size`` in float64;
- latency: one forward (backbone + transformer + heads, batch 1, no pre- or
  post-processing) on the same normalised ``--size`` image, ours = ``model.head(
  model.extract_feat(x), None)``, HF = ``model(pixel_values=x)``, after one warm-up each,
  in turns (``_common.in_turns``); median and p90 of ``--runs``, and the median process
  CPU time (all threads; steadier than wall time when other processes share the cores);
- peak memory: in a fresh process per model (started with ``MALLOC_RETURNS_FREED``, so that
  freed memory leaves the resident set), the rise of resident memory over one forward after
  a warm-up one, above what was resident before it (``_common.peak_rss_mib``: the kernel's
  high-water mark reset through ``/proc/self/clear_refs``; outputs included).

The defaults (480 x 640, 5 runs, three variants) take about 2 to 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import _common as common
import torch
from tqdm import tqdm

OUT = common.RESULTS / "published_detr.md"
VARIANTS = {
    "plain": dict(with_box_refine=False, two_stage=False),
    "box_refine": dict(with_box_refine=True, two_stage=False),
    "two_stage": dict(with_box_refine=True, two_stage=True),
}
NAMES = {
    "plain": "SenseTime/deformable-detr",
    "box_refine": "SenseTime/deformable-detr-with-box-refine",
    "two_stage": "SenseTime/deformable-detr-with-box-refine-two-stage",
}
PUBLISHED_AP = {"plain": 44.5, "box_refine": 46.2, "two_stage": 46.9}


# ---------------------------------------------------------------- the two models


def save_hf_model(variant: str, folder: str) -> None:
    """A random HF model of the published architecture of ``variant``, saved to ``folder``."""
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    config = DeformableDetrConfig(
        use_timm_backbone=True,
        backbone="resnet50",
        use_pretrained_backbone=False,
        num_labels=91,
        **VARIANTS[variant],
    )
    torch.manual_seed(0)
    hf = DeformableDetrForObjectDetection(config).eval()
    with torch.no_grad():  # HF zeroes the last box layers: every box would be its reference
        for p in hf.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    hf.save_pretrained(folder)


def load_models(folder: str) -> tuple:
    """(HF model, ours) read from the saved ``folder``, each by its own loading path."""
    from transformers import DeformableDetrForObjectDetection

    from visionfm.engine.checkpoint import load_model_weights
    from visionfm.heads.detr.convert_deformable import deformable_detr_model_config
    from visionfm.registry import MODELS
    from visionfm.weights import read_checkpoint, read_hf_config

    hf = DeformableDetrForObjectDetection.from_pretrained(folder).eval()
    ours = MODELS.build(
        deformable_detr_model_config(read_checkpoint(folder), read_hf_config(folder))
    )
    load_model_weights(ours, folder)
    return hf, ours.eval()


def peak_worker(case: dict) -> dict:
    """In a fresh process (``MALLOC_RETURNS_FREED``): the peak memory of one forward of
    ``case['model']`` after a warm-up one."""
    torch.set_num_threads(case["threads"])
    with torch.no_grad():
        hf, ours = load_models(case["folder"])
        fn = common.detector_forwards(hf, ours, tuple(case["size"]))[case["model"]]
        fn()
        peak, exact = common.peak_rss_mib(fn)
    return dict(peak_mib=peak, exact=exact)


def measure(variant: str, size: tuple[int, int], runs: int, threads: int, bar) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        save_hf_model(variant, folder)
        hf, ours = load_models(folder)
        peaks, exact = {}, True
        for name in ("ours", "HF"):
            case = dict(folder=folder, model=name, size=list(size), threads=threads)
            got = common.spawn(__file__, case, common.MALLOC_RETURNS_FREED)
            peaks[name], exact = got["peak_mib"], exact and got["exact"]
            bar.update()
    small = (size[0] // 2, size[1] // 2)
    diff_logits, diff_boxes = common.max_differences(common.detector_forwards, hf, ours, small)
    bar.update()
    seconds, cpu = common.time_in_turns(
        common.detector_forwards(hf, ours, size), runs, warm_up=True, progress=bar.update
    )
    return dict(
        variant=variant,
        params_m=sum(p.numel() for p in ours.parameters()) / 1e6,
        diff_logits=diff_logits,
        diff_boxes=diff_boxes,
        diff_size=list(small),
        median_ms=common.median_ms(seconds),
        p90_ms=common.p90_ms(seconds),
        cpu_ms=common.median_ms(cpu),
        peak_mib=peaks,
        peak_exact=exact,
    )


# ---------------------------------------------------------------- report


def markdown(data: dict) -> str:
    h, w = data["size"]
    lines = [
        f"# Published Deformable DETR on CPU: ours vs HF ({data['date']})",
        "",
        common.run_line(data),
        "",
        *common.busy_note(
            data,
            f"**The machine was busy** (1-minute load average above the {data['threads']} "
            "threads used): these timings carry other processes' share of the cores; the ours "
            "/ HF ratio, measured in turns, is the figure to read; rerun on an idle machine to "
            "quote times.",
        ),
        "Models: random weights of the published R50 architectures (ResNet-50, d_model 256, "
        "6 + 6 layers, 300 queries, 4 levels x 4 points, 91 classes), saved by HF and loaded "
        "into ours by the published-weights path. One forward (backbone + transformer + heads, "
        f"batch 1, no pre- / post-processing) on the same {h} x {w} float32 input; median and "
        f"p90 of {data['runs']} runs each after one warm-up, the two in turns; CPU s: median "
        "process CPU time per forward over all threads. Peak memory: the "
        "rise of resident memory over one forward after a warm-up, in a fresh process per model "
        "with glibc returning freed memory at once (kernel high-water mark reset through "
        "/proc/self/clear_refs), outputs included"
        + ("" if data["peak_exact"] else f" ({common.INEXACT_PEAK_NOTE})")
        + ". max Δ: largest |ours - HF| difference of the last layer's logits / boxes in float64 at "
        "half the size.",
        "",
        "| variant (published AP) | params M | max Δ logits / boxes | ours ms (p90) | "
        "HF ms (p90) | ours / HF | CPU s ours / HF | ours peak MiB | HF peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        med, p90, peak, cpu = r["median_ms"], r["p90_ms"], r["peak_mib"], r["cpu_ms"]
        lines.append(
            f"| {NAMES[r['variant']]} ({PUBLISHED_AP[r['variant']]}) | {r['params_m']:.1f} | "
            f"{r['diff_logits']:.1e} / {r['diff_boxes']:.1e} | "
            f"{med['ours']:.0f} ({p90['ours']:.0f}) | {med['HF']:.0f} ({p90['HF']:.0f}) | "
            f"{med['ours'] / med['HF']:.2f} | {cpu['ours'] / 1e3:.2f} / {cpu['HF'] / 1e3:.2f} "
            f"({cpu['ours'] / cpu['HF']:.2f}) | {peak['ours']:.0f} | {peak['HF']:.0f} |"
        )
    lines += [
        "",
        "Published AP: COCO val2017 box AP of the released original checkpoints "
        "(fundamentalvision/Deformable-DETR README, Main Results).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(peak_worker(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), help="H W, px")
    parser.add_argument("--runs", type=int, default=5, help="timed forwards per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    per_variant = 2 + 1 + 2 + 2 * args.runs
    results = []
    with (
        torch.no_grad(),
        tqdm(total=per_variant * len(args.variants), desc="published DETR", unit="run") as bar,
    ):
        for variant in args.variants:
            results.append(measure(variant, tuple(args.size), args.runs, args.threads, bar))
    data = dict(
        **common.run_facts("benchmarks/bench_published_detr.py", args.threads, load_before),
        size=list(args.size),
        runs=args.runs,
        peak_exact=all(r["peak_exact"] for r in results),
        results=results,
    )
    common.write_results(args.out, markdown(data), args.json, data)
    print(markdown(data))


if __name__ == "__main__":
    main()
