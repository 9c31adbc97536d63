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
   Deformable DETR's ``grid_sample`` formulation in float64 (output and the gradients of
   value, sampling locations and attention weights), ``MultiScaleDeformableAttention`` under
   bfloat16 autocast against the same module with the ``grid_sample`` formulation, and the op
   on CUDA against the op on CPU.
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

Tolerances are relative: max |got - reference| / max |reference|, per tensor (``TOLERANCE``).
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
import gc
import math
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
import bench_mfu
import torch
import torch.nn.functional as F

sys.path.insert(0, str(common.ROOT))
from mmengine.hooks import Hook  # noqa: E402

SECTIONS = ("attention", "deform_attn", "amp_training", "mfu", "time_to_ap")
DEMO_CONFIG = common.ROOT / "configs/dino/dino_vit-t_synthetic.py"
VITL_DINO_CONFIG = common.ROOT / "configs/dino/dino_vitdet-l_coco.py"
# Largest relative error (max |got - ref| / max |ref|) accepted per compute dtype: float32
# (no TF32), float16 (11-bit mantissa), bfloat16 (8-bit mantissa), after softmax / sums.
TOLERANCE = {torch.float32: 2e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
DEVICE_VS_CPU_TOLERANCE = 1e-5  # the same float32 op on two devices: summation order only
# The op against the grid_sample formulation in one module under bf16 autocast: both sample in
# float32, but their tiny differences pass through bf16 layers (one bf16 rounding step).
MODULE_AUTOCAST_TOLERANCE = 1e-2
# Dense bf16 tensor-core TFLOP/s by device name (NVIDIA's figures), first match wins.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
)
MFU_TARGET = 0.45
PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"


# ---------------------------------------------------------------- comparisons


def abs_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| (inf where ``got`` has a NaN/inf)."""
    diff = (got.detach().double() - ref.detach().double()).abs().max().item()
    return diff if math.isfinite(diff) else math.inf


def rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref| (inf where ``got`` has a NaN/inf)."""
    return abs_error(got, ref) / max(ref.detach().double().abs().max().item(), 1e-12)


def compare(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], tol) -> dict:
    """Each tensor of ``got`` against the same key of ``ref`` -> ``{'errors': {key: relative
    error}, 'abs_errors': {key: max abs difference}, 'tol': tol, 'status'}``: PASS if every
    relative error is within ``tol`` (a float, or a float per key), else FAIL."""
    errors = {key: rel_error(got[key], ref[key]) for key in ref}
    bound = tol if isinstance(tol, dict) else dict.fromkeys(errors, tol)
    ok = all(errors[key] <= bound[key] for key in errors)
    abs_errors = {key: abs_error(got[key], ref[key]) for key in ref}
    return dict(errors=errors, abs_errors=abs_errors, tol=tol, status=PASS if ok else FAIL)


def judge(ok: bool, applies: bool = True) -> str:
    """PASS / FAIL, or INFO where the threshold does not apply (tiny --quick sizes)."""
    return (PASS if ok else FAIL) if applies else INFO


def overall(statuses: list[str]) -> str:
    """A section's status: FAIL if any check failed, else PASS if any passed, else INFO."""
    if FAIL in statuses:
        return FAIL
    return PASS if PASS in statuses else (INFO if INFO in statuses else SKIP)


