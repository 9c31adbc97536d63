"""Model FLOP utilisation: the machine's measured matmul rate, and our ViT-B/16 forward against it.

    python benchmarks/bench_mfu.py [--threads 2] [--sizes 1024 2048 4096] [--runs 5] [--batch 8]
                                   [--compile] [--quick] [--no-gpu] [--peak-tflops 989]
                                   [--out results/mfu.md] [--json FILE]

CPU (float32, ``torch.set_num_threads(--threads)``):

- matmul rate: ``torch.mm`` of square (n, n) @ (n, n) matrices for each ``--sizes`` n,
  2 n^3 FLOPs each, best (shortest) of ``--runs`` after one warm-up, in float32 and in
  bfloat16; the machine's "peak" of a dtype is its best rate over the sizes (a measured
  ceiling for dense work at these threads, not the vendor's figure).
- ViT-B/16 forward: visionfm's ``vit_base_patch16`` in eval mode under
  ``torch.inference_mode()``, a (batch, 3, 224, 224) input. Its FLOPs are counted once by
  ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, the patch convolution and
  scaled-dot-product attention; 2 FLOPs per multiply-add; elementwise ops are not counted),
  so achieved FLOP/s = counted FLOPs / time and the fraction = that / the matmul peak of
  the variant's compute dtype (float32; bfloat16 for the autocast variant).
  Variants, each timed in this process in turns with the eager float32 one (rotating order,
  ``--warmup`` runs each first; best and median of ``--runs``): ``channels_last`` (model and
  input in channels-last memory format), ``bf16`` (``torch.autocast("cpu", torch.bfloat16)``)
  and, with ``--compile``, ``torch.compile(model)`` (its first call, the compilation, is
  reported separately). Each variant's features are compared with eager float32's.

GPU (when ``torch.cuda.is_available()``, unless ``--no-gpu``): the same in bfloat16 on the
current device: the bf16 matmul rate (sizes ``--gpu-sizes``), the ViT-B/16 forward at
``--batch`` under bf16 autocast, and a ViT-L/16 training step (forward, backward of the mean
squared feature map, AdamW step; bf16 autocast) at 512 px = 1024 tokens, batch
``--gpu-train-batch``. MFU = counted FLOPs (forward + backward; the optimizer step is not
counted) / step time / the GPU's dense bf16 peak, ``--peak-tflops`` (default 989 TFLOP/s,
the dense bf16 tensor-core figure NVIDIA gives for H100 SXM and H200; give your GPU's).
FLOPs on GPU are counted with the attention forced to PyTorch SDPA (``VISIONFM_ATTN=sdpa``)
since FlopCounterMode does not see xformers' kernels; the timed runs use the default path.
CUDA times are wall clock around ``torch.cuda.synchronize()``.

Writes a markdown table to ``benchmarks/results/mfu.md`` (and JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _common as common
import torch
from torch.utils.flop_counter import FlopCounterMode

OUT = common.RESULTS / "mfu.md"
IMAGE = 224
TRAIN_IMAGE = 512  # ViT-L/16 at 512 px: 32 x 32 = 1024 tokens


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str) -> float:
    """Seconds of one call of ``fn``, the device's queue drained before and after."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per aten op) of one call of ``fn``, by FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    per_op = {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return counter.get_total_flops(), per_op


@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ---------------------------------------------------------------- matmul rate


