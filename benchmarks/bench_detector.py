"""Detectors on CPU: end-to-end inference latency per image and training throughput / peak
memory, ours against HF transformers' Deformable DETR, in float32 and under bf16 autocast.

    python benchmarks/bench_detector.py [--config CFG] [--checkpoint CKPT] [--large-config CFG]
        [--images DIR] [--num 50] [--num-large 5] [--train-iters 10] [--train-warmup 2]
        [--large-train-iters 2] [--large-train-size 512] [--large-train-batch 1] [--no-large] [--threads 2]
        [--out results/detector_cpu.md] [--json FILE]

Every group below runs in a fresh worker process (``_common.spawn``); inside it the variants
alternate (``_common.in_turns``), so that drift in the machine's load hits all alike. Times
come from workers with the default allocator; training peaks from a second worker per group
started with ``_common.MALLOC_RETURNS_FREED`` (every allocation over 64 KiB its own mmap, so
freed memory leaves the resident set — and every such allocation is a system call, which
slows a model of many small tensors several-fold: its times are not used).

- Latency: time per image of ``visionfm.apis.Inferencer`` (decode, the config's test pipeline,
  data preprocessor, model, post-processing), batch 1, over ``--num`` validation images of the
  synthetic data, for the demo config (``--config``) and ``--num-large`` images for the ViT-B
  DINO config (``--large-config``, its COCO test pipeline: long side 1024 px), each in float32
  and with ``Inferencer(amp=True)`` (``torch.autocast("cpu", torch.bfloat16)``). The bf16 cost
  in accuracy: the largest change of the top scores (sorted) and of the boxes (each float32
  box of the top 10 against its nearest bf16 box, original-image pixels) over the images.
  Reference for the demo: HF ``DeformableDetrForObjectDetection`` of the same width and depth
  built exactly as ``hf_deformable_detr.build_hf_model`` (random weights), end to end with
  HF's own ``DeformableDetrImageProcessor`` (long side 128 px as ours) and
  ``post_process_object_detection`` (top 30, the demo's ``max_per_img``).
- Training: images/s of a training step (data preprocessor, forward, loss, backward, gradient
  clipping, optimizer step; the config's optim wrapper, ``AutocastOptimWrapper`` for bf16 as
  ``tools/train.py --amp`` uses it) over the first training images of the synthetic data,
  loaded beforehand through the demo's training pipeline (resize to ``size`` px long side,
  random flip), median of ``--train-iters`` timed steps (``--large-train-iters`` for the
  ViT-B config) after ``--train-warmup``. Peak memory: the largest over up to two steps (in
  the memory worker) of the resident-set high-water mark of a step above what was resident
  before it (model, optimizer state and data already there; ``_common.peak_rss_mib``). The demo at its
  batch size (4) against the HF model (its AdamW, clipping at 0.1 and the original loss, as in
  bench_time_to_accuracy) on the same images at the same batch; the ViT-B DINO config at
  ``--large-train-batch`` and ``--large-train-size`` px.

Without a checkpoint our models have their initial weights (time does not depend on them;
the bf16 differences do: pass the demo's trained checkpoint for meaningful ones).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import _common as common
import torch

DEMO = "configs/dino/dino_vit-t_synthetic.py"
LARGE = "configs/dino/dino_vitdet-b_coco.py"
DATA = Path("data/synthetic")
TOP_BOXES = 10  # boxes compared between float32 and bf16 per image
VARIANT_ORDER = ("ours fp32", "ours bf16", "HF fp32", "HF bf16")


# ---------------------------------------------------------------- latency (worker)


def _hf_inference():
    """-> fn(path) running the HF reference end to end: decode, its image processor, model,
    its post-processing."""
    import cv2
    from hf_deformable_detr import LONG_SIDE, build_hf_model
    from transformers import DeformableDetrImageProcessor

    torch.manual_seed(0)
    model = build_hf_model(num_classes=_num_classes(), backbone="resnet18").eval()
    processor = DeformableDetrImageProcessor(
        size=dict(shortest_edge=LONG_SIDE, longest_edge=LONG_SIDE)  # long side 128, as ours
    )

    @torch.no_grad()
    def run(path: str):
        image = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        inputs = processor(images=image, return_tensors="pt")
        outputs = model(**inputs)
        return processor.post_process_object_detection(
            outputs, threshold=0.0, target_sizes=[image.shape[:2]], top_k=30
        )[0]

    return run


def _num_classes() -> int:
    with open(DATA / "annotations" / "instances_val.json") as f:
        return len(json.load(f)["categories"])


def _bf16_change(fp32, bf16) -> tuple[float, float]:
    """(max |score change| over the sorted top scores, max over the top-10 float32 boxes of
    the max-coordinate distance to the nearest bf16 box, pixels) for one image's samples."""
    a, b = fp32.pred_instances, bf16.pred_instances
    k = min(len(a.scores), len(b.scores))
    scores = (
        a.scores.float().sort(descending=True)[0][:k]
        - b.scores.float().sort(descending=True)[0][:k]
    )
    top = a.bboxes[a.scores.argsort(descending=True)[:TOP_BOXES]].float()  # (k, 4) x0 y0 x1 y1
    dist = (top[:, None] - b.bboxes.float()[None]).abs().amax(-1)  # (k, n)
    boxes = dist.amin(1).max().item() if dist.numel() else 0.0
    return scores.abs().max().item() if k else 0.0, boxes


