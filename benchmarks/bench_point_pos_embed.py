"""PTv3's positional encoding, three ways, on the synthetic scene segmentation task: the hashed
sparse-conv xCPE, 3-D RoPE, none. Same model otherwise, same data, same wall-clock minutes.

    python benchmarks/bench_point_pos_embed.py [--minutes 4] [--threads 1] [--evals 4]
        [--out benchmarks/results/point_pos_embed.md] [--json ...json]

The scenes are ``write_point_datasets``' (rooms: floor, walls and 6 shape classes, 8192 points
each), written to a temporary folder and read by ``PointSceneDataset`` through the pipeline of
``configs/point_seg/ptv3_synthetic-scenes.py``; the model is that config's ``PointModel``
(PTv3 + ``PointSegHead``) with ``pos_embed`` changed. The three train in turns, one step each
round, each charged only its own steps' wall time, until every one has used ``--minutes``
(so a drift in the machine's load hits all alike; a cheaper step gets more steps). Each is
evaluated (``PointSegMetric`` on every original point of the validation scenes) ``--evals``
times along the way, the evaluation not charged.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import _common as common

VARIANTS = ("sparse_conv", "rope", None)
CONFIG = common.ROOT / "configs" / "point_seg" / "ptv3_synthetic-scenes.py"


def _loader(cfg: dict, root: str, batch_size: int):
    from mmengine.dataset import pseudo_collate
    from torch.utils.data import DataLoader

    from visionfm.registry import DATASETS

    dataset = DATASETS.build(dict(cfg, data_root=root))
    return DataLoader(
        dataset, batch_size, shuffle=not cfg.get("test_mode"), collate_fn=pseudo_collate
    )


def _evaluate(model, loader, num_classes: int) -> dict:
    import torch

    from visionfm.evaluation.point_metric import PointSegMetric

    metric = PointSegMetric(num_classes=num_classes)
    model.eval()
    with torch.no_grad():
        for batch in loader:
            metric.process(batch, [s.to_dict() for s in model.val_step(batch)])
    model.train()
    return metric.compute_metrics(metric.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training minutes, each")
    parser.add_argument("--evals", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--features", nargs="*", choices=("color", "normal"),
        help="input channels after xyz (default: the config's); the synthetic rooms colour "
        "each class, so `--features` alone (xyz only) asks for geometry",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=common.RESULTS / "point_pos_embed.md")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch
    from mmengine.config import Config
    from tqdm import tqdm

    from visionfm.data.synthetic.points import write_point_datasets
    from visionfm.registry import MODELS

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    cfg = Config.fromfile(str(CONFIG))
    tmp = tempfile.mkdtemp(prefix="pos_embed_")
    root = str(write_point_datasets(tmp, num_train=1, num_val=1, num_points=64)["scenes"])
    train_cfg = cfg.train_dataloader.dataset.to_dict()
    val_cfg = cfg.val_dataloader.dataset.to_dict()
    if args.features is not None:
        for pipeline in (train_cfg["pipeline"], val_cfg["pipeline"]):
            pipeline[-1] = dict(type="PackPointInputs", features=tuple(args.features))
        cfg.model.backbone.in_channels = 3 + 3 * len(args.features)
    features = list(train_cfg["pipeline"][-1].get("features", ()))
    num_classes = cfg.model.head.num_classes
    runs = {}
    for pos in VARIANTS:
        torch.manual_seed(0)
        model_cfg = copy.deepcopy(cfg.model.to_dict())
        model_cfg["backbone"]["pos_embed"] = pos
        model = MODELS.build(model_cfg).train()
        optim = cfg.optim_wrapper.optimizer.to_dict()
        optim = torch.optim.AdamW(
            model.parameters(), lr=optim["lr"], weight_decay=optim["weight_decay"]
        )
        runs[pos] = dict(model=model, optim=optim, spent=0.0, steps=0, curve=[], data=None)
    train = _loader(train_cfg, root, cfg.train_dataloader.batch_size)
    val = _loader(val_cfg, root, 1)
    budget = args.minutes * 60
    marks = [budget * (i + 1) / args.evals for i in range(args.evals)]
    bar = tqdm(total=len(VARIANTS) * args.evals, desc="pos-embed study evals", unit="eval")
    while any(r["spent"] < budget for r in runs.values()):
        for r in runs.values():
            if r["spent"] >= budget:
                continue
            if r["data"] is None:
                r["data"] = iter(train)
            batch = next(r["data"], None)
            if batch is None:  # an epoch done
                r["data"] = None
                continue
            start = time.perf_counter()
            data = r["model"].data_preprocessor(batch, training=True)
            losses = r["model"](**data, mode="loss")
            loss = sum(v for k, v in losses.items() if k.startswith("loss"))
            r["optim"].zero_grad()
            loss.backward()
            r["optim"].step()
            r["spent"] += time.perf_counter() - start
            r["steps"] += 1
            if len(r["curve"]) < len(marks) and r["spent"] >= marks[len(r["curve"])]:
                m = _evaluate(r["model"], val, num_classes)
                r["curve"].append(dict(minutes=r["spent"] / 60, steps=r["steps"], **m))
                bar.update()
    bar.close()
    data = dict(
        common.run_facts("benchmarks/bench_point_pos_embed.py", args.threads, load_start),
        minutes=args.minutes,
        features=features,
        config=str(CONFIG.relative_to(common.ROOT)),
        runs={str(pos): dict(steps=r["steps"], curve=r["curve"]) for pos, r in runs.items()},
    )
    lines = [
        "# PTv3 positional encoding on the synthetic scenes (CPU)", "",
        common.run_line(data), "",
        *common.busy_note(data, "**The machine was busy (other jobs running): fewer steps fit "
                          "the minutes than on an idle machine; the three trained in turns, so "
                          "alike.**"),
        f"Model and data: `{data['config']}` with `pos_embed` changed, input xyz"
        f"{''.join(' + ' + f for f in features)}; {args.minutes:g} "
        "training minutes each (wall time of its own steps), validation mIoU on every "
        "original point of the validation scenes.", "",
        "| pos_embed | steps | " + " | ".join(f"mIoU @ {i + 1}/{args.evals}" for i in range(args.evals)) + " | mAcc | allAcc |",
        "|---|---|" + "---|" * (args.evals + 2),
    ]  # fmt: skip
    for pos, r in data["runs"].items():
        curve = r["curve"]
        cells = [f"{c['mIoU']:.3f} ({c['minutes']:.1f} min)" for c in curve]
        last = curve[-1] if curve else {}
        lines.append(
            f"| {pos} | {r['steps']} | " + " | ".join(cells) + f" | {last.get('mAcc', 0):.3f} "
            f"| {last.get('allAcc', 0):.3f} |"
        )
    table = "\n".join(lines) + "\n"
    common.write_results(args.out, table, args.json, data)
    print(table)


if __name__ == "__main__":
    main()
