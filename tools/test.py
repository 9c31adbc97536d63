"""Evaluate a checkpoint on a config's test split.

    python tools/test.py CONFIG CHECKPOINT [--out results.json] [--show-dir DIR]
                                           [--work-dir DIR] [--cfg-options k=v ...]

--out writes the predictions as a COCO results json; --show-dir draws them over the images
(point clouds: rendered coloured by predicted class, or titled with the class and score).
CONFIG may be the config a training run saved in its work dir (``WORK_DIR/NAME.py``): it holds
that run's ``--cfg-options`` (``data_root``, ...), so they need not be repeated.
"""

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper

from visionfm.engine import build_runner, load_config
from visionfm.engine.checkpoint import load_model_weights
from visionfm.engine.cli import run_tool


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate a visionfm checkpoint")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--out", help="write predictions as a COCO results json to this path")
    parser.add_argument("--show-dir", help="draw predictions over the images into this folder")
    parser.add_argument("--score-thr", type=float, default=0.3, help="for --show-dir")
    parser.add_argument("--work-dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    args = parser.parse_args()

    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0]
    )
    cfg.load_from, cfg.resume = None, False  # weights are loaded strictly below
    prefix = None
    if args.out:
        if not args.out.endswith(".json"):
            parser.error("--out must end with .json")
        prefix = args.out[: -len(".json")]
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        cfg.test_evaluator.outfile_prefix = prefix
    if args.show_dir:
        hooks = list(cfg.get("custom_hooks") or [])
        hooks.append(
            dict(type="DrawPredictionsHook", out_dir=args.show_dir, score_thr=args.score_thr)
        )
        cfg.custom_hooks = hooks

    # the runner saves the config it runs in the work dir; unnamed, as <timestamp>.py, so it
    # does not replace the config a training run saved there (NAME.py)
    runner = build_runner(Config(cfg.to_dict()))
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    load_model_weights(model, args.checkpoint)
    metrics = runner.test()
    if prefix is not None:
        os.replace(f"{prefix}.bbox.json", args.out)
        print(f"predictions written to {args.out}")
    if args.show_dir:
        print(f"drawings written to {args.show_dir}")
    print(metrics)


if __name__ == "__main__":
    run_tool(main)
