"""ViT forward time, visionfm vs timm, same architecture and weights (CPU, eager, no grad).

    python benchmarks/bench_vit.py [--runs 9] [--warmup 2] [--threads 2] [--out FILE] [--json FILE]

For ViT-S/16 and ViT-B/16 at batch 1, 224 and 512 px: loads timm's random weights into
ours, checks the features agree, then times both alternately (warm-up, then the median
of ``--runs`` of wall-clock time and of process CPU time, the latter being less sensitive
to other load on a shared machine) and writes a markdown table to ``benchmarks/results/vit_cpu.md``.
timm runs ``forward_features`` with ``dynamic_img_size=True`` so both models resize the
224-px position embeddings for 512-px inputs.
"""

from __future__ import annotations

import argparse
import functools
import platform
from pathlib import Path

import _common as common
import timm
import torch

from visionfm.registry import MODELS

MODELS_TO_RUN = [("ViT-S/16", "vit_small_patch16"), ("ViT-B/16", "vit_base_patch16")]
SIZES = (224, 512)
OUT = common.RESULTS / "vit_cpu.md"


def bench_pair(name: str, size: int, runs: int, warmup: int) -> dict:
    torch.manual_seed(0)
    ref = timm.create_model(f"{name}_224", pretrained=False, num_classes=0, dynamic_img_size=True)
    ours = MODELS.build(dict(type=name, pos_embed_antialias=True))
    ours.load_pretrained(ref.state_dict(), strict=True)
    ref.eval()
    ours.eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        grid = size // 16
        expected = ref.forward_features(x)[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        got = next(iter(ours(x).values()))
        diff = (got - expected).abs().max().item()
        if diff > 1e-4:
            raise AssertionError(f"{name} @ {size}: outputs differ by {diff}")
        for _ in range(warmup):
            ref.forward_features(x)
            ours(x)
        # interleaved, swapping who goes first, so that drift hits both alike
        calls = {
            "ours": functools.partial(ours, x),
            "timm": functools.partial(ref.forward_features, x),
        }
        wall, cpu = common.time_in_turns(calls, runs)
    ms, cpu_ms = common.median_ms(wall), common.median_ms(cpu)
    return dict(
        ours=ms["ours"],
        timm=ms["timm"],
        cpu_ours=cpu_ms["ours"],
        cpu_timm=cpu_ms["timm"],
        diff=diff,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--json", type=Path, help="also write the results as JSON here (for benchmarks/run_all.py)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows, records = [], []
    for label, name in MODELS_TO_RUN:
        for size in SIZES:
            r = bench_pair(name, size, args.runs, args.warmup)
            records.append(dict(model=label, px=size, **r))  # ms: ours, timm, cpu_ours, cpu_timm
            rows.append(
                f"| {label} | {size} | {r['ours']:.1f} | {r['timm']:.1f} | "
                f"{r['ours'] / r['timm']:.3f} | {r['cpu_ours']:.1f} | {r['cpu_timm']:.1f} | "
                f"{r['cpu_ours'] / r['cpu_timm']:.3f} | {r['diff']:.1e} |"
            )
            print(rows[-1], flush=True)

    table = "\n".join(
        [
            "# ViT forward time on CPU: visionfm vs timm",
            "",
            f"batch 1, eager, `torch.no_grad()`, `torch.set_num_threads({args.threads})`, "
            f"float32, median of {args.runs} runs after {args.warmup} warm-up runs; "
            f"torch {torch.__version__}, timm {timm.__version__}, {platform.processor() or platform.machine()}.",
            "timm: `forward_features` with `dynamic_img_size=True`; ours: `ViT.forward` "
            "(feature map after the final norm). Same weights; max |diff| of the features shown.",
            "CPU = process CPU time of both intra-op threads (robust to other load on the host).",
            "",
            "| model | px | ours wall (ms) | timm wall (ms) | ours / timm (wall) | "
            "ours CPU (ms) | timm CPU (ms) | ours / timm (CPU) | max abs diff |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    common.write_results(args.out, table, args.json, dict(threads=args.threads, rows=records))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
