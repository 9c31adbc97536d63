"""Point-MAE pre-training then fine-tuning vs training from scratch, at the same total
training minutes, with 10 % of the labels (issue 17's target).

    python benchmarks/point_pretrain_vs_scratch.py [--pretrain-min 3] [--finetune-min 3]
        [--label-fraction 0.1] [--num-train 600] [--num-val 240] [--points 512]
        [--group-size 16] [--eval-every 30] [--threads 2] [--seed 0]
        [--out benchmarks/results/point_pretrain.md] [--json FILE]

Data: synthetic shapes (``make_shape_cloud``, 6 classes), each a PARTIAL view (the side
facing a random direction) with Gaussian noise 0.03, in a random pose, centred and scaled
into the unit sphere: ``--num-train`` training clouds, of which the first
``--label-fraction`` (balanced over the classes) keep their labels, and ``--num-val``
held-out clouds. Every training step draws a batch of 16 and augments it (random rotation
about all axes, anisotropic scale 2/3 .. 3/2, jitter 0.01).

Models: those of the shipped configs (``configs/point_mae/point-mae_synthetic-shapes_pretrain.py``
and ``configs/point_cls/point-mae_synthetic-shapes.py``: 32 groups, width 96, 4 blocks;
``--group-size`` points per group, 32 in the configs).

- (a) ``PointMAE`` pre-trains on ALL the training clouds, labels unused, for
  ``--pretrain-min``; its encoder is loaded into the classifier (a ``PointModel``, through
  the runner's ``load_from`` loader), which fine-tunes on the labelled clouds for
  ``--finetune-min``;
- (b) the same classifier from random weights trains on the same labelled clouds for
  ``--pretrain-min + --finetune-min``.

Each phase: AdamW (pre-training lr 1e-3, classification 5e-4, weight decay 0.05), a linear
warm-up over its first 5 % of time then cosine decay over its time budget. The validation
overall accuracy is measured every ``--eval-every`` seconds of training and at the end;
the clock counts training steps only (evaluation time EXCLUDED, reported separately).
Writes the curves to ``--out`` (markdown), ``.json`` and ``.png`` beside it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import _common as common
import numpy as np
import torch

from visionfm.data.data_sample import DataSample
from visionfm.data.synthetic.points import SHAPES, make_shape_cloud, random_rotation
from visionfm.engine import load_config
from visionfm.engine.checkpoint import load_checkpoint_to_model
from visionfm.registry import MODELS

PRETRAIN_CONFIG = "configs/point_mae/point-mae_synthetic-shapes_pretrain.py"
CLS_CONFIG = "configs/point_cls/point-mae_synthetic-shapes.py"
OUT = common.RESULTS / "point_pretrain.md"
BATCH = 16


# ---------------------------------------------------------------- data


def make_clouds(
    seed: int, split: int, count: int, points: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` partial, noisy shapes (labels cycling over SHAPES), each centred and scaled
    into the unit sphere -> clouds (count, points, 3) float32, labels (count,)."""
    clouds, labels = [], []
    for i in range(count):
        rng = np.random.default_rng((seed, split, i))
        c = make_shape_cloud(rng, i % len(SHAPES), points, noise=0.03, partial=True).coord
        c = c - c.mean(0)
        clouds.append(c / np.linalg.norm(c, axis=1).max())
        labels.append(i % len(SHAPES))
    return torch.from_numpy(np.stack(clouds)).float(), torch.tensor(labels)