def latency_worker(case: dict) -> dict:
    """Our Inferencer in fp32 and bf16 (+ the HF reference for the demo) over the images."""
    from visionfm.apis import Inferencer

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    paths = case["paths"]
    inferencer = Inferencer(case["config"], case["checkpoint"], device="cpu", score_thr=0.0)
    input_shape = tuple(inferencer._prepare(paths[0])["inputs"].shape[-2:])

    def ours(amp: bool):
        def run(path):
            inferencer.amp = amp
            return inferencer(path)

        return run

    fns = {"ours fp32": ours(False), "ours bf16": ours(True)}
    if case["hf"]:
        fns["HF fp32"] = _hf_inference()
    for fn in fns.values():  # warm-up
        fn(paths[0])
    times: dict[str, list[float]] = {name: [] for name in fns}
    outputs: dict[str, list] = {name: [] for name in fns}
    for turn, name in enumerate(common.in_turns(list(fns), len(paths))):
        path = paths[turn // len(fns)]
        start = time.perf_counter()
        outputs[name].append(fns[name](path))
        times[name].append((time.perf_counter() - start) * 1e3)
    changes = [_bf16_change(a, b) for a, b in zip(outputs["ours fp32"], outputs["ours bf16"])]
    return dict(
        config=case["config"],
        images=len(paths),
        input_hw=input_shape,
        variants={
            name: dict(median_ms=statistics.median(t), p90_ms=_p90(t)) for name, t in times.items()
        },
        bf16_max_score_change=max(c[0] for c in changes),
        bf16_max_box_change_px=max(c[1] for c in changes),
    )


def _p90(values: list[float]) -> float:
    """The 90th percentile by nearest rank (the largest of fewer than 10 values)."""
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


# ---------------------------------------------------------------- training (worker)


def _our_training(config: str, size: int, batch: int) -> tuple[dict, list[dict]]:
    """-> ({'ours fp32': step, 'ours bf16': step}, the batch's items (packed inputs))."""
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from visionfm.engine import load_config
    from visionfm.registry import DATASETS, MODELS

    init_default_scope("visionfm")
    demo = load_config(DEMO)
    pipeline = [
        dict(t, scale=(size, size)) if t["type"] == "Resize" else t
        for t in demo.train_dataloader.dataset.pipeline
    ]
    dataset = DATASETS.build(dict(demo.train_dataloader.dataset, pipeline=pipeline))
    items = [dataset[i] for i in range(batch)]
    cfg = load_config(config)
    model = MODELS.build(cfg.model).train()
    steps = {}
    for name, amp in (("ours fp32", False), ("ours bf16", True)):
        optim = cfg.optim_wrapper.copy()
        if amp:  # as tools/train.py --amp on CPU
            optim.update(type="AutocastOptimWrapper", dtype="bfloat16")
        wrapper = build_optim_wrapper(model, optim)
        steps[name] = lambda wrapper=wrapper: model.train_step(pseudo_collate(items), wrapper)
    return steps, items


def _hf_training(batch: int) -> dict:
    """-> {'HF fp32': step, 'HF bf16': step} on the first ``batch`` training images."""
    from hf_deformable_detr import CocoBoxes, build_hf_model, collate, original_loss

    torch.manual_seed(0)
    train = CocoBoxes(
        DATA / "annotations" / "instances_train.json", DATA / "images" / "train", train=True
    )
    inputs, _ = collate([train[i] for i in range(batch)])
    model = build_hf_model(len(train.label_of), "resnet18").train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, weight_decay=1e-4)

    def step(amp: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, _ = original_loss(model(**inputs), inputs["labels"], model.config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.1)
        optimizer.step()

    return {"HF fp32": lambda: step(False), "HF bf16": lambda: step(True)}


def train_worker(case: dict) -> dict:
    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    steps, items = _our_training(case["config"], case["size"], case["batch"])
    if case["hf"]:
        steps.update(_hf_training(case["batch"]))
    errors = {}
    for name, step in list(steps.items()):
        try:
            for _ in range(case["warmup"]):
                step()
        except Exception as exc:  # e.g. an op without a bf16 kernel: reported, not fatal
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            del steps[name]
    if case["measure"] == "memory":  # the peak of each step, in turns; no times
        peaks: dict[str, list[tuple[float, bool]]] = {name: [] for name in steps}
        for name in common.in_turns(list(steps), case["iters"]):
            peaks[name].append(common.peak_rss_mib(steps[name]))
        variants = {
            name: dict(peak_mib=max(p for p, _ in v), peak_exact=all(e for _, e in v))
            for name, v in peaks.items()
        }
    else:
        wall, _ = common.time_in_turns(steps, case["iters"])
        variants = {}
        for name in steps:
            seconds = statistics.median(wall[name])
            variants[name] = dict(images_per_s=case["batch"] / seconds, step_ms=seconds * 1e3)
    shape = tuple(items[0]["inputs"].shape[-2:])
    return dict(
        config=case["config"], batch=case["batch"], size=case["size"], input_hw=shape,
        iters=case["iters"], variants=variants, errors=errors,
    )  # fmt: skip


# ---------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def _markdown(result: dict, args) -> str:
    rows = [
        f"# Detectors on CPU: latency, training throughput, memory ({common.timestamp()})",
        "",
        f"{common.machine()}; {common.torch_build()}; {args.threads} threads; "
        f"OMP_WAIT_POLICY {common.omp_wait_policy()}. Variants alternate within one process "
        "per group; bf16 = `torch.autocast('cpu', torch.bfloat16)` (`Inferencer(amp=True)`, "
        "`AutocastOptimWrapper`). Weights: "
        + (f"`{args.checkpoint}` (demo)" if args.checkpoint else "initial (random)")
        + "; HF: random.",
        "",
        "## Inference latency per image (decode + preprocess + model + post-processing, batch 1)",
        "",
        "| config | input (h × w) | images | variant | median ms | p90 ms | images/s "
        "| vs ours fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in result["latency"]:
        base = case["variants"]["ours fp32"]["median_ms"]
        h, w = case["input_hw"]
        for name in (n for n in VARIANT_ORDER if n in case["variants"]):
            v = case["variants"][name]
            rows.append(
                f"| `{case['config']}` | {h} × {w} | {case['images']} | {name} | "
                f"{v['median_ms']:.1f} | {v['p90_ms']:.1f} | {1e3 / v['median_ms']:.2f} | "
                f"{v['median_ms'] / base:.2f} |"
            )
    rows += [
        "",
        "bf16 / fp32 and accuracy cost (largest change over the images: sorted top scores; "
        f"top-{TOP_BOXES} fp32 boxes to the nearest bf16 box, original pixels); ours / HF:",
        "",
        "| config | time bf16 / fp32 | max score change | max box change px | "
        "time ours / HF (fp32) |",
        "|---|---|---|---|---|",
    ]
    for case in result["latency"]:
        rows.append(
            f"| `{case['config']}` | {case['bf16_over_fp32']:.2f} | "
            f"{case['bf16_max_score_change']:.4f} | {case['bf16_max_box_change_px']:.2f} | "
            f"{common.fmt(case.get('ours_over_hf'), '.2f')} |"
        )
    rows += [
        "",
        "## Training step (preprocess + forward + loss + backward + optimizer step)",
        "",
        "| config | batch | input (h × w) | variant | images/s | ms / step | peak MiB "
        "| time vs ours fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    inexact = False
    for case in result["train"]:
        base = case["variants"]["ours fp32"]["step_ms"]
        h, w = case["input_hw"]
        for name in (n for n in VARIANT_ORDER if n in case["variants"]):
            v = case["variants"][name]
            inexact |= not v["peak_exact"]
            rows.append(
                f"| `{case['config']}` | {case['batch']} | {h} × {w} | {name} | "
                f"{v['images_per_s']:.2f} | {v['step_ms']:.0f} | {common.fmt(v['peak_mib'], '.0f')} | "
                f"{v['step_ms'] / base:.2f} |"
            )
        for name, error in case["errors"].items():
            rows.append(f"| `{case['config']}` | {case['batch']} | | {name} | failed: {error} |")
    rows += [
        "",
        f"Median of {args.train_iters} timed steps ({args.large_train_iters} for "
        f"`{args.large_config}`) after {args.train_warmup} warm-up; the input is the first image's after the resize (the batch is padded to its largest). "
        "Peak MiB (from a separate worker, see the script's docstring): the largest "
        "resident-set rise during a step above the model, optimizer state and data already "
        "resident.",
    ]
    if inexact:
        rows += ["", common.INEXACT_PEAK_NOTE]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", default=DEMO)
    parser.add_argument("--checkpoint", default=None, help="weights of --config (the demo)")
    parser.add_argument("--large-config", default=LARGE)
    parser.add_argument("--images", default=str(DATA / "images" / "val"))
    parser.add_argument("--num", type=int, default=50, help="images for the demo's latency")
    parser.add_argument("--num-large", type=int, default=5, help="images for the large config")
    parser.add_argument("--train-iters", type=int, default=10)
    parser.add_argument("--train-warmup", type=int, default=2)
    parser.add_argument("--large-train-iters", type=int, default=2, help="ViT-B timed steps")
    parser.add_argument("--large-train-size", type=int, default=512, help="long side, px")
    parser.add_argument("--large-train-batch", type=int, default=1)
    parser.add_argument("--no-large", action="store_true", help="the demo config only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "detector_cpu.md")
    parser.add_argument(
        "--json", type=Path, help="also write the results as JSON here (for benchmarks/run_all.py)"
    )
    args = parser.parse_args()
    if args.worker:
        case = json.loads(args.worker)
        worker = latency_worker if case["kind"] == "latency" else train_worker
        print(json.dumps(worker(case)))
        return

    os.chdir(common.ROOT)
    paths = sorted(glob.glob(os.path.join(args.images, "*.jpg")))
    if not paths:
        raise SystemExit(f"no .jpg images in {args.images} (run tools/make_synthetic.py first)")
    common_case = dict(threads=args.threads)
    latency = [dict(kind="latency", config=args.config, checkpoint=args.checkpoint,
                    paths=paths[: args.num], hf=True)]  # fmt: skip
    train = [dict(kind="train", config=args.config, size=128, batch=4, hf=True)]
    if not args.no_large:
        latency.append(dict(kind="latency", config=args.large_config, checkpoint=None,
                            paths=paths[: args.num_large], hf=False))  # fmt: skip
        train.append(dict(kind="train", config=args.large_config, size=args.large_train_size,
                          batch=args.large_train_batch, hf=False))  # fmt: skip
    for case in train:
        large = case["config"] == args.large_config
        case.update(iters=args.large_train_iters if large else args.train_iters,
                    warmup=args.train_warmup)  # fmt: skip
    result = dict(threads=args.threads, machine=common.machine(), torch=common.torch_build(),
                  checkpoint=args.checkpoint, latency=[], train=[])  # fmt: skip
    script = str(Path(__file__).resolve())
    for case in latency + train:
        print(f"{case['kind']}: {case['config']}", file=sys.stderr, flush=True)
        out = common.spawn(script, dict(case, **common_case, measure="time"))
        if case["kind"] == "train":  # peaks from a worker whose freed memory leaves RSS
            memory = dict(case, **common_case, measure="memory", iters=min(case["iters"], 2))
            peaks = common.spawn(script, memory, env=common.MALLOC_RETURNS_FREED)["variants"]
            for name, v in out["variants"].items():
                v.update(peaks.get(name, dict(peak_mib=None, peak_exact=False)))
        if case["kind"] == "latency":
            v = out["variants"]
            out["bf16_over_fp32"] = v["ours bf16"]["median_ms"] / v["ours fp32"]["median_ms"]
            out["ours_over_hf"] = _ratio(
                v["ours fp32"]["median_ms"], v.get("HF fp32", {}).get("median_ms")
            )
            result["latency"].append(out)
        else:
            v = out["variants"]
            for name in ("ours bf16", "HF fp32", "HF bf16"):
                if name in v:
                    v[name]["time_vs_ours_fp32"] = v[name]["step_ms"] / v["ours fp32"]["step_ms"]
            result["train"].append(out)
    markdown = _markdown(result, args)
    common.write_results(args.out, markdown, args.json, result)
    print(markdown)


if __name__ == "__main__":
    main()
