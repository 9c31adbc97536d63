"""Sections 1 and 2 of the GPU check (``benchmarks/gpu_check.py``): the attention backends
against the math backend in float64, and multi-scale deformable attention against Deformable
DETR's ``grid_sample`` formulation (``visionfm.ops.deform_attn_grid``) in float64. Each section
takes the run's ``ctx`` and returns ``{'status', 'summary', 'lines' (markdown), 'data' (for the
.json)}``.
"""

from __future__ import annotations

import contextlib
import math

import torch
from _gpu_check_common import FAIL, PASS, SKIP, compare, overall

# Largest relative error (max |got - ref| / max |ref|) accepted per compute dtype: float32
# (no TF32), float16 (11-bit mantissa), bfloat16 (8-bit mantissa), after softmax / sums.
TOLERANCE = {torch.float32: 2e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
DEVICE_VS_CPU_TOLERANCE = 1e-5  # the same float32 op on two devices: summation order only
# The op against the grid_sample formulation in one module under bf16 autocast: both sample in
# float32, but their tiny differences pass through bf16 layers (one bf16 rounding step).
MODULE_AUTOCAST_TOLERANCE = 1e-2


def _gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: the same inputs on every device."""
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
    """``MultiScaleDeformableAttention`` calling ``deform_attn_grid_sample`` instead of the op."""
    from visionfm.ops import deform_attn
    from visionfm.ops.deform_attn_grid import deform_attn_grid_sample

    op = deform_attn.multi_scale_deformable_attention
    deform_attn.multi_scale_deformable_attention = lambda value, spatial, start, loc, w: (
        deform_attn_grid_sample(value, spatial.tolist(), loc, w)
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
    from visionfm.ops.deform_attn_grid import deform_attn_grid_sample as reference_op

    gen, rows = _gen(1), []
    op = _deform_op(ctx.device)
    for case in _deform_cases(ctx.quick):
        inputs, shapes = _deform_inputs(case, gen), case["shapes"]
        reference = _deform_run(reference_op, inputs, shapes, ctx.device, torch.float64)
        got = _deform_run(op, inputs, shapes, ctx.device, torch.float32)
        check = "op float32 vs grid_sample float64"
        rows.append(
            dict(case=case, check=check, **compare(got, reference, TOLERANCE[torch.float32]))
        )
        # bf16: the reference from the same rounded inputs; the bound per tensor is the larger
        # of the bf16 tolerance and the error of the grid_sample formulation run in bf16 (the
        # location gradient jumps at pixel edges, where bf16-rounded locations often fall)
        rounded = {k: t.bfloat16().double() for k, t in inputs.items()}
        reference = _deform_run(reference_op, rounded, shapes, ctx.device, torch.float64)
        lowp = _deform_run(reference_op, rounded, shapes, ctx.device, torch.bfloat16)
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