def augment(clouds: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(B, N, 3) -> randomly rotated, anisotropically scaled, jittered copies."""
    rot = torch.from_numpy(np.stack([random_rotation(rng) for _ in clouds])).float()
    scale = torch.from_numpy(rng.uniform(2 / 3, 3 / 2, (len(clouds), 1, 3))).float()
    noise = torch.from_numpy(np.clip(0.01 * rng.standard_normal(clouds.shape), -0.05, 0.05))
    return (clouds @ rot.transpose(1, 2)) * scale + noise.float()


def packed(clouds: torch.Tensor) -> dict:
    """(B, N, 3) -> ``dict(points=(B * N, 3), offsets=(B,))``."""
    b, n = clouds.shape[:2]
    return dict(points=clouds.reshape(b * n, 3), offsets=torch.arange(1, b + 1) * n)


# ---------------------------------------------------------------- training


def models(group_size: int) -> tuple[dict, dict]:
    """The PointMAE and PointModel configs of the shipped configs, ``group_size`` set."""
    mae = load_config(PRETRAIN_CONFIG).model.to_dict()
    cls = load_config(CLS_CONFIG).model.to_dict()
    mae["backbone"]["group_size"] = cls["backbone"]["group_size"] = group_size
    return mae, cls


def accuracy(model, clouds: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(clouds), 60):
            logits = model(packed(clouds[i : i + 60]), mode="tensor")
            correct += int((logits.argmax(1) == labels[i : i + 60]).sum())
    model.train()
    return correct / len(clouds)


def run_phase(model, step, lr: float, seconds: float, evaluate, every: float, offset: float):
    """Train by ``step()`` for ``seconds`` of training time (time-based warm-up + cosine lr);
    ``evaluate()`` (untimed) at the start, every ``every`` seconds and at the end ->
    ``(curve [(offset + training seconds, value)], steps, evaluation seconds)``."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.05
    )
    model.train()
    curve, elapsed, steps, eval_seconds = [], 0.0, 0, 0.0

    def record():
        nonlocal eval_seconds
        t0 = time.perf_counter()
        curve.append((round(offset + elapsed, 1), evaluate()))
        eval_seconds += time.perf_counter() - t0
        print(f"  {offset + elapsed:7.1f} s  {curve[-1][1]:.4f}  ({steps} steps)", flush=True)

    record()
    next_eval = every
    while elapsed < seconds:
        frac = elapsed / seconds
        factor = frac / 0.05 if frac < 0.05 else 0.5 * (1 + math.cos(math.pi * frac))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(factor, 0.01)
        t0 = time.perf_counter()
        loss = step()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        elapsed += time.perf_counter() - t0
        steps += 1
        if elapsed >= next_eval and elapsed < seconds:
            record()
            next_eval += every
    record()
    return curve, steps, round(eval_seconds, 1)


