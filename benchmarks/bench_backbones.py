"""Backbone inference on CPU: visionfm vs timm (same weights) vs HF transformers (same config).

    python benchmarks/bench_backbones.py [--families vit swin swinv2 pvt] [--sizes 224 512]
                                         [--batches 1 8] [--repeats 7] [--warmup 1]
                                         [--threads 2] [--out results/backbones_cpu.md] [--json FILE]

Families (ours -> timm / HF): ViT-B/16 (``vit_base_patch16`` -> ``vit_base_patch16_224`` /
``ViTModel``), Swin-T (``swin_tiny`` -> ``swin_tiny_patch4_window7_224`` / ``SwinBackbone``),
Swin V2-T (``swinv2_tiny`` -> ``swinv2_tiny_window8_256`` / ``Swinv2Backbone``), PVT v2-b2
(``pvt_v2_b2`` -> ``pvt_v2_b2`` / ``PvtV2Backbone``). Every model: eval mode,
``torch.inference_mode()``, float32, eager, images of ``size x size`` in batches of ``batch``.

What is timed is what each model computes for a dense-prediction head:

- ours: ``model(x)``, the default outputs (ViT: the last block's feature map after the final
  norm; Swin / PVT: the four stage maps p2 .. p5, each through its output norm);
- timm: ViT ``forward_features`` with ``dynamic_img_size=True`` (resizes the 224-px position
  embedding for other sizes, as ours does; ours caches the resized table between calls in
  inference); Swin / Swin V2 / PVT ``forward_intermediates(norm=True, intermediates_only=True)``
  with the model built at the run size (``img_size``; window sizes as ours). timm's Swin
  leaves p2 .. p4 un-normed, so ours does three small LayerNorms more there;
- HF: ``ViTModel`` (no pooler; ``interpolate_pos_encoding`` away from 224 px) and the
  ``*Backbone`` classes with all four stages out (normed maps, what ours returns), each with
  HF's own random init of a config with the same sizes: the weights are not ours, which does
  not change the time (no data-dependent control flow), so HF columns are time and memory
  only, with no output check. HF's attention implementation is its default (noted per row).

Before timing, ours must match timm: timm's random init, with every 1-D parameter (biases,
norms, V2 logit scales) shifted by ``N(0, 0.5)`` noise (timm starts Swin V2's residual
post-norms at zero, which would make every block a no-op and the check vacuous), is loaded
into ours through ``load_pretrained`` (the converter of each family), and the last output
level (it depends on every block) must agree within ``1e-4 * max(1, max |timm|)``. One
exception: where a Swin stage map is not a multiple of the window (Swin-T at 512 px, Swin
V2-T at 224 px), timm rolls the map before padding it while ours pads first (as the official
repos, mmdet and HF do), a different function with the same amount of work; the check then
runs at timm's native size (224 / 256 px, no padding) with the same weights, and the table
says so.

Time: one fresh subprocess per (family, size, batch) holds the three models; each runs
``--warmup`` times (the check above counts as one), then ``--repeats`` rounds in which every
model runs once, the order rotating each round (ABC, BCA, CAB ...) so that load drift from
other jobs hits all alike. Reported: median wall-clock ms per forward, images/s = batch /
median, and the ratio of the medians of process CPU time (all threads; less sensitive to
other load than wall-clock time).

Peak memory: one more fresh subprocess per (family, size, batch, implementation), with glibc
told to serve every allocation over 64 KiB by its own mmap (``MALLOC_MMAP_THRESHOLD_``) so
freed memory leaves the resident set at once. It builds the model and input, runs one
warm-up forward (one-off kernel and cache set-up), resets the kernel's RSS high-water mark
(``echo 5 > /proc/self/clear_refs``) and runs once more: peak = VmHWM - VmRSS just before
that call, i.e. every byte the forward touched on top of the weights and the input,
whichever allocator it came from (PyTorch's CPU allocator, oneDNN / MKL scratch, Python);
the outputs are included. tracemalloc and ``torch.profiler`` memory do not see all of these.
Linux only (reads ``/proc/self/status``); where ``clear_refs`` is not writable the peak is
the ru_maxrss delta, which misses a peak below the process's earlier high-water mark (the
table says so).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
from pathlib import Path

import _common as common
import timm
import torch

OUT = common.RESULTS / "backbones_cpu.md"
IMPLS = ("ours", "timm", "hf")
FAMILIES = {  # key -> (label, our preset, timm name)
    "vit": ("ViT-B/16", "vit_base_patch16", "vit_base_patch16_224"),
    "swin": ("Swin-T", "swin_tiny", "swin_tiny_patch4_window7_224"),
    "swinv2": ("Swin V2-T", "swinv2_tiny", "swinv2_tiny_window8_256"),
    "pvt": ("PVT v2-b2", "pvt_v2_b2", "pvt_v2_b2"),
}
HF_STAGES = ["stage1", "stage2", "stage3", "stage4"]
SWIN_WINDOW = {"swin": (7, 224), "swinv2": (8, 256)}  # window, timm's native size (no padding)


# ---------------------------------------------------------------- models (worker side)


def build_timm(family: str, size: int):
    """timm's model of ``family`` for ``size``-px inputs, random weights (seeded)."""
    torch.manual_seed(0)
    name = FAMILIES[family][2]
    if family == "vit":
        return timm.create_model(name, num_classes=0, dynamic_img_size=True)
    if family in ("swin", "swinv2"):  # the window stays the preset's (7 / 8) at any img_size
        return timm.create_model(name, num_classes=0, img_size=size)
    return timm.create_model(name, num_classes=0)


