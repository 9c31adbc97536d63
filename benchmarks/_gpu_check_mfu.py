"""Section 4 of the GPU check (``benchmarks/gpu_check.py``): model FLOPs utilisation of
``bench_mfu``'s ViT-L/16 training step and of a DINO on ViTDet-L training step, against the
GPU's dense bf16 peak; a step that runs out of memory is run again at half the batch. The
section takes the run's ``ctx`` and returns ``{'status', 'summary', 'lines' (markdown), 'data'
(for the .json)}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import SimpleNamespace

import _common as common
import bench_mfu
import torch
from _gpu_check_common import (
    FAIL,
    INFO,
    SKIP,
    error_line,
    judge,
    overall,
    peak_gib,
    release,
    reset_peak,
)

VITL_DINO_CONFIG = common.ROOT / "configs/dino/dino_vitdet-l_coco.py"
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


def vitl_dino_step(ctx) -> dict:
    """One bf16-autocast AdamW training step of DINO on ViTDet-L at ``ctx.dino_image`` px:
    counted FLOPs (forward + backward), best / median step time over the runs, MFU."""
    from visionfm.data.synthetic import detection_batch
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
    data = model.data_preprocessor(detection_batch(ctx.dino_batch, ctx.dino_image), True)

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
    reset_peak(ctx.device)
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
        max_memory_gib=peak_gib(ctx.device),
    )


def _vit_step(ctx) -> dict:
    """``bench_mfu.vit_train_step`` (ViT-L/16 at 512 px; --quick: shrunk) with its status."""
    args = SimpleNamespace(
        gpu_train_batch=ctx.vit_batch,
        warmup=ctx.mfu_warmup,
        runs=ctx.mfu_runs,
        peak_tflops=ctx.peak_tflops,
    )
    reset_peak(ctx.device)
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
        release(ctx)  # outside the except block: the traceback no longer holds the tensors
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
            rows.append(dict(model=what, status=FAIL, error=error_line(err)))
            del err
        release(ctx)
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
