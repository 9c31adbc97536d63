"""Multi-scale deformable attention on CPU: visionfm's op vs HF transformers' pure-PyTorch one.

    python benchmarks/bench_deform_attn.py [--threads 2 1] [--runs 7] [--warmup 2] [--append]
                                           [--out FILE] [--json FILE]

Deformable DETR sizes: batch 2, a 512 x 512 image at strides 8, 16, 32, 64 (four
levels, S = 5440 positions), 256 channels in 8 heads, 4 points per head and level;
the decoder case has Q = 900 queries, the encoder case one query per position
(Q = S). Each case runs forward under ``torch.no_grad()`` and forward + backward
(gradients of value, sampling locations and attention weights). Sampling locations
are reference points (random for the decoder, the query's own pixel centre for the
encoder) plus normal offsets of two pixels (of each level) standard deviation.

Both implementations get the same inputs; their outputs and gradients are checked
to agree first. Time: wall clock, ours and HF alternately (so that load drift hits
both alike), median of ``--runs`` after ``--warmup`` runs. Peak memory: each
(case, mode, implementation) runs in a fresh subprocess with glibc's mmap threshold
fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``), so every tensor of that size or more is
returned to the OS when freed and the resident set follows the live tensors; the
subprocess builds the inputs, runs once to warm up, resets the kernel's peak-RSS
mark (``/proc/self/clear_refs``), runs once more and reports peak RSS (``VmHWM``)
minus the RSS before the run. This counts every allocation (also those made outside
PyTorch's allocator, e.g. by MKL) but not the inputs, and includes the output and
the input gradients. Linux only.

Writes a markdown table to ``benchmarks/results/deform_attn_cpu.md`` (``--append``
adds a section, e.g. for a run with another ``OMP_WAIT_POLICY``, which the section
records).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
from pathlib import Path

import _common as common
import torch
from tqdm import tqdm

OUT = common.RESULTS / "deform_attn_cpu.md"
BATCH, IMAGE, STRIDES = 2, 512, (8, 16, 32, 64)
CHANNELS, HEADS, POINTS, DECODER_QUERIES = 256, 8, 4, 900
CASES = ("decoder", "encoder")
MODES = ("forward", "forward+backward")


def make_inputs(case: str, grad: bool, seed: int = 0) -> dict:
    """value (B, S, heads, D), spatial_shapes (L, 2), level_start_index (L,),
    sampling_locations (B, Q, heads, L, P, 2), attention_weights (B, Q, heads, L, P)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([(IMAGE // s, IMAGE // s) for s in STRIDES])
    sizes = shapes.prod(1)
    length, levels = int(sizes.sum()), len(STRIDES)
    if case == "decoder":
        ref = torch.rand(BATCH, DECODER_QUERIES, 2, generator=gen)
    else:  # every position queries from its own pixel centre
        centres = []
        for h, w in shapes.tolist():
            x, y = torch.meshgrid(
                (torch.arange(w) + 0.5) / w, (torch.arange(h) + 0.5) / h, indexing="xy"
            )
            centres.append(torch.stack([x, y], -1).view(-1, 2))
        ref = torch.cat(centres).expand(BATCH, length, 2)
    queries = ref.shape[1]
    pixel = 1 / shapes.flip(-1).float()[:, None]  # (L, 1, 2) one pixel as (1 / W, 1 / H)
    offsets = 2.0 * pixel * torch.randn(BATCH, queries, HEADS, levels, POINTS, 2, generator=gen)
    locations = ref[:, :, None, None, None, :] + offsets
    logits = torch.randn(BATCH, queries, HEADS, levels * POINTS, generator=gen)
    weights = logits.softmax(-1).view(BATCH, queries, HEADS, levels, POINTS)
    value = torch.randn(BATCH, length, HEADS, CHANNELS // HEADS, generator=gen)
    return dict(
        value=value.requires_grad_(grad),
        spatial_shapes=shapes,
        level_start_index=sizes.cumsum(0) - sizes,
        sampling_locations=locations.contiguous().requires_grad_(grad),
        attention_weights=weights.requires_grad_(grad),
    )


def implementations() -> dict:
    """name -> fn(inputs) -> (B, Q, C)."""
    from transformers.models.deformable_detr.modeling_deformable_detr import (
        MultiScaleDeformableAttention as HFDeformAttn,
    )

    from visionfm.ops.deform_attn import multi_scale_deformable_attention

    hf = HFDeformAttn()

    def ours(x: dict) -> torch.Tensor:
        return multi_scale_deformable_attention(
            x["value"],
            x["spatial_shapes"],
            x["level_start_index"],
            x["sampling_locations"],
            x["attention_weights"],
        )

    def hf_fn(x: dict) -> torch.Tensor:
        shapes = x["spatial_shapes"]
        return hf(
            x["value"],
            shapes,
            [tuple(s) for s in shapes.tolist()],
            x["level_start_index"],
            x["sampling_locations"],
            x["attention_weights"],
            64,
        )

    return {"ours": ours, "hf": hf_fn}


def run_once(fn, inputs: dict, mode: str, cotangent: torch.Tensor | None) -> None:
    if mode == "forward":
        with torch.no_grad():
            fn(inputs)
        return
    grads = [inputs[k] for k in ("value", "sampling_locations", "attention_weights")]
    torch.autograd.grad(fn(inputs), grads, cotangent)


def check_agreement(impls: dict, case: str) -> float:
    """Max abs difference of outputs and input gradients between the implementations."""
    inputs = make_inputs(case, grad=True)
    names = ("value", "sampling_locations", "attention_weights")
    results = []
    for fn in impls.values():
        out = fn(inputs)
        cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        results.append([out, *torch.autograd.grad(out, [inputs[k] for k in names], cotangent)])
    diffs = [
        (a - b).abs().max().item() / max(b.abs().max().item(), 1e-12) for a, b in zip(*results)
    ]
    if max(diffs) > 1e-4:
        raise AssertionError(f"{case}: ours and HF differ (relative max diffs {diffs})")
    return max(diffs)


def time_case(impls: dict, case: str, mode: str, runs: int, warmup: int) -> dict:
    """Median ms of each implementation: ``warmup`` and then ``runs`` calls each, in turns."""
    inputs = make_inputs(case, grad=mode != "forward")
    queries = inputs["sampling_locations"].shape[1]
    cotangent = torch.randn(BATCH, queries, CHANNELS)
    calls = {
        name: functools.partial(run_once, fn, inputs, mode, cotangent) for name, fn in impls.items()
    }
    common.time_in_turns(calls, warmup)  # warm-up
    wall, _ = common.time_in_turns(calls, runs)
    return common.median_ms(wall)


def measure_memory_here(case: str, mode: str, impl: str, threads: int) -> dict:
    """peak_mib: peak extra resident memory of one run; meant for a fresh subprocess."""
    torch.set_num_threads(threads)
    fn = implementations()[impl]
    inputs = make_inputs(case, grad=mode != "forward")
    queries = inputs["sampling_locations"].shape[1]
    cotangent = torch.randn(BATCH, queries, CHANNELS)
    run_once(fn, inputs, mode, cotangent)  # warm-up: lazy initialisations
    peak_mib, exact = common.peak_rss_mib(lambda: run_once(fn, inputs, mode, cotangent))
    if not exact:
        raise OSError("/proc/self/clear_refs is not writable: no exact peak (Linux only)")
    return dict(peak_mib=peak_mib)


def measure_memory(case: str, mode: str, impl: str, threads: int) -> float:
    """Peak extra resident memory (MiB) of one run, in a fresh process (see module doc)."""
    memory = dict(case=case, mode=mode, impl=impl, threads=threads)
    return common.spawn(__file__, memory, dict(MALLOC_MMAP_THRESHOLD_="65536"))["peak_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[2], help="one table row set each"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--append", action="store_true", help="add a section to --out")
    parser.add_argument(
        "--json", type=Path, help="also write the results as JSON here (for benchmarks/run_all.py)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_memory_here(**json.loads(args.worker))))
        return

    import transformers

    impls = implementations()
    diffs = {case: check_agreement(impls, case) for case in CASES}
    load_before = os.getloadavg()
    rows = []
    with tqdm(total=len(args.threads) * len(CASES) * len(MODES), desc="timing") as bar:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for case in CASES:
                for mode in MODES:
                    ms = time_case(impls, case, mode, args.runs, args.warmup)
                    bar.update()
                    rows.append(
                        dict(
                            threads=threads,
                            case=case,
                            mode=mode,
                            **{f"{k}_ms": v for k, v in ms.items()},
                        )
                    )
    load_after = os.getloadavg()
    memory = {}
    if not args.no_memory:  # does not depend on the thread count: measured with the first
        for case, mode, impl in tqdm(
            [(c, m, i) for c in CASES for m in MODES for i in impls], desc="memory"
        ):
            memory[case, mode, impl] = measure_memory(case, mode, impl, args.threads[0])

    lines = []
    for r in rows:
        queries = DECODER_QUERIES if r["case"] == "decoder" else "S = 5440"
        ours_mib, hf_mib = (
            memory.get((r["case"], r["mode"], "ours")),
            memory.get((r["case"], r["mode"], "hf")),
        )
        mem = f"{ours_mib:.0f} | {hf_mib:.0f} | {ours_mib / hf_mib:.2f}" if memory else "- | - | -"
        speed = f"{r['ours_ms']:.0f} | {r['hf_ms']:.0f} | {r['hf_ms'] / r['ours_ms']:.2f}x"
        lines.append(
            f"| {r['threads']} | {r['case']} (Q = {queries}) | {r['mode']} | {speed} | {mem} | "
            f"{diffs[r['case']]:.1e} |"
        )
    policy = common.omp_wait_policy()
    busy = max(load_before[0], load_after[0]) > (os.cpu_count() or 1) - 0.5
    note = (
        "The machine was shared while timing (load average near or above its core count). "
        "With OpenMP's default wait policy, threads that finish a parallel kernel first spin "
        "on the CPU while they wait, and compete with the other processes' threads; ops made "
        "of many small kernels (ours more than HF's) then lose most from a second thread. "
        "Single-thread rows, or `OMP_WAIT_POLICY=PASSIVE` (threads sleep while they wait), "
        "are the steadier comparisons."
        if busy and policy.upper() != "PASSIVE"
        else ""
    )
    intro = [
        "# Multi-scale deformable attention on CPU: visionfm vs HF transformers",
        "",
        f"Batch {BATCH}, {IMAGE} x {IMAGE} image at strides {', '.join(map(str, STRIDES))} "
        f"(S = 5440), {CHANNELS} channels, {HEADS} heads, {POINTS} points, float32. "
        "Time: wall clock, median of the runs after warm-up runs, ours and HF alternately. "
        "Peak: extra resident memory of one run (peak RSS minus RSS before, fresh "
        "subprocess, `MALLOC_MMAP_THRESHOLD_=65536`; see `bench_deform_attn.py`). "
        "HF: `transformers.models.deformable_detr.modeling_deformable_detr."
        "MultiScaleDeformableAttention` (one `grid_sample` per level). Speed-up: HF time / "
        "ours. Rel. diff: largest relative difference of output and input gradients "
        "between the two.",
        "",
    ]
    section = [
        f"## {datetime.date.today().isoformat()}, `OMP_WAIT_POLICY={policy}`",
        "",
        f"{common.cpu_model()}, {os.cpu_count()} logical cores, "
        f"{platform.system()} {platform.release()}; "
        f"torch {torch.__version__}, transformers {transformers.__version__}; "
        f"median of {args.runs} runs after {args.warmup} warm-up runs; "
        f"`torch.set_num_threads` as in the first column. Load average (1 min) "
        f"{load_before[0]:.1f} before and {load_after[0]:.1f} after timing.",
        "",
        *([note, ""] if note else []),
        "| threads | case | mode | ours (ms) | HF (ms) | speed-up | ours peak (MiB) | "
        "HF peak (MiB) | ours / HF memory | rel. diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *lines,
        "",
    ]
    if args.append and args.out.exists():
        text = args.out.read_text().rstrip("\n") + "\n\n" + "\n".join(section)
    else:
        text = "\n".join(intro + section)
    for r in rows:  # JSON: one row per (threads, case, mode): ours_ms, hf_ms, ours_mib, hf_mib
        for impl in impls:
            r[f"{impl}_mib"] = memory.get((r["case"], r["mode"], impl))
    common.write_results(args.out, text, args.json, dict(omp_wait_policy=policy, rows=rows))
    print("\n".join(section))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