def check_size(family: str, size: int) -> int:
    """Size for the ours-vs-timm check: ``size``, or timm's native size for a Swin whose
    stage maps need padding to the window at ``size`` (see the module doc)."""
    if family not in SWIN_WINDOW:
        return size
    window, native = SWIN_WINDOW[family]
    maps = [math.ceil(size / 4 / 2**i) for i in range(4)]
    return native if any(m > window and m % window for m in maps) else size


def perturb_vectors(model, std: float = 0.5) -> None:
    """Adds N(0, std) noise to every 1-D parameter (biases, norms, logit scales), in place."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() <= 1:
                p.add_(torch.randn(p.shape, generator=gen) * std)


def build_ours(family: str, timm_model=None):
    """Our preset; with ``timm_model``, its weights loaded through our converter."""
    sys.path.insert(0, str(common.ROOT))
    from visionfm.registry import MODELS

    torch.manual_seed(0)
    # ViT: resize the position embedding with antialiasing, as timm's dynamic_img_size does
    extra = dict(pos_embed_antialias=True) if family == "vit" else {}
    model = MODELS.build(dict(type=FAMILIES[family][1], **extra))
    if timm_model is not None:
        report = model.load_pretrained(timm_model.state_dict())
        # Swin: timm has no norms for p2 .. p4 (ours alone); nothing else may be left out
        left = [n for n, _ in report.missing if not n.startswith("norms.")]
        if left or report.unexpected or report.mismatched:
            raise RuntimeError(f"{family}: timm weights did not load cleanly:\n{report}")
    return model


def build_hf(family: str):
    """HF transformers' model of the same sizes, its own random init (seeded)."""
    import transformers as T

    torch.manual_seed(0)
    if family == "vit":
        cfg = T.ViTConfig(
            image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
            num_attention_heads=12, intermediate_size=3072, layer_norm_eps=1e-6,
        )  # fmt: skip
        return T.ViTModel(cfg, add_pooling_layer=False)
    swin = dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], out_features=HF_STAGES)
    if family == "swin":
        return T.SwinBackbone(T.SwinConfig(image_size=224, window_size=7, **swin))
    if family == "swinv2":
        return T.Swinv2Backbone(T.Swinv2Config(image_size=256, window_size=8, **swin))
    cfg = T.PvtV2Config(
        depths=[3, 4, 6, 3], hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8],
        sr_ratios=[8, 4, 2, 1], mlp_ratios=[8, 8, 4, 4], out_features=HF_STAGES,
    )  # fmt: skip
    return T.PvtV2Backbone(cfg)


def forward_fn(impl: str, family: str, model, size: int):
    """x: (B, 3, size, size) -> the model's outputs (a dict, list or tensor; see module doc)."""
    if impl == "ours":
        return model
    if impl == "timm":
        if family == "vit":
            return model.forward_features  # (B, 1 + N, C)
        return lambda x: model.forward_intermediates(x, norm=True, intermediates_only=True)
    if family == "vit":
        return lambda x: model(pixel_values=x, interpolate_pos_encoding=size != 224)
    return lambda x: model(pixel_values=x)


def last_level(impl: str, family: str, out) -> torch.Tensor:
    """The last output level as (B, C, h, w), for the ours-vs-timm check."""
    if impl == "ours":
        return list(out.values())[-1]
    if family == "vit":  # timm tokens (B, 1 + h * w, C): drop the class token, to a map
        b, n, c = out.shape
        grid = int((n - 1) ** 0.5)
        return out[:, 1:].reshape(b, grid, grid, c).permute(0, 3, 1, 2)
    return out[-1]


def hf_attn(model) -> str:
    return getattr(model.config, "_attn_implementation", None) or "eager"


# ---------------------------------------------------------------- workers


