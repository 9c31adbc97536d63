"""End-to-end detector inference latency per image on CPU: test pipeline (decode, resize,
pack) + model + post-processing, through ``visionfm.apis.Inferencer``.

    python benchmarks/bench_detector.py [--config CFG] [--checkpoint CKPT] [--images DIR]
                                        [--num 50] [--threads 2] [--out results/detector_cpu.md]
                                        [--json FILE]

Without a checkpoint the model has its initial weights (latency does not depend on them).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import _common as common
import torch
from tqdm import tqdm

from visionfm.apis import Inferencer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/dino/dino_vit-t_synthetic.py")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--images", default="data/synthetic/images/val")
    parser.add_argument("--num", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "detector_cpu.md")
    parser.add_argument(
        "--json", type=Path, help="also write the results as JSON here (for benchmarks/run_all.py)"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    paths = sorted(glob.glob(os.path.join(args.images, "*.jpg")))[: args.num]
    if not paths:
        raise SystemExit(f"no .jpg images in {args.images} (run tools/make_synthetic.py first)")
    inferencer = Inferencer(args.config, args.checkpoint, device="cpu")
    for path in paths[:3]:  # warm-up
        inferencer(path)
    times = []
    for path in tqdm(paths, desc="images"):
        start = time.perf_counter()
        inferencer(path)
        times.append((time.perf_counter() - start) * 1000)
    median, p90 = statistics.median(times), sorted(times)[int(0.9 * (len(times) - 1))]
    rows = [
        f"# Detector inference latency on CPU ({date.today()})",
        "",
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads, batch 1, {len(paths)} images from `{args.images}`; "
        "time per image = decode + resize + model + post-processing (`Inferencer.__call__`).",
        "",
        "| config | median ms | p90 ms | images/s |",
        "|---|---|---|---|",
        f"| `{args.config}` | {median:.1f} | {p90:.1f} | {1000 / median:.1f} |",
    ]
    summary = dict(config=args.config, images=len(paths), median_ms=median, p90_ms=p90)
    common.write_results(
        args.out, "\n".join(rows) + "\n", args.json, dict(summary, threads=args.threads)
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
