"""The GPU check: visionfm's CUDA code paths, run once on a lent GPU, reported PASS / FAIL.

    python benchmarks/gpu_check.py [--device cuda] [--sections attention deform_attn
        amp_training mfu time_to_ap] [--tta-minutes 4] [--target-ap 0.5] [--peak-tflops T]
        [--out benchmarks/results/gpu_check_<device>.md]
    python benchmarks/gpu_check.py --device cpu --quick    # every section at tiny size, < 1 min

Installs nothing: it needs what ``pip install -e ".[dev,text]"`` gives (xformers is used when
importable). About 6 minutes on an H100. Sections (each isolated: an exception or an
out-of-memory is reported with its traceback and the next section runs; a line is printed when
each starts and ends, and the report is rewritten after each one, so a run cut off still says
where it was):

1. ``attention``: ``visionfm.ops.attention.attention`` with ``backend=`` math / sdpa /
   xformers in float32, bfloat16 and float16, against the math backend in float64 on the same
   inputs: the output and the gradients of q, k, v and a learned (1, heads, N, N) bias, with
   no bias, a bias, a key padding mask, and both; N 197 and 1024, head dims 64 and 80.
2. ``deform_attn``: ``multi_scale_deformable_attention`` (float32 and bfloat16 inputs) against
   Deformable DETR's ``grid_sample`` formulation (``visionfm.ops.deform_attn_grid``) in float64
   (output and the gradients of value, sampling locations and attention weights),
   ``MultiScaleDeformableAttention`` under bfloat16 autocast against the same module with the
   ``grid_sample`` formulation, and the op on CUDA against the op on CPU.
3. ``amp_training``: the demo detector (``configs/dino/dino_vit-t_synthetic.py``) trained by
   ``build_runner`` on 200 synthetic images in float32, bfloat16 and float16 (mmengine's
   ``AmpOptimWrapper``, a dynamic loss scaler for float16): losses at the start and the end,
   non-finite steps, loss-scaler skips, iterations/s, peak memory.
4. ``mfu``: ``bench_mfu.vit_train_step`` (ViT-L/16, 1024 tokens, bf16) against the GPU's dense
   bf16 peak (target MFU >= 45 %), and a training step of DINO on ViTDet-L at 1024 px
   (``configs/dino/dino_vitdet-l_coco.py``): step time, FLOPs counted by
   ``torch.utils.flop_counter`` (deformable attention's gathers are not counted), MFU.
5. ``time_to_ap``: the demo config trained on 2,000 synthetic images (``make demo``'s data),
   batch 8, validated on 200 after every epoch, until bbox AP >= ``--target-ap`` or
   ``--tta-minutes`` have passed (counted from the start of training, evaluations included).

The sections live beside this script: 1 and 2 in ``_gpu_check_kernels.py``, 3 and 5 in
``_gpu_check_training.py``, 4 in ``_gpu_check_mfu.py``; their comparisons and statuses in
``_gpu_check_common.py``.

Tolerances are relative: max |got - reference| / max |reference|, per tensor
(``_gpu_check_kernels.TOLERANCE``).
Statuses: PASS / FAIL; SKIP where a check cannot run here (xformers not installed, float16
training on CPU); INFO for a measurement without a threshold. With ``--quick`` the sizes are
tiny and the checks that only mean something at full size (loss falling, MFU, AP) are INFO.
``--device cpu`` without ``--quick`` runs sections 1-3 and 5 at full size (slowly) and skips 4.
Writes ``benchmarks/results/gpu_check_<device slug>[_quick].md`` (``--out``: a file or a
folder) and ``.json`` beside it; exits with 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import _common as common
import torch

sys.path.insert(0, str(common.ROOT))
from _gpu_check_common import FAIL, error_line, release  # noqa: E402
from _gpu_check_kernels import attention_section, deform_attn_section  # noqa: E402
from _gpu_check_mfu import mfu_section, peak_for  # noqa: E402
from _gpu_check_training import (  # noqa: E402
    SyntheticData,
    amp_training_section,
    time_to_ap_section,
)

SECTIONS = ("attention", "deform_attn", "amp_training", "mfu", "time_to_ap")


# ---------------------------------------------------------------- the run and its report

SECTION_FNS: dict[str, tuple[str, Callable[..., dict]]] = {
    "attention": ("Attention backends", attention_section),
    "deform_attn": ("Multi-scale deformable attention", deform_attn_section),
    "amp_training": ("Mixed-precision training of the demo DINO", amp_training_section),
    "mfu": ("ViT-L MFU and a DINO ViTDet-L training step", mfu_section),
    "time_to_ap": ("Time to bbox AP of the demo", time_to_ap_section),
}


def device_facts(device: str) -> dict:
    """What the report says of the machine: device, torch / CUDA / cuDNN / xformers builds."""
    try:
        import xformers

        xformers_version = f"xformers {xformers.__version__}"
    except Exception as err:  # not installed, or built for another torch
        xformers_version = f"not installed ({type(err).__name__}: {str(err)[:120]})"
    facts = dict(
        date=common.timestamp(),
        command="python " + " ".join(sys.argv),
        cpu=common.machine(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        xformers=xformers_version,
    )
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        facts.update(
            device=props.name,
            capability=f"sm{props.major}{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
        )
    else:
        facts["device"] = "cpu"
    with contextlib.suppress(Exception):
        facts["commit"] = subprocess.run(
            ["git", "-C", str(common.ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    return facts


def slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_section(name: str, ctx) -> dict:
    """One section, isolated: an exception (out-of-memory included) becomes a FAIL with its
    traceback; GPU memory is released after it either way."""
    start = time.perf_counter()
    try:
        result = SECTION_FNS[name][1](ctx)
    except Exception as err:
        lines = traceback.format_exc().splitlines()
        result = dict(
            status=FAIL, summary=error_line(err), lines=["```", *lines[-30:], "```"], data=None
        )
        del err
    release(ctx)
    return dict(result, seconds=time.perf_counter() - start)


def markdown(facts: dict, results: dict, selected: list[str], quick: bool) -> str:
    """The report: the machine, a summary table, then each section's own lines."""
    lines = [
        f"# GPU check: {facts['device']}" + (" (--quick: tiny sizes)" if quick else ""),
        "",
        f"Date: {facts['date']}. Device: {facts['device']}"
        + (f" ({facts['capability']}, {facts['memory_gib']} GiB)" if "capability" in facts else "")
        + f"; CPU: {facts['cpu']}. torch {facts['torch']}, CUDA {facts['cuda']}, cuDNN "
        f"{facts['cudnn']}, xformers: {facts['xformers']}. visionfm commit "
        f"{facts.get('commit') or 'unknown'}. Command: `{facts['command']}`. Written by "
        "`benchmarks/gpu_check.py` (see its docstring).",
        "",
        "| section | status | seconds | summary |",
        "|---|---|---:|---|",
    ]
    for name in SECTIONS:
        r = results.get(name)
        if r is None:
            state = "not run yet" if name in selected else "not selected (--sections)"
            lines.append(f"| {name} | — | — | {state} |")
        else:
            lines.append(f"| {name} | {r['status']} | {r['seconds']:.0f} | {r['summary']} |")
    for i, name in enumerate(SECTIONS, 1):
        if name in results:
            lines += [
                "",
                f"## {i}. {SECTION_FNS[name][0]} ({name}): {results[name]['status']}",
                "",
                *results[name]["lines"],
            ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU smoke run)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--tta-minutes", type=float, default=4.0, help="section 5's budget")
    parser.add_argument("--target-ap", type=float, default=0.5, help="section 5's target AP")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak (default: by name)")
    parser.add_argument(
        "--out",
        type=Path,
        help="the markdown report, or a folder for gpu_check_<device>.md "
        "(default: benchmarks/results/); the .json goes beside it",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the selected sections; returns 0 if none failed, else 1."""
    args = parse_args(argv)
    device_type = torch.device(args.device).type
    if device_type == "cpu":  # mmengine's runner would take a visible GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif device_type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_device(args.device)  # mmengine's runner takes the current device
    else:
        sys.exit(
            f"--device {args.device}: only cuda[:N] and cpu are checked; torch.cuda.is_available() "
            f"is {torch.cuda.is_available()}"
            f" (torch {torch.__version__}, CUDA build {torch.version.cuda}); on a machine "
            "without a GPU run --device cpu --quick"
        )
    facts = device_facts(args.device)
    name = slug(facts["device"]) + ("_quick" if args.quick else "")
    out = args.out or common.RESULTS
    if out.is_dir():  # e.g. --out "$OUT" on a lent machine
        out = out / f"gpu_check_{name}.md"
    peak, peak_source = peak_for(facts["device"], args.peak_tflops)
    quick = args.quick
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ctx = SimpleNamespace(
            device=args.device,
            device_type=device_type,
            quick=quick,
            facts=facts,
            tmp=Path(tmp),
            data=SyntheticData(Path(tmp), background=not quick),
            amp_images=(8, 4) if quick else (200, 50),
            tta_images=(8, 4) if quick else (2000, 200),
            batch=2 if quick else 8,
            tta_minutes=args.tta_minutes,
            target_ap=args.target_ap,
            peak_tflops=peak,
            peak_source=peak_source,
            vit_batch=2 if quick else 16,
            dino_batch=1 if quick else 2,
            dino_image=64 if quick else 1024,
            mfu_warmup=1 if quick else 2,
            mfu_runs=2 if quick else 5,
            progress=lambda text: print(f"[gpu_check]   {text}", flush=True),
        )
        for section, size in (("amp_training", ctx.amp_images), ("time_to_ap", ctx.tta_images)):
            if section in args.sections:
                ctx.data.start(*size)  # written while the first sections run
        results: dict = {}
        selected = [s for s in SECTIONS if s in args.sections]
        for i, section in enumerate(selected, 1):
            print(f"[gpu_check] {i}/{len(selected)} {section}: started", flush=True)
            results[section] = run_section(section, ctx)
            r = results[section]
            print(
                f"[gpu_check] {i}/{len(selected)} {section}: {r['status']} in "
                f"{r['seconds']:.0f} s: {r['summary']}",
                flush=True,
            )
            common.write_results(
                out,
                markdown(facts, results, selected, quick),
                out.with_suffix(".json"),
                dict(facts=facts, sections=results),
            )
    print(f"[gpu_check] report: {out} (+ {out.with_suffix('.json').name})", flush=True)
    return 1 if any(r["status"] == FAIL for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