def _check(family: str, ours, ref, x) -> float:
    """Max |diff| of the last output level of ours and timm on ``x``; raises if not close."""
    got, expected = last_level("ours", family, ours(x)), last_level("timm", family, ref(x))
    if got.shape != expected.shape:
        raise AssertionError(f"{family}: shapes differ, {got.shape} vs {expected.shape}")
    diff = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    if not diff <= 1e-4 * max(1.0, scale) or scale < 0.1:  # close, and not vacuously
        raise AssertionError(
            f"{family}: ours and timm differ by {diff:.3g} (max |timm| {scale:.3g})"
        )
    return diff


def time_case(case: dict) -> dict:
    """One (family, size, batch): check ours == timm, then time every implementation."""
    torch.set_num_threads(case["threads"])
    family, size, batch = case["family"], case["size"], case["batch"]
    models = {"timm": build_timm(family, size)}
    perturb_vectors(models["timm"])
    models["ours"] = build_ours(family, models["timm"])
    if case["hf"]:
        models["hf"] = build_hf(family)
    impls = [i for i in IMPLS if i in models]
    fns = {}
    for impl in impls:
        models[impl].eval()
        fns[impl] = forward_fn(impl, family, models[impl], size)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))

    checked_at = check_size(family, size)
    with torch.inference_mode():
        if checked_at == size:
            diff = _check(family, fns["ours"], fns["timm"], x)
            warm = ("ours", "timm")  # the check was their first warm-up run
        else:  # timm at its native size, same weights (its state dict has no size in it)
            ref = build_timm(family, checked_at).eval()
            ref.load_state_dict(models["timm"].state_dict())
            gen = torch.Generator().manual_seed(1)
            xc = torch.randn(1, 3, checked_at, checked_at, generator=gen)
            diff = _check(family, models["ours"], forward_fn("timm", family, ref, checked_at), xc)
            del ref
            warm = ()
        for impl in impls:
            for _ in range(case["warmup"] - (impl in warm)):
                fns[impl](x)
        # rotating order: ABC, BCA, CAB, ...
        calls = {impl: functools.partial(fns[impl], x) for impl in impls}
        wall, cpu = common.time_in_turns(calls, case["repeats"])
    return dict(
        case,
        diff=diff,
        checked_at=checked_at,
        hf_attn=hf_attn(models["hf"]) if "hf" in models else None,
        ms=common.median_ms(wall),
        cpu_ms=common.median_ms(cpu),
    )