def _error_line(err: BaseException) -> str:
    """'<type>: <first line of the message>' of an exception, for a table cell."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def _release(ctx) -> None:
    """Frees what the last run left: Python garbage, then cached CUDA memory."""
    gc.collect()
    if ctx.device_type == "cuda":
        torch.cuda.empty_cache()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- 1. attention backends


def _attention_case(ctx, dtype, shape, variant, gen):
    """One (dtype, shape, variant): every backend against math in float64 -> table row."""
    from visionfm.ops.attention import attention, explain_backends

    b, h, n, d = shape
    inputs = {k: torch.randn(b, h, n, d, generator=gen, dtype=torch.float64) for k in "qkv"}
    if "bias" in variant:  # a learned relative position bias shared over the batch
        inputs["bias"] = torch.randn(1, h, n, n, generator=gen, dtype=torch.float64)
    mask = None
    if "mask" in variant:  # key padding: the second image's last quarter of keys is padding
        mask = torch.ones(b, 1, 1, n, dtype=torch.bool)
        mask[-1, ..., n - n // 4 :] = False
        mask = mask.to(ctx.device)
    grad_out = torch.randn(b, h, n, d, generator=gen, dtype=torch.float64).to(ctx.device)

    def run(backend: str, as_dtype: torch.dtype) -> dict[str, torch.Tensor]:
        leaves = {
            k: t.to(ctx.device, as_dtype, copy=True).requires_grad_() for k, t in inputs.items()
        }
        out = attention(
            leaves["q"],
            leaves["k"],
            leaves["v"],
            bias=leaves.get("bias"),
            mask=mask,
            backend=backend,
        )
        out.backward(grad_out.to(as_dtype))
        return {"out": out, **{f"d{k}": t.grad for k, t in leaves.items()}}

    reference = run("math", torch.float64)
    probe = inputs["q"].to(ctx.device, dtype)
    bias_probe = torch.zeros(1, requires_grad=True) if "bias" in inputs else None
    reasons = explain_backends(probe, bias_probe)
    row = dict(dtype=str(dtype).removeprefix("torch."), shape=list(shape), variant=variant)
    for backend in ("math", "sdpa", "xformers"):
        if reasons[backend] is not None:
            row[backend] = dict(status=SKIP, reason=reasons[backend])
            continue
        try:
            got = run(backend, dtype)
        except Exception as err:  # a missing kernel is a finding, not the end of the section
            row[backend] = dict(status=FAIL, reason=f"{type(err).__name__}: {str(err)[:200]}")
            continue
        result = compare(got, reference, TOLERANCE[dtype])
        grads = [v for k, v in result["errors"].items() if k != "out"]
        row[backend] = dict(result, out=result["errors"]["out"], grad=max(grads))
    return row


def attention_section(ctx) -> dict:
    """Section 1 (module doc)."""
    if ctx.quick:
        shapes = [(2, 2, 17, 64), (2, 2, 40, 80)]
    else:
        shapes = [(2, 4, n, d) for n in (197, 1024) for d in (64, 80)]
    variants = ("plain", "bias", "mask", "bias+mask")
    gen, rows = _gen(0), []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for shape in shapes:
            for variant in variants:
                rows.append(_attention_case(ctx, dtype, shape, variant, gen))
        ctx.progress(f"attention {dtype}: {len(rows)} cases done")
    lines = [
        "Relative error (max |got - ref| / max |ref|) against the math backend in float64 on "
        "the same inputs: `out` = the output, `grad` = the worst of the gradients of q, k, v "
        "(and bias). Tolerance per dtype: "
        + ", ".join(f"{str(k).removeprefix('torch.')} {v:g}" for k, v in TOLERANCE.items())
        + ". (B, heads, N, head_dim) as given; bias (1, heads, N, N) needing a gradient; mask "
        "(B, 1, 1, N) with the last quarter of the second image's keys padded. Each tensor's "
        "relative and absolute errors are in the .json.",
        "",
        "| dtype | (B, heads, N, D) | variant | math out / grad | sdpa out / grad "
        "| xformers out / grad | status |",
        "|---|---|---|---|---|---|---|",
    ]
    statuses = []
    for row in rows:
        cells = []
        for backend in ("math", "sdpa", "xformers"):
            r = row[backend]
            statuses.append(r["status"])
            if "out" in r:
                cells.append(
                    f"{r['out']:.1e} / {r['grad']:.1e}"
                    + ("" if r["status"] == PASS else " **FAIL**")
                )
            else:
                cells.append(f"{r['status']}: {r['reason']}")
        status = overall([row[b]["status"] for b in ("math", "sdpa", "xformers")])
        lines.append(
            f"| {row['dtype']} | {tuple(row['shape'])} | {row['variant']} | "
            + " | ".join(cells)
            + f" | {status} |"
        )
    xformers = ctx.facts["xformers"]
    summary = (
        f"{sum(s == PASS for s in statuses)} backend-cases pass, "
        f"{statuses.count(FAIL)} fail; xformers: {xformers}"
    )
    return dict(status=overall(statuses), summary=summary, lines=lines, data=rows)


# ---------------------------------------------------------------- 2. deformable attention


def deform_attn_reference(value, shapes, locations, weights) -> torch.Tensor:
    """Deformable DETR's pure-PyTorch formulation (``ms_deform_attn_core_pytorch``): one
    ``F.grid_sample`` per level (bilinear, zeros outside, align_corners=False).

    value (B, S, heads, D), shapes [(H_l, W_l)] * L, locations (B, Q, heads, L, P, 2) in
    [0, 1], weights (B, Q, heads, L, P) -> (B, Q, heads * D).
    """
    b, _, heads, d = value.shape
    _, queries, _, levels, points, _ = locations.shape
    maps = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    samples = []
    for lvl, (h, w) in enumerate(shapes):
        level = maps[lvl].flatten(2).transpose(1, 2).reshape(b * heads, d, h, w)
        grid = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (B * heads, Q, P, 2)
        samples.append(
            F.grid_sample(level, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # (B * heads, D, Q, P)
    w = weights.transpose(1, 2).reshape(b * heads, 1, queries, levels * points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * w).sum(-1)  # (B * heads, D, Q)
    return out.view(b, heads * d, queries).transpose(1, 2)


def _deform_inputs(case: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """float64 value (B, S, heads, D), locations (B, Q, heads, L, P, 2) in [-0.1, 1.1] (some
    outside the maps), softmaxed weights (B, Q, heads, L, P), and an output gradient."""
    b, q, heads, d, p = case["batch"], case["queries"], case["heads"], case["dim"], case["points"]
    levels, s = len(case["shapes"]), sum(h * w for h, w in case["shapes"])
    f64 = dict(generator=gen, dtype=torch.float64)
    weights = torch.randn(b, q, heads, levels * p, **f64).softmax(-1)
    return dict(
        value=torch.randn(b, s, heads, d, **f64),
        locations=torch.rand(b, q, heads, levels, p, 2, **f64) * 1.2 - 0.1,
        weights=weights.view(b, q, heads, levels, p),
        grad=torch.randn(b, q, heads * d, **f64),
    )


def _deform_run(fn, inputs: dict, shapes, device: str, dtype: torch.dtype) -> dict:
    """Output and the gradients of value, locations and weights of ``fn`` in ``dtype``."""
    leaves = {
        k: inputs[k].to(device, dtype, copy=True).requires_grad_()
        for k in ("value", "locations", "weights")
    }
    out = fn(leaves["value"], shapes, leaves["locations"], leaves["weights"])
    out.backward(inputs["grad"].to(device, out.dtype))
    return {"out": out, **{f"d{k}": t.grad for k, t in leaves.items()}}


def _deform_op(device: str):
    from visionfm.ops.deform_attn import multi_scale_deformable_attention

    def op(value, shapes, locations, weights):
        spatial = torch.tensor(shapes, dtype=torch.long, device=device)
        return multi_scale_deformable_attention(value, spatial, None, locations, weights)

    return op


@contextlib.contextmanager
def _module_op_replaced_by_reference():
    """``MultiScaleDeformableAttention`` calling ``deform_attn_reference`` instead of the op."""
    from visionfm.ops import deform_attn

    op = deform_attn.multi_scale_deformable_attention
    deform_attn.multi_scale_deformable_attention = lambda value, spatial, start, loc, w: (
        deform_attn_reference(value, spatial.tolist(), loc, w)
    )
    try:
        yield
    finally:
        deform_attn.multi_scale_deformable_attention = op


def _module_under_autocast(ctx, gen) -> dict:
    """MultiScaleDeformableAttention under bf16 autocast with the op against the same module
    with the grid_sample formulation: the output and the gradients of query, value and the
    sampling-offset and value projections (the autocast error itself is in ``vs_float32``)."""
    from visionfm.ops.deform_attn import MultiScaleDeformableAttention

    shapes = [(8, 8), (4, 4)] if ctx.quick else [(64, 64), (32, 32), (16, 16), (8, 8)]
    torch.manual_seed(0)
    module = MultiScaleDeformableAttention(256, 8, len(shapes), 4).to(ctx.device)
    with torch.no_grad():  # offsets away from the radial init so that they matter
        module.sampling_offsets.weight.normal_(0, 0.05)
        module.attention_weights.weight.normal_(0, 0.05)
    b, q, s = 2, 10 if ctx.quick else 300, sum(h * w for h, w in shapes)
    query = torch.randn(b, q, 256, generator=gen).to(ctx.device)
    value = torch.randn(b, s, 256, generator=gen).to(ctx.device)
    ref_points = torch.rand(b, q, len(shapes), 2, generator=gen).to(ctx.device)
    spatial = torch.tensor(shapes, device=ctx.device)
    grad = torch.randn(b, q, 256, generator=gen).to(ctx.device)

    def run(autocast: bool) -> dict:
        module.zero_grad()
        leaves = query.clone().requires_grad_(), value.clone().requires_grad_()
        with torch.autocast(ctx.device_type, dtype=torch.bfloat16, enabled=autocast):
            out = module(leaves[0], ref_points, leaves[1], spatial)
        out.float().backward(grad)
        grads = dict(dquery=leaves[0].grad, dvalue=leaves[1].grad)
        return dict(
            out=out.float(),
            **grads,
            doffsets=module.sampling_offsets.weight.grad.clone(),
            dvalue_proj=module.value_proj.weight.grad.clone(),
        )

    got = run(True)
    with _module_op_replaced_by_reference():
        reference = run(True)
    result = compare(got, reference, MODULE_AUTOCAST_TOLERANCE)
    return dict(result, vs_float32=compare(got, run(False), math.inf)["errors"])


def _deform_cases(quick: bool) -> list[dict]:
    """Section 2's shapes: decoder cross-attention at 512 px, encoder self-attention (every
    token a query), the demo's head; --quick: one tiny case."""
    names = ("batch", "queries", "heads", "dim", "points", "shapes")
    if quick:
        return [dict(zip(names, (1, 10, 2, 8, 2, [(8, 8), (4, 6)])))]
    return [
        dict(zip(names, case))
        for case in (
            (2, 300, 8, 32, 4, [(64, 64), (32, 32), (16, 16), (8, 8)]),
            (1, 1700, 8, 32, 4, [(32, 40), (16, 20), (8, 10), (4, 5)]),
            (2, 100, 8, 16, 4, [(16, 16), (8, 8), (4, 4)]),
        )
    ]


