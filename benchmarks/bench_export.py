"""Latency of exported models, ONNX Runtime (CPU) and ``torch.export`` programs, against the
same network in PyTorch eager.

    python benchmarks/bench_export.py [--rounds 20] [--threads 1] [--families dino upernet ...]
        [--out results/export_latency.md] [--note "what else ran on the machine"]

Per family (the synthetic configs, random weights: latency does not depend on them) the
network that ``tools/export.py`` exports (``visionfm.export.ExportNetwork``: preprocessed
images -> raw head outputs; pre- and post-processing are the same Python code for every
backend and left out) is exported once (dynamic batch and size; UperNet at the timed size)
to an ONNX file and a ``.pt2`` program, both reloaded from disk, and timed on one
preprocessed image against eager PyTorch, in one process, in turns (eager, ONNX Runtime,
program, eager, ...; ``_common.time_in_turns``), all with ``--threads`` threads, after one
warm-up call each. The table gives the median and p90 wall-clock milliseconds, the ratios of
the medians to eager and the largest output difference to eager.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import _common as common
import torch
from tqdm import tqdm

# family -> (config, input size (H, W) of one preprocessed image)
FAMILIES = {
    "dino": ("configs/dino/dino_vit-t_synthetic.py", (128, 128)),
    "segformer": ("configs/segformer/segformer_vit-t_synthetic.py", (128, 128)),
    "upernet": ("configs/upernet/upernet_vit-t_synthetic.py", (128, 128)),
    "dpt": ("configs/dpt/dpt_vit-t_synthetic.py", (128, 128)),
    "vitpose": ("configs/vitpose/vitpose_vit-t_synthetic.py", (64, 48)),
}
BACKENDS = ("eager", "onnxruntime", "torch-export")


def _case(name: str, folder: str, threads: int) -> dict:
    """``{backend: fn}`` of family ``name`` on one random image, and the largest difference
    of each exported backend's outputs to eager's."""
    from visionfm.engine.config import load_config
    from visionfm.export import ExportNetwork, OnnxRuntimeBackend, ProgramBackend, export_model
    from visionfm.registry import MODELS

    config, (h, w) = FAMILIES[name]
    model = MODELS.build(load_config(config).model).eval()
    paths = [os.path.join(folder, f"{name}.onnx"), os.path.join(folder, f"{name}.pt2")]
    export_model(model, paths, size=(h, w))
    network = ExportNetwork(model).eval()
    onnx_runtime, program = OnnxRuntimeBackend(paths[0], threads), ProgramBackend(paths[1])
    images = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    sizes = torch.tensor([[h, w]])

    @torch.no_grad()
    def eager():
        return dict(zip(network.output_names, network(images, sizes)))

    fns = {
        "eager": eager,
        "onnxruntime": lambda: onnx_runtime(images, sizes),
        "torch-export": lambda: program(images, sizes),
    }
    reference = eager()
    diff = {
        backend: max((fns[backend]()[k] - v).abs().max().item() for k, v in reference.items())
        for backend in BACKENDS[1:]
    }
    return dict(fns=fns, diff=diff, size=(h, w))


def _markdown(rows: list[dict], facts: dict, rounds: int, note: str | None) -> str:
    lines = [
        "# Exported models: ONNX Runtime and torch.export vs PyTorch eager (CPU)",
        "",
        f"{common.run_line(facts)}",
        "",
        *([note, ""] if note else []),
        "One preprocessed image per call, the exported network only (backbone -> neck -> raw "
        f"head outputs); {rounds} calls each, in turns, after a warm-up call; random weights. "
        "ORT: ONNX Runtime's CPU provider on the `.onnx` file; program: the `.pt2` "
        "`torch.export` program run in PyTorch. Both from `tools/export.py`'s dynamic export.",
        "",
        *common.busy_note(
            facts,
            "**The machine was busy** (load average above the threads used; other jobs shared "
            "its 2 cores): the ratios, measured in turns in one process, hold better than the "
            "absolute times.",
        ),
        "| family | input | eager median ms | eager p90 ms | ORT median ms | ORT p90 ms "
        "| program median ms | program p90 ms | ORT / eager | program / eager "
        "| ORT max abs diff | program max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ms, p90 = r["median_ms"], r["p90_ms"]
        lines.append(
            f"| {r['family']} | {r['size'][0]}x{r['size'][1]} "
            + "".join(f"| {ms[b]:.1f} | {p90[b]:.1f} " for b in BACKENDS)
            + f"| {ms['onnxruntime'] / ms['eager']:.2f} | {ms['torch-export'] / ms['eager']:.2f} "
            f"| {r['diff']['onnxruntime']:.1e} | {r['diff']['torch-export']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=["dino"])
    parser.add_argument("--out", type=Path, default=common.RESULTS / "export_latency.md")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--note", help="a sentence under the run line (what else ran meanwhile)")
    args = parser.parse_args()
    os.chdir(common.ROOT)
    sys.path.insert(0, str(common.ROOT))
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.families:
            print(f"exporting {name}", file=sys.stderr, flush=True)
            case = _case(name, folder, args.threads)
            with tqdm(total=len(BACKENDS) * (args.rounds + 1), desc=name, unit="call") as bar:
                wall, _ = common.time_in_turns(case["fns"], args.rounds, True, bar.update)
            rows.append(
                dict(
                    family=name,
                    size=case["size"],
                    diff=case["diff"],
                    median_ms=common.median_ms(wall),
                    p90_ms=common.p90_ms(wall),
                )
            )
    facts = common.run_facts("benchmarks/bench_export.py", args.threads, load_before)
    markdown = _markdown(rows, facts, args.rounds, args.note)
    common.write_results(args.out, markdown, args.json, dict(rows=rows, **facts))
    print(markdown)


if __name__ == "__main__":
    main()