def memory_case(case: dict) -> dict:
    """Peak resident memory of one forward of ``case["impl"]`` above weights and input."""
    torch.set_num_threads(case["threads"])
    family, size, impl = case["family"], case["size"], case["impl"]
    if impl == "timm":
        model = build_timm(family, size)
    elif impl == "ours":
        model = build_ours(family)  # memory does not depend on the weights
    else:
        model = build_hf(family)
    fn = forward_fn(impl, family, model.eval(), size)
    x = torch.randn(case["batch"], 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fn(x)  # warm-up: kernels, thread pools, ours' resized-position-embedding cache
        peak_mb, exact = common.peak_rss_mib(lambda: fn(x))
    return dict(case, peak_mb=peak_mb, peak_exact=exact)


# ---------------------------------------------------------------- driver


def _versions(hf: bool) -> str:
    text = f"timm {timm.__version__}"
    if hf:
        import transformers

        text += f", transformers {transformers.__version__}"
    return text


def _table(results: list[dict], args) -> str:
    lines = [
        "# Backbone inference on CPU: visionfm vs timm vs HF transformers",
        "",
        f"Date: {common.timestamp()}. Machine: {common.machine()}, "
        f"Python {platform.python_version()}, {common.torch_build()}; {_versions(args.hf)}; "
        f"torch.set_num_threads({args.threads}), OMP_WAIT_POLICY={common.omp_wait_policy()}.",
        f"Forward only: eval mode, `torch.inference_mode()`, float32, eager. Time: median "
        f"wall clock of {args.repeats} runs after {args.warmup} warm-up run(s), the "
        "implementations taking turns in rotating order (one fresh process per row); img/s = "
        "batch / median. CPU ratio: the same ratio of process CPU time (all threads), less "
        "sensitive to other jobs on the machine.",
        "ours and timm have the same weights (timm's random init, 1-D parameters perturbed, "
        "loaded through our converter) and their last output level is checked to agree "
        "(max |diff| shown; '(at N px)': checked at N px, where timm pads Swin maps after "
        "the cyclic shift and ours before it, see the script's docstring). "
        "HF: its own random init of a config with the same sizes (time does not depend "
        "on the weights), not checked against the others.",
        "Peak: resident-memory high-water mark of one forward above the weights and input "
        "(fresh process per implementation, every allocation > 64 KiB served by its own "
        "mmap so freed memory leaves RSS; outputs included).",
        "Written by `python benchmarks/bench_backbones.py`; see its docstring for what each "
        "implementation runs and the method.",
        f"Load average (1 min; other jobs share this machine, so times are noisy): "
        f"{args.load[0]:.1f} at start, {args.load[1]:.1f} at the end.",
    ]
    for family in args.families:
        label, ours_name, timm_name = FAMILIES[family]
        rows = [r for r in results if r["family"] == family]
        hf_name = {"vit": "ViTModel", "swin": "SwinBackbone", "swinv2": "Swinv2Backbone",
                   "pvt": "PvtV2Backbone"}[family]  # fmt: skip
        attn = sorted({r["hf_attn"] for r in rows if r["hf_attn"]})
        lines += [
            "",
            f"## {label}",
            "",
            f"ours `{ours_name}`, timm `{timm_name}`"
            + (f", HF `{hf_name}` (attention: {', '.join(attn)})" if args.hf else "")
            + ". Ratios: ours / reference (<= 1.0: ours is as fast or faster).",
            "",
            "| px | batch | ours ms | timm ms | ours/timm | ours/timm CPU | HF ms | ours/HF "
            "| ours img/s | timm img/s | HF img/s | ours peak MB | timm peak MB | HF peak MB "
            "| max abs diff |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            ms, cpu, peak, b = r["ms"], r["cpu_ms"], r["peak_mb"], r["batch"]
            hf = ms.get("hf")
            where = "" if r["checked_at"] == r["size"] else f" (at {r['checked_at']} px)"
            lines.append(
                f"| {r['size']} | {b} | {ms['ours']:.1f} | {ms['timm']:.1f} "
                f"| {ms['ours'] / ms['timm']:.3f} | {cpu['ours'] / cpu['timm']:.3f} "
                f"| {common.fmt(hf, '.1f')} | {common.fmt(hf and ms['ours'] / hf, '.3f')} "
                f"| {b * 1e3 / ms['ours']:.2f} | {b * 1e3 / ms['timm']:.2f} "
                f"| {common.fmt(hf and b * 1e3 / hf, '.2f')} "
                f"| {peak['ours']:.1f} | {peak['timm']:.1f} | {common.fmt(peak.get('hf'), '.1f')} "
                f"| {r['diff']:.1e}{where} |"
            )
    if not all(r["peak_exact"] for r in results):
        lines += ["", common.INEXACT_PEAK_NOTE]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per implementation")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (>= 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-hf", dest="hf", action="store_false", help="skip HF transformers")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--json", type=Path, help="also write the results as JSON here (for benchmarks/run_all.py)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case = json.loads(args.worker)
        print(json.dumps(time_case(case) if case["measure"] == "time" else memory_case(case)))
        return
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the ours-vs-timm check is a warm-up run)")
    if args.hf:
        try:
            import transformers  # noqa: F401
        except ImportError:
            print("transformers is not installed: no HF columns", file=sys.stderr)
            args.hf = False

    from tqdm import tqdm

    impls = [i for i in IMPLS if i != "hf" or args.hf]
    cases = [
        dict(family=f, size=s, batch=b, threads=args.threads, hf=args.hf)
        for f in args.families
        for s in args.sizes
        for b in args.batches
    ]
    load_start = os.getloadavg()[0]
    results = []
    bar = tqdm(total=len(cases) * (1 + len(impls)), desc="backbone runs", unit="run")
    for case in cases:
        tag = f"{case['family']} {case['size']}px b{case['batch']}"
        bar.set_postfix_str(f"{tag} time")
        timing = dict(case, measure="time", repeats=args.repeats, warmup=args.warmup)
        result = common.spawn(__file__, timing)
        bar.update()
        result["peak_mb"], result["peak_exact"] = {}, True
        for impl in impls:
            bar.set_postfix_str(f"{tag} memory {impl}")
            # freed memory leaves RSS at once (see module doc)
            memory = common.spawn(
                __file__, dict(case, measure="memory", impl=impl), common.MALLOC_RETURNS_FREED
            )
            result["peak_mb"][impl] = memory["peak_mb"]
            result["peak_exact"] &= memory["peak_exact"]
            bar.update()
        results.append(result)
        ms = result["ms"]
        bar.write(f"{tag}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items()))
    bar.close()
    args.load = (load_start, os.getloadavg()[0])
    table = _table(results, args)
    # JSON: one row per (family, size, batch): ms, cpu_ms, peak_mb per implementation
    common.write_results(args.out, table, args.json, dict(threads=args.threads, rows=results))
    print(table)


if __name__ == "__main__":
    main()