def classifier_step(model, clouds, labels, rng):
    def step():
        idx = rng.choice(len(clouds), BATCH, replace=len(clouds) < BATCH)
        samples = [DataSample(gt_label=labels[i]) for i in idx]
        return model(packed(augment(clouds[idx], rng)), samples, mode="loss")["loss_cls"]

    return step


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    train, train_labels = make_clouds(args.seed, 0, args.num_train, args.points)
    val, val_labels = make_clouds(args.seed, 1, args.num_val, args.points)
    labelled = round(args.label_fraction * args.num_train)
    few, few_labels = train[:labelled], train_labels[:labelled]
    mae_cfg, cls_cfg = models(args.group_size)
    t1, t2 = 60 * args.pretrain_min, 60 * args.finetune_min
    every = args.eval_every

    print(f"(a) pre-training on {len(train)} clouds for {t1:.0f} s", flush=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    mae = MODELS.build(mae_cfg)
    held_out = packed(val[:60])

    def held_out_chamfer():
        torch.manual_seed(1)  # the same masks every time
        mae.eval()
        with torch.no_grad():
            loss = float(mae(held_out, mode="loss")["loss_chamfer"])
        mae.train()
        return loss

    def mae_step():
        idx = rng.choice(len(train), BATCH, replace=False)
        return mae(packed(augment(train[idx], rng)), mode="loss")["loss_chamfer"]

    pre_curve, pre_steps, pre_eval = run_phase(mae, mae_step, 1e-3, t1, held_out_chamfer, every, 0)

    print(f"(a) fine-tuning on {labelled} labelled clouds for {t2:.0f} s", flush=True)
    torch.manual_seed(args.seed)
    finetuned = MODELS.build(cls_cfg)
    load_checkpoint_to_model(finetuned, dict(meta={}, state_dict=mae.state_dict()))
    for name, value in mae.backbone.state_dict().items():  # the encoder arrived whole
        assert torch.equal(finetuned.backbone.state_dict()[name], value), name
    fine_curve, fine_steps, fine_eval = run_phase(
        finetuned,
        classifier_step(finetuned, few, few_labels, np.random.default_rng(args.seed + 1)),
        5e-4, t2, lambda: accuracy(finetuned, val, val_labels), every, t1,
    )  # fmt: skip

    print(f"(b) from scratch on {labelled} labelled clouds for {t1 + t2:.0f} s", flush=True)
    torch.manual_seed(args.seed)
    scratch = MODELS.build(cls_cfg)
    scratch_curve, scratch_steps, scratch_eval = run_phase(
        scratch,
        classifier_step(scratch, few, few_labels, np.random.default_rng(args.seed + 1)),
        5e-4, t1 + t2, lambda: accuracy(scratch, val, val_labels), every, 0,
    )  # fmt: skip
    return dict(
        settings=dict(
            vars(args),
            out=str(args.out),
            json=str(args.json),
            labelled=labelled,
            batch=BATCH,
            classes=len(SHAPES),
        ),  # fmt: skip
        pretrain=dict(held_out_chamfer=pre_curve, steps=pre_steps, eval_seconds=pre_eval),
        finetune=dict(val_acc=fine_curve, steps=fine_steps, eval_seconds=fine_eval),
        scratch=dict(val_acc=scratch_curve, steps=scratch_steps, eval_seconds=scratch_eval),
    )


# ---------------------------------------------------------------- report


def markdown(data: dict) -> str:
    s, pre, fine, scratch = (data[k] for k in ("settings", "pretrain", "finetune", "scratch"))
    t1 = 60 * s["pretrain_min"]
    best = {k: max(v for _, v in data[k]["val_acc"]) for k in ("finetune", "scratch")}
    lines = [
        "# Point-MAE pre-training vs training from scratch (synthetic partial shapes)",
        "",
        f"{s['labelled']} labelled of {s['num_train']} training clouds "
        f"({100 * s['label_fraction']:.0f} %), {s['num_val']} validation clouds, "
        f"{s['points']} points each, {s['classes']} classes; groups of {s['group_size']} "
        f"points. (a) pre-train {s['pretrain_min']} min on every training cloud without "
        f"labels, then fine-tune {s['finetune_min']} min; (b) train from scratch "
        f"{s['pretrain_min'] + s['finetune_min']} min. Minutes are training time only "
        "(evaluation excluded). Produced by `benchmarks/point_pretrain_vs_scratch.py` "
        "(its docstring has the recipe).",
        "",
        "| | final val accuracy | best val accuracy | steps | evaluation s (excluded) |",
        "|---|---|---|---|---|",
        f"| (a) pre-train + fine-tune | {fine['val_acc'][-1][1]:.3f} | {best['finetune']:.3f} | "
        f"{pre['steps']} + {fine['steps']} | {pre['eval_seconds'] + fine['eval_seconds']:.0f} |",
        f"| (b) from scratch | {scratch['val_acc'][-1][1]:.3f} | {best['scratch']:.3f} | "
        f"{scratch['steps']} | {scratch['eval_seconds']:.0f} |",
        "",
        "Validation accuracy by training seconds (a's pre-training shows the held-out "
        "Chamfer-L2 of the masked groups instead):",
        "",
        "| training s | (a) | (b) |",
        "|---|---|---|",
    ]
    rows: dict[float, list[str]] = {}
    for t, v in pre["held_out_chamfer"]:
        rows.setdefault(t, ["", ""])[0] = f"Chamfer {v:.4f}"
    for t, v in fine["val_acc"]:
        rows.setdefault(t, ["", ""])[0] = f"{v:.3f}" + (" (fine-tune start)" if t == t1 else "")
    for t, v in scratch["val_acc"]:
        rows.setdefault(t, ["", ""])[1] = f"{v:.3f}"
    lines += [f"| {t:.0f} | {a} | {b} |" for t, (a, b) in sorted(rows.items())]
    lines += ["", common.run_line(data)]
    lines += common.busy_note(
        data, "The machine was busy during this run (load average above the threads used): "
        "steps were slower than on a quiet machine, and the load changed during the run, so the "
        "two arms did not get equal compute per minute (compare their step counts)."
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("finetune", "(a) Point-MAE pre-train + fine-tune"),
                       ("scratch", "(b) from scratch")):  # fmt: skip
        t, v = zip(*data[key]["val_acc"], strict=True)
        ax.plot(np.array(t) / 60, v, marker="o", label=label)
    ax.axvspan(0, data["settings"]["pretrain_min"], color="0.9", label="(a) pre-training")
    ax.set_xlabel("training minutes (evaluation excluded)")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{data['settings']['labelled']} labelled synthetic partial shapes")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pretrain-min", type=float, default=3.0)
    p.add_argument("--finetune-min", type=float, default=3.0)
    p.add_argument("--label-fraction", type=float, default=0.1)
    p.add_argument("--num-train", type=int, default=600)
    p.add_argument("--num-val", type=int, default=240)
    p.add_argument("--points", type=int, default=512)
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--eval-every", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--json", type=Path, default=None, help="default: --out with .json")
    args = p.parse_args()
    args.json = args.json or args.out.with_suffix(".json")
    os.chdir(common.ROOT)
    load_before = os.getloadavg()[0]
    data = run(args)
    data |= common.run_facts("benchmarks/point_pretrain_vs_scratch.py", args.threads, load_before)
    common.write_results(args.out, markdown(data), args.json, data)
    plot(data, args.out.with_suffix(".png"))
    print(f"wrote {args.out}, {args.json}, {args.out.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