def matmul_rate(n: int, runs: int, dtype: torch.dtype, device: str) -> dict:
    """Best FLOP/s of (n, n) @ (n, n) over ``runs`` calls after one warm-up."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=device).to(dtype)
    b = torch.randn(n, n, generator=gen, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: kernel selection, thread pool, caches
    times = [_timed(lambda: torch.mm(a, b, out=out), device) for _ in range(runs)]
    flops = 2 * n**3
    dtype_name = str(dtype).removeprefix("torch.")
    return dict(n=n, dtype=dtype_name, best_s=min(times), tflops=flops / min(times) / 1e12)


def _matmuls(sizes: list[int], runs: int, dtypes: tuple, device: str) -> dict:
    """matmul: a row per (size, dtype); matmul_peak_tflops: dtype name -> best TFLOP/s."""
    rows = [matmul_rate(n, runs, dtype, device) for dtype in dtypes for n in sizes]
    for m in rows:
        print(f"{device} matmul {m['dtype']} n={m['n']}: {m['tflops']:.3f} TFLOP/s", flush=True)
    peaks: dict[str, float] = {}
    for m in rows:
        peaks[m["dtype"]] = max(peaks.get(m["dtype"], 0.0), m["tflops"])
    return dict(matmul=rows, matmul_peak_tflops=peaks)


# ---------------------------------------------------------------- ViT-B forward variants


def build_vit(name: str, device: str, **overrides) -> torch.nn.Module:
    sys.path.insert(0, str(common.ROOT))
    from visionfm.registry import MODELS

    torch.manual_seed(0)
    return MODELS.build(dict(type=name, **overrides)).to(device)


def _features(out: dict) -> torch.Tensor:
    return next(iter(out.values())).float()


def vit_forward_variants(args, device: str, peaks: dict[str, float]) -> dict:
    """FLOPs of the ViT-B/16 forward and the time of each variant (see module doc);
    ``peaks``: measured matmul TFLOP/s by compute dtype name."""
    model = build_vit("vit_base_patch16", device).eval()
    x = torch.randn(args.batch, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(1))
    x = x.to(device)
    dtype = torch.bfloat16 if device.startswith("cuda") else None

    def eager():
        if dtype is None:
            return model(x)
        with torch.autocast("cuda", dtype=dtype):
            return model(x)

    with torch.inference_mode(), _env(VISIONFM_ATTN="sdpa"):
        flops, per_op = count_flops(eager)
    variants: dict[str, Callable[[], dict]] = {"eager": eager}
    if device == "cpu":
        model_cl = build_vit("vit_base_patch16", device).eval()
        model_cl.load_state_dict(model.state_dict())
        model_cl = model_cl.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        variants["channels_last"] = lambda: model_cl(x_cl)

        def bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x)

        variants["bf16"] = bf16
    compile_s = None
    if args.compile:
        compiled = torch.compile(model)

        def run_compiled():
            if dtype is None:
                return compiled(x)
            with torch.autocast("cuda", dtype=dtype):
                return compiled(x)

        with torch.inference_mode():
            compile_s = _timed(run_compiled, device)  # the first call compiles
        variants["compile"] = run_compiled

    times: dict[str, list[float]] = {v: [] for v in variants}
    diffs = {}
    with torch.inference_mode():
        reference = _features(eager())
        for name, fn in variants.items():
            got = _features(fn())
            diffs[name] = ((got - reference).abs().max() / reference.abs().max()).item()
            for _ in range(args.warmup - 1):  # the check above was one warm-up
                fn()
        for name in common.in_turns(list(variants), args.runs):  # rotating order: ABC, BCA, ...
            times[name].append(_timed(variants[name], device))
    rows = {}
    for name, t in times.items():
        best, median = min(t), statistics.median(t)
        compute = "bfloat16" if dtype is not None or name == "bf16" else "float32"
        rows[name] = dict(
            dtype=compute,
            of_peak=flops / best / 1e12 / peaks[compute],
            best_ms=best * 1e3,
            median_ms=median * 1e3,
            tflops=flops / best / 1e12,
            vs_eager=best / min(times["eager"]),
            rel_diff=diffs[name],
        )
    return dict(
        model="vit_base_patch16",
        batch=args.batch,
        image=IMAGE,
        dtype="bfloat16 autocast" if dtype else "float32",
        gflops=flops / 1e9,
        flops_by_op={k: v / 1e9 for k, v in per_op.items()},
        compile_s=compile_s,
        variants=rows,
    )


# ---------------------------------------------------------------- GPU training step


def vit_train_step(args, device: str) -> dict:
    """MFU of a ViT-L/16 training step at 1024 tokens in bf16 autocast (see module doc)."""
    model = build_vit("vit_large_patch16", device, img_size=TRAIN_IMAGE).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.gpu_train_batch, 3, TRAIN_IMAGE, TRAIN_IMAGE, generator=gen).to(device)
    device_type = device.split(":")[0]

    def fwd_bwd():
        with torch.autocast(device_type, dtype=torch.bfloat16):
            loss = _features(model(x)).pow(2).mean()
        loss.backward()

    def step():
        fwd_bwd()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with _env(VISIONFM_ATTN="sdpa"):
        flops, _ = count_flops(fwd_bwd)
    optimizer.zero_grad(set_to_none=True)
    for _ in range(args.warmup):
        step()
    times = [_timed(step, device) for _ in range(args.runs)]
    best, median = min(times), statistics.median(times)
    tokens = (TRAIN_IMAGE // 16) ** 2
    return dict(
        model="vit_large_patch16",
        batch=args.gpu_train_batch,
        tokens=tokens,
        tflops_per_step=flops / 1e12,
        best_ms=best * 1e3,
        median_ms=median * 1e3,
        achieved_tflops=flops / best / 1e12,
        mfu=flops / best / 1e12 / args.peak_tflops,
        mfu_median=flops / median / 1e12 / args.peak_tflops,
        max_memory_gib=(
            torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
        ),
    )


# ---------------------------------------------------------------- report


def _section(title: str, part: dict) -> list[str]:
    peaks = part["matmul_peak_tflops"]
    lines = [f"## {title}", "", "| matmul n | dtype | best ms | TFLOP/s |", "|---:|---|---:|---:|"]
    lines += [
        f"| {m['n']} | {m['dtype']} | {m['best_s'] * 1e3:.1f} | {m['tflops']:.3f} |"
        for m in part["matmul"]
    ]
    measured = ", ".join(f"{dtype} **{tflops:.3f} TFLOP/s**" for dtype, tflops in peaks.items())
    lines += ["", f"Measured matmul peak (best over sizes): {measured}.", ""]
    vit = part["vit"]
    ops = ", ".join(f"{op.split('.')[-1]} {g:.1f}" for op, g in vit["flops_by_op"].items())
    lines += [
        f"ViT-B/16 forward, batch {vit['batch']}, {vit['image']} px, {vit['dtype']}: "
        f"{vit['gflops']:.1f} GFLOPs counted ({ops}).",
        "",
        "| variant | compute dtype | best ms | median ms | TFLOP/s (best) | of that dtype's "
        "matmul peak | time / eager | max rel. diff vs eager |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in vit["variants"].items():
        lines.append(
            f"| {name} | {r['dtype']} | {r['best_ms']:.1f} | {r['median_ms']:.1f} "
            f"| {r['tflops']:.3f} | {r['of_peak']:.1%} | {r['vs_eager']:.3f} "
            f"| {r['rel_diff']:.1e} |"
        )
    if vit["compile_s"] is not None:
        lines += ["", f"torch.compile: first call (compilation) {vit['compile_s']:.1f} s."]
    return lines + [""]


def _markdown(result: dict, args) -> str:
    cpu = result["cpu"]
    lines = [
        "# Model FLOP utilisation: matmul rate and ViT-B/16 forward",
        "",
        f"Date: {common.timestamp()}. Machine: {common.machine()}, {common.torch_build()}; "
        f"torch.set_num_threads({args.threads}), OMP_WAIT_POLICY={common.omp_wait_policy()}.",
        "Matmul: square `torch.mm` (CPU: float32 and bfloat16; GPU: bfloat16), best of "
        f"{args.runs} after a warm-up, 2 n^3 FLOPs. ViT: FLOPs counted by "
        "`torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add; matmuls, convolution, "
        "attention), achieved = counted / best time; variants timed in turns in one process "
        f"({args.warmup} warm-up run(s) each, {args.runs} timed). "
        "Written by `python benchmarks/bench_mfu.py`; see its docstring.",
        "",
        *_section("CPU", cpu),
        f"**ViT-B/16 forward at batch {args.batch}: "
        f"{cpu['vit']['variants']['eager']['tflops']:.3f} TFLOP/s = "
        f"{cpu['vit_fraction']:.1%} of the measured float32 matmul peak.**",
        "",
    ]
    gpu = result.get("gpu")
    if gpu:
        train = gpu["train"]
        lines += [
            *_section(f"GPU ({gpu['name']}), bfloat16", gpu),
            f"ViT-B/16 forward (bf16 autocast) at batch {args.batch}: "
            f"{gpu['vit_fraction']:.1%} of the measured bf16 matmul peak, "
            f"{gpu['vit']['variants']['eager']['tflops'] / args.peak_tflops:.1%} of the "
            f"{args.peak_tflops:g} TFLOP/s peak.",
            "",
            f"### ViT-L/16 training step, {train['tokens']} tokens ({TRAIN_IMAGE} px), "
            f"batch {train['batch']}, bf16 autocast, AdamW",
            "",
            f"Peak taken as {args.peak_tflops:g} TFLOP/s dense bf16 (`--peak-tflops`; the "
            "default is NVIDIA's dense bf16 figure for H100 SXM / H200).",
            "",
            "| TFLOPs / step (fwd+bwd) | best ms | median ms | achieved TFLOP/s | MFU (best) "
            "| MFU (median) | max memory GiB |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {train['tflops_per_step']:.2f} | {train['best_ms']:.1f} | "
            f"{train['median_ms']:.1f} | {train['achieved_tflops']:.1f} | {train['mfu']:.1%} "
            f"| {train['mfu_median']:.1%} | {train['max_memory_gib'] or 0:.1f} |",
            "",
        ]
    elif result.get("gpu_note"):
        lines += [f"GPU: {result['gpu_note']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (>= 1)")
    parser.add_argument("--batch", type=int, default=8, help="ViT-B/16 forward batch")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument(
        "--quick", action="store_true", help="smallest settings: sizes 1024 2048, 3 runs, 1 warm-up"
    )
    parser.add_argument("--no-gpu", action="store_true", help="CPU only, even with a GPU")
    parser.add_argument("--gpu-sizes", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--gpu-train-batch", type=int, default=16)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="the GPU's dense bf16 peak in TFLOP/s (989: H100 SXM / H200)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.runs, args.warmup = [1024, 2048], 3, 1
        args.gpu_sizes = [4096, 8192]
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the output check is a warm-up run)")
    torch.set_num_threads(args.threads)

    cpu = _matmuls(args.sizes, args.runs, (torch.float32, torch.bfloat16), "cpu")
    cpu["vit"] = vit_forward_variants(args, "cpu", cpu["matmul_peak_tflops"])
    cpu["vit_fraction"] = cpu["vit"]["variants"]["eager"]["of_peak"]
    for name, r in cpu["vit"]["variants"].items():
        print(f"cpu ViT-B/16 {name}: {r['best_ms']:.0f} ms, {r['tflops']:.3f} TFLOP/s", flush=True)
    result: dict = dict(threads=args.threads, cpu=cpu, peak_tflops=args.peak_tflops)

    if torch.cuda.is_available() and not args.no_gpu:
        device = "cuda"
        gpu = _matmuls(args.gpu_sizes, args.runs, (torch.bfloat16,), device)
        gpu["name"] = torch.cuda.get_device_name()
        gpu["vit"] = vit_forward_variants(args, device, gpu["matmul_peak_tflops"])
        gpu["vit_fraction"] = gpu["vit"]["variants"]["eager"]["of_peak"]
        torch.cuda.reset_peak_memory_stats()
        gpu["train"] = vit_train_step(args, device)
        print(f"gpu ViT-L/16 train step MFU: {gpu['train']['mfu']:.1%}", flush=True)
        result["gpu"] = gpu
    else:
        result["gpu_note"] = (
            "none (torch.cuda.is_available() is False)"
            if not args.no_gpu
            else ("skipped (--no-gpu)")
        )

    markdown = _markdown(result, args)
    common.write_results(args.out, markdown, args.json, result)
    print(markdown)


if __name__ == "__main__":
    main()