def deform_attn_section(ctx) -> dict:
    """Section 2 (module doc)."""
    gen, rows = _gen(1), []
    op = _deform_op(ctx.device)
    for case in _deform_cases(ctx.quick):
        inputs, shapes = _deform_inputs(case, gen), case["shapes"]
        reference = _deform_run(deform_attn_reference, inputs, shapes, ctx.device, torch.float64)
        got = _deform_run(op, inputs, shapes, ctx.device, torch.float32)
        check = "op float32 vs grid_sample float64"
        rows.append(
            dict(case=case, check=check, **compare(got, reference, TOLERANCE[torch.float32]))
        )
        # bf16: the reference from the same rounded inputs; the bound per tensor is the larger
        # of the bf16 tolerance and the error of the grid_sample formulation run in bf16 (the
        # location gradient jumps at pixel edges, where bf16-rounded locations often fall)
        rounded = {k: t.bfloat16().double() for k, t in inputs.items()}
        reference = _deform_run(deform_attn_reference, rounded, shapes, ctx.device, torch.float64)
        lowp = _deform_run(deform_attn_reference, rounded, shapes, ctx.device, torch.bfloat16)
        baseline = compare(lowp, reference, math.inf)["errors"]
        tol = TOLERANCE[torch.bfloat16]  # a baseline of garbage (> 1, NaN) does not widen it
        bounds = {k: max(tol, v) if v <= 1.0 else tol for k, v in baseline.items()}
        got = _deform_run(op, rounded, shapes, ctx.device, torch.bfloat16)
        rows.append(
            dict(
                case=case,
                check="op bfloat16 vs grid_sample float64",
                baseline=baseline,
                **compare(got, reference, bounds),
            )
        )
        check = "op float32: CUDA vs CPU"
        if ctx.device_type == "cuda":
            cpu = _deform_run(_deform_op("cpu"), inputs, shapes, "cpu", torch.float32)
            got = _deform_run(op, inputs, shapes, ctx.device, torch.float32)
            rows.append(dict(case=case, check=check, **compare(got, cpu, DEVICE_VS_CPU_TOLERANCE)))
        else:
            rows.append(dict(case=case, check=check, status=SKIP, errors={}, tol=None))
        ctx.progress(f"deform_attn: {len(rows)} checks done")
    rows.append(
        dict(
            case=dict(module="MultiScaleDeformableAttention(256, 8 heads, 4 points)"),
            check="module, bf16 autocast: op vs grid_sample",
            **_module_under_autocast(ctx, gen),
        )
    )
    lines = [
        "Relative errors (max |got - ref| / max |ref|) of the output and of the gradients of "
        "value, sampling locations and attention weights. Locations uniform in [-0.1, 1.1] (some "
        "outside the maps: zeros). bfloat16: the op takes bf16-rounded inputs and its reference "
        "is computed from the same rounded values in float64; the bound of each tensor is the "
        "larger of the bf16 tolerance and the error of the grid_sample formulation itself run in "
        "bf16, given in brackets (the location gradient jumps at pixel edges, where bf16-rounded "
        "locations often fall; a bracket above 1 is not used: grid_sample in bf16 computes its "
        "pixel coordinates in bf16, and on CPU it can return garbage). Module: the same module "
        "and inputs under bf16 autocast with the grid_sample formulation in place of the op (the "
        "gradients of query, value and the sampling-offset and value-projection weights); its "
        "error against float32 is given too (information: bf16 offsets move samples across "
        "pixel edges). Absolute errors are in the .json.",
        "",
        "| case | check | errors | bound | status |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        base = row.get("baseline", {})
        errors = ", ".join(
            f"{k} {v:.1e}" + (f" ({base[k]:.1e})" if k in base else "")
            for k, v in row["errors"].items()
        )
        if "vs_float32" in row:
            errors += "; bf16 autocast vs float32: " + ", ".join(
                f"{k} {v:.1e}" for k, v in row["vs_float32"].items()
            )
        tol = row["tol"]
        tol = "—" if tol is None else f"{tol:g}" if not isinstance(tol, dict) else "see brackets"
        case = ", ".join(f"{k} {v}" for k, v in row["case"].items())
        errors = errors or "skipped: --device cpu has no second device to compare"
        lines.append(f"| {case} | {row['check']} | {errors} | {tol} | {row['status']} |")
    statuses = [row["status"] for row in rows]
    summary = f"{statuses.count(PASS)} checks pass, {statuses.count(FAIL)} fail"
    return dict(status=overall(statuses), summary=summary, lines=lines, data=rows)


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
    _reset_peak(ctx.device)
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
        peak_gib=_peak_gib(ctx.device),
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
            rows.append(dict(precision=precision, status=FAIL, reason=_error_line(err)))
            del err
        _release(ctx)
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


# ---------------------------------------------------------------- 4. MFU


@contextlib.contextmanager
def _bench_mfu_shrunk(image: int, **vit: int):
    """``bench_mfu.vit_train_step`` with its ViT-L preset overridden by ``vit`` and its image
    size set to ``image`` (the --quick CPU run)."""
    build, size = bench_mfu.build_vit, bench_mfu.TRAIN_IMAGE
    bench_mfu.build_vit = lambda name, device, **kw: build(name, device, **{**kw, **vit})
    bench_mfu.TRAIN_IMAGE = image
    try:
        yield
    finally:
        bench_mfu.build_vit, bench_mfu.TRAIN_IMAGE = build, size


def _detection_batch(num: int, size: int, seed: int = 0) -> dict:
    """``num`` rendered synthetic scenes of size x size: ``{'inputs': [uint8 (3, H, W)],
    'data_samples': [DataSample with gt_instances]}``, as a dataset yields them."""
    import numpy as np
    from mmengine.structures import InstanceData

    from visionfm.data.data_sample import DataSample
    from visionfm.data.synthetic import render_scene

    rng, images, samples = np.random.default_rng(seed), [], []
    for i in range(num):
        scene = render_scene(rng, size, size, max_objects=6)
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1).contiguous())
        sample = DataSample(
            metainfo=dict(
                img_id=i,
                img_shape=(size, size),
                ori_shape=(size, size),
                homography_matrix=np.eye(3, dtype=np.float32),
            )
        )
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(np.stack([o.bbox for o in scene.objects])),
            labels=torch.tensor([o.category_id - 1 for o in scene.objects]),
        )
        samples.append(sample)
    return dict(inputs=images, data_samples=samples)


