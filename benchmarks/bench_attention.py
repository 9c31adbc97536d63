"""Attention time and peak memory on CPU: the default path (``sdpa``) vs the ``math`` reference.

    python benchmarks/bench_attention.py [--sizes 256 512 1024 2048 4096] [--threads 2]
                                         [--out results/attention_cpu.md] [--json FILE]

B=1, heads=6, head_dim=64, fp32; N query/key tokens; with and without an additive
(1, heads, N, N) bias (a learned relative position bias: it needs a gradient in the
forward+backward pass); forward under ``no_grad``, and forward+backward. Writes a
markdown table to ``benchmarks/results/attention_cpu.md``.

Peak memory. Every case runs in a fresh subprocess with glibc told to serve every
allocation over 64 KiB by its own mmap (``MALLOC_MMAP_THRESHOLD_``), so memory freed by
torch goes back to the kernel at once and the resident set size (RSS) follows the
bytes actually live. The worker builds the inputs, warms the kernels up on a tiny
size, resets the kernel's RSS high-water mark (``echo 5 > /proc/self/clear_refs``)
and runs the case once: peak = VmHWM - VmRSS just before the call, i.e. every byte
the call (and its backward, gradients included) touched on top of its inputs. The
inputs (q, k, v, bias, the output gradient) are excluded for both paths alike.
Timing runs in another fresh process with glibc's default allocator settings (the
mmap-per-allocation setting makes every allocation fault in fresh pages), both paths
in turn: one warm-up each at full size, then repeats alternating between the paths
(at least 3, more for short cases) so that load from other jobs hits both alike;
the median of each is reported.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import _common as common

OUT = common.RESULTS / "attention_cpu.md"
PATHS = {"ours": None, "math": "math"}  # label -> backend argument (None = default choice)


# ---------------------------------------------------------------- worker (one case)


def run_case(case: dict) -> dict:
    """One case in a fresh process: the peak memory of ``case["path"]``
    (``case["measure"] == "memory"``), or the time of every path, alternating."""
    import torch

    sys.path.insert(0, str(common.ROOT))
    from visionfm.ops.attention import attention, select_backend

    torch.set_num_threads(case["threads"])
    backward = case["pass"] == "fwd+bwd"
    b, h, d = case["batch"], case["heads"], case["dim"]

    def make(n: int):
        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(b, h, n, d, generator=gen) for _ in range(3))
        bias = torch.randn(1, h, n, n, generator=gen) if case["bias"] else None
        grad = torch.randn(b, h, n, d, generator=gen)
        if backward:
            for t in (q, k, v) if bias is None else (q, k, v, bias):
                t.requires_grad_()
        return q, k, v, bias, grad

    def call(path, q, k, v, bias, grad):
        if backward:
            out = attention(q, k, v, bias=bias, backend=PATHS[path])
            out.backward(grad)
            for t in (q, k, v, bias):
                if t is not None:
                    t.grad = None
        else:
            with torch.no_grad():
                attention(q, k, v, bias=bias, backend=PATHS[path])

    paths = [case["path"]] if case["measure"] == "memory" else list(PATHS)
    for path in paths:  # initialise kernels and thread pools outside the measurement
        call(path, *make(64))
    inputs = make(case["n"])

    if case["measure"] == "memory":
        peak_mb, exact = common.peak_rss_mib(lambda: call(case["path"], *inputs))
        backend = select_backend(inputs[0], PATHS[case["path"]], inputs[3])
        return dict(case, backend=backend, peak_mb=peak_mb, peak_exact=exact)

    start = time.perf_counter()
    for path in paths:  # warm-up at full size
        call(path, *inputs)
    first = (time.perf_counter() - start) / len(paths)
    repeats = max(case["min_repeats"], min(20, int(case["budget_s"] / max(first, 1e-4))))
    wall, _ = common.time_in_turns(
        {path: functools.partial(call, path, *inputs) for path in paths}, repeats
    )
    return common.median_ms(wall) | {"repeats": repeats}


# ---------------------------------------------------------------- driver


def _attn_mb(args, n: int) -> float:
    """Size of one (B, heads, N, N) fp32 matrix in MB."""
    return args.batch * args.heads * n * n * 4 / 2**20


def _table(results: list[dict], args) -> str:
    by_key = {(r["n"], r["bias"], r["pass"], r["path"]): r for r in results}
    lines = [
        "# Attention on CPU: default path vs math reference",
        "",
        f"Date: {common.timestamp()}. Machine: {common.machine()}, "
        f"Python {platform.python_version()}, {common.torch_build()}; "
        f"torch.set_num_threads({args.threads}).",
        f"Shapes: B={args.batch}, heads={args.heads}, head_dim={args.dim}, fp32, N tokens "
        "(queries = keys). Bias: an additive (1, heads, N, N) tensor; in fwd+bwd it needs a "
        "gradient (a learned relative position bias).",
        "Written by `python benchmarks/bench_attention.py`; see its docstring for the method.",
        "",
        "Time: median of repeats after a warm-up, in ms (one fresh process per row, the two "
        "paths alternating). Peak: the "
        "high-water mark of the process's resident memory during one call, above the inputs "
        "(another fresh process; every allocation > 64 KiB served by its own mmap so freed "
        "memory leaves RSS), gradients included for fwd+bwd. The bias itself is an input "
        "(not counted); its gradient, as big as the bias, is counted. `attn MB` is the size "
        "of one (B, heads, N, N) fp32 matrix, for scale.",
        f"Load average while running (other jobs share this machine, so times are noisy): "
        f"{args.load[0]:.1f} at start, {args.load[1]:.1f} at the end.",
        "",
        "| N | bias | pass | ours backend | ours ms | math ms | time ours/math "
        "| attn MB | ours peak MB | math peak MB | memory ours/math |",
        "|---:|:---:|:---|:---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in args.sizes:
        for bias in (False, True):
            for pas in ("fwd", "fwd+bwd"):
                o, m = by_key[(n, bias, pas, "ours")], by_key[(n, bias, pas, "math")]
                mem_ratio = o["peak_mb"] / m["peak_mb"] if m["peak_mb"] > 0 else float("nan")
                lines.append(
                    f"| {n} | {'yes' if bias else 'no'} | {pas} | {o['backend']} "
                    f"| {o['ms']:.1f} | {m['ms']:.1f} | {o['ms'] / m['ms']:.2f} "
                    f"| {_attn_mb(args, n):.1f} "
                    f"| {o['peak_mb']:.1f} | {m['peak_mb']:.1f} | {mem_ratio:.3f} |"
                )
    n_max = max(args.sizes)
    lines += ["", f"Target: at N={n_max} the default path uses at most 1/4 of the memory of math."]
    for bias in (False, True):
        for pas in ("fwd", "fwd+bwd"):
            o, m = by_key[(n_max, bias, pas, "ours")], by_key[(n_max, bias, pas, "math")]
            ratio = o["peak_mb"] / m["peak_mb"]
            verdict = "met" if ratio <= 0.25 else "NOT met"
            line = (
                f"- {'with' if bias else 'without'} bias, {pas}: "
                f"{o['peak_mb']:.1f} MB vs {m['peak_mb']:.1f} MB = {ratio:.3f} -> {verdict}"
            )
            if bias and pas == "fwd+bwd":  # the bias gradient is an output both must allocate
                grad_mb = _attn_mb(args, n_max) / args.batch
                line += (
                    f" (both include the {grad_mb:.1f} MB bias gradient; without it: "
                    f"{o['peak_mb'] - grad_mb:.1f} vs {m['peak_mb'] - grad_mb:.1f} MB = "
                    f"{(o['peak_mb'] - grad_mb) / (m['peak_mb'] - grad_mb):.3f})"
                )
            lines.append(line)
    if not all(r["peak_exact"] for r in results):
        lines += ["", common.INEXACT_PEAK_NOTE]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=3.0, help="timing seconds per case")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--json", type=Path, help="also write the results as JSON here (for benchmarks/run_all.py)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_case(json.loads(args.worker))))
        return

    from tqdm import tqdm

    cases = [
        dict(
            n=n,
            bias=bias,
            threads=args.threads,
            batch=args.batch,
            heads=args.heads,
            dim=args.dim,
            min_repeats=args.min_repeats,
            budget_s=args.budget_s,
            **{"pass": pas},
        )
        for n in args.sizes
        for bias in (False, True)
        for pas in ("fwd", "fwd+bwd")
    ]
    load_start = os.getloadavg()[0]
    results = []
    for case in tqdm(cases, desc="attention cases", unit="case"):
        timing = common.spawn(__file__, dict(case, measure="time"))
        for path in PATHS:  # freed memory leaves RSS at once (see module doc)
            memory = common.spawn(
                __file__, dict(case, measure="memory", path=path), common.MALLOC_RETURNS_FREED
            )
            results.append(dict(memory, ms=timing[path], repeats=timing["repeats"]))
    args.load = (load_start, os.getloadavg()[0])
    table = _table(results, args)
    # JSON: one row per (n, bias, pass, path): backend, ms, peak_mb, ...
    common.write_results(args.out, table, args.json, dict(threads=args.threads, rows=results))
    print(table)


if __name__ == "__main__":
    main()