def vitl_dino_step(ctx) -> dict:
    """One bf16-autocast AdamW training step of DINO on ViTDet-L at ``ctx.dino_image`` px:
    counted FLOPs (forward + backward), best / median step time over the runs, MFU."""
    from visionfm.engine import load_config
    from visionfm.registry import MODELS

    shrink = {}
    if ctx.quick:  # ViTDet-L's structure (windows + global blocks) at 64 wide, 2 blocks
        shrink = {
            "model.backbone.img_size": ctx.dino_image,
            "model.backbone.embed_dim": 64,
            "model.backbone.depth": 2,
            "model.backbone.num_heads": 2,
            "model.backbone.window_size": 2,
            "model.backbone.window_block_indices": [0],
            "model.neck.in_channels": 64,
            "model.head.num_queries": 20,
            "model.head.encoder.num_layers": 1,
            "model.head.decoder.num_layers": 1,
            "model.head.denoising.num_dn_queries": 10,
            "model.head.test_cfg.max_per_img": 20,
        }
    cfg = load_config(str(VITL_DINO_CONFIG), shrink)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).to(ctx.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=ctx.device_type == "cuda")
    data = model.data_preprocessor(_detection_batch(ctx.dino_batch, ctx.dino_image), True)

    def fwd_bwd():
        with torch.autocast(ctx.device_type, dtype=torch.bfloat16):
            loss = sum(model(**data, mode="loss").values())
        loss.backward()

    def step():
        fwd_bwd()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with bench_mfu._env(VISIONFM_ATTN="sdpa"):  # FlopCounterMode does not see xformers
        flops, _ = bench_mfu.count_flops(fwd_bwd)
    optimizer.zero_grad(set_to_none=True)
    _reset_peak(ctx.device)
    for _ in range(ctx.mfu_warmup):
        step()
    times = sorted(bench_mfu._timed(step, ctx.device) for _ in range(ctx.mfu_runs))
    best, median = times[0], times[len(times) // 2]
    return dict(
        model=f"DINO + ViTDet-L ({VITL_DINO_CONFIG.name})"
        + (", shrunk (--quick)" if ctx.quick else ""),
        batch=ctx.dino_batch,
        image=ctx.dino_image,
        tflops_per_step=flops / 1e12,
        best_ms=best * 1e3,
        median_ms=median * 1e3,
        achieved_tflops=flops / best / 1e12,
        mfu=flops / best / 1e12 / ctx.peak_tflops,
        max_memory_gib=_peak_gib(ctx.device),
    )


def _vit_step(ctx) -> dict:
    """``bench_mfu.vit_train_step`` (ViT-L/16 at 512 px; --quick: shrunk) with its status."""
    args = SimpleNamespace(
        gpu_train_batch=ctx.vit_batch,
        warmup=ctx.mfu_warmup,
        runs=ctx.mfu_runs,
        peak_tflops=ctx.peak_tflops,
    )
    _reset_peak(ctx.device)
    if ctx.quick:
        with _bench_mfu_shrunk(32, embed_dim=64, depth=2, num_heads=2):
            vit = bench_mfu.vit_train_step(args, ctx.device)
        vit.update(model=vit["model"] + " shrunk (--quick): 64 wide, 2 blocks", image=32)
    else:
        vit = dict(bench_mfu.vit_train_step(args, ctx.device), image=bench_mfu.TRAIN_IMAGE)
    vit["status"] = judge(vit["mfu"] >= MFU_TARGET, ctx.device_type == "cuda" and not ctx.quick)
    return vit


def halving_batch_on_oom(step: Callable[..., dict], ctx, batch_attr: str) -> dict:
    """``step(ctx)``; after a CUDA out-of-memory, again at half the batch ``ctx.<batch_attr>``
    (down to 1, then the error stands). The row gets ``oom_retries``."""
    retries = 0
    while True:
        try:
            return dict(step(ctx), oom_retries=retries)
        except torch.cuda.OutOfMemoryError:
            if getattr(ctx, batch_attr) <= 1:
                raise
        _release(ctx)  # outside the except block: the traceback no longer holds the tensors
        retries += 1
        setattr(ctx, batch_attr, getattr(ctx, batch_attr) // 2)
        ctx.progress(f"out of memory: again at batch {getattr(ctx, batch_attr)}")


def mfu_section(ctx) -> dict:
    """Section 4 (module doc)."""
    if ctx.device_type == "cpu" and not ctx.quick:
        reason = "full-size ViT-L training steps are for the GPU (on CPU: --quick)"
        return dict(status=SKIP, summary=reason, lines=[reason], data=None)
    rows = []
    steps = (
        ("ViT-L/16 (bench_mfu)", _vit_step, "vit_batch"),
        ("DINO ViTDet-L", vitl_dino_step, "dino_batch"),
    )
    for what, step, batch_attr in steps:
        try:
            rows.append(halving_batch_on_oom(step, ctx, batch_attr))
        except Exception as err:  # e.g. out of memory: the other step still runs
            rows.append(dict(model=what, status=FAIL, error=_error_line(err)))
            del err
        _release(ctx)
        r = rows[-1]
        ctx.progress(f"mfu {what}: " + (f"MFU {r['mfu']:.1%}" if "mfu" in r else r["error"]))
    rows[1].setdefault("status", INFO)
    lines = [
        f"MFU = FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` (forward + backward, "
        f"attention counted through SDPA; optimizer step not counted) / best step time / "
        f"{ctx.peak_tflops:g} TFLOP/s ({ctx.peak_source}). Both steps: bf16 autocast, AdamW, "
        f"{ctx.mfu_warmup} warm-up step(s), best and median of {ctx.mfu_runs}. ViT-L target: "
        f"MFU >= {MFU_TARGET:.0%} on CUDA. The DINO step also runs the Hungarian matching on "
        "the CPU and deformable attention as gathers (not counted): information, no target. "
        "After an out-of-memory a step is run again at half the batch (the batch column says "
        "which ran).",
        "",
        "| model | batch | px | TFLOPs / step | best ms | median ms | TFLOP/s | MFU | peak GiB "
        "| status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['error']} | | | | | | | | {r['status']} |")
            continue
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['image']} | {r['tflops_per_step']:.3f} | "
            f"{r['best_ms']:.1f} | {r['median_ms']:.1f} | {r['achieved_tflops']:.2f} | "
            f"{r['mfu']:.1%} | {common.fmt(r['max_memory_gib'], '.1f')} | {r['status']} |"
        )
    summary = "; ".join(
        f"{r['model'].split(' (')[0]} "
        + (f"MFU {r['mfu']:.1%}" if "mfu" in r else "error")
        + f" ({r['status']})"
        for r in rows
    )
    status = overall([r["status"] for r in rows])
    return dict(status=status, summary=summary, lines=lines, data=rows)


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


def peak_for(device_name: str, given: float | None) -> tuple[float, str]:
    """(dense bf16 TFLOP/s, where the figure comes from) for the MFU section."""
    if given is not None:
        return given, "--peak-tflops"
    if device_name == "cpu":
        return 989.0, "H100 SXM's dense bf16 figure: on CPU the MFU column means nothing"
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops, f"NVIDIA's dense bf16 figure for {key}"
    return 989.0, f"{device_name} not in the table: H100 SXM's 989 assumed; give --peak-tflops"


def run_section(name: str, ctx) -> dict:
    """One section, isolated: an exception (out-of-memory included) becomes a FAIL with its
    traceback; GPU memory is released after it either way."""
    start = time.perf_counter()
    try:
        result = SECTION_FNS[name][1](ctx)
    except Exception as err:
        lines = traceback.format_exc().splitlines()
        result = dict(
            status=FAIL, summary=_error_line(err), lines=["```", *lines[-30:], "```"], data=None
        )
        del err
    _release(ctx)
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
