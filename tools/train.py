"""Train from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] [--amp]
                                 [--cfg-options key=value ...] [--launcher pytorch]

Distributed: ``torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch``
(gloo on CPU, nccl on GPU); DDP by default, FSDP with
``model_wrapper_cfg=dict(type='MMFullyShardedDataParallel')`` (visionfm/engine/dist.py).

Resuming: ``--resume`` (or ``--resume auto``) continues from the newest checkpoint of the
work dir that loads completely (a truncated or corrupt one is skipped with a warning);
checkpoints are written atomically, so a crash never leaves a partial one. For
checkpoints inside long epochs, ``--cfg-options default_hooks.checkpoint.by_epoch=False
default_hooks.checkpoint.interval=500``: training resumes at the next batch, with the
same weights as an uninterrupted run. ``nan_policy='skip'`` drops steps with a NaN/inf
loss or gradient instead of stopping (visionfm/engine/nan_guard.py).
"""

import argparse
import os
import os.path as osp

import torch
from mmengine.config import DictAction

from visionfm.engine import build_runner, load_config
from visionfm.engine.cli import run_tool


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a visionfm model from a config")
    parser.add_argument("config", help="config file path")
    parser.add_argument("--work-dir", help="where logs and checkpoints go")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="resume from PATH, or from the newest complete checkpoint in the work dir "
        "('auto' or no value)",
    )
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, help="override keys: key=value ..."
    )
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    return args


def prepare_config(args: argparse.Namespace):
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:  # fp16 + dynamic loss scaling on GPU; bf16 autocast on CPU
        optim = cfg.optim_wrapper
        if optim.get("type", "OptimWrapper") != "OptimWrapper":
            raise ValueError(f"--amp: optim_wrapper is already {optim.type}")
        if torch.cuda.is_available():
            optim.type, optim.loss_scale = "AmpOptimWrapper", "dynamic"
        else:
            optim.type, optim.dtype = "AutocastOptimWrapper", "bfloat16"
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg  # build_runner sets up the launcher (gloo on CPU: visionfm/engine/dist.py)


def main() -> None:
    args = parse_args()
    cfg = prepare_config(args)
    runner = build_runner(cfg)
    runner.train()


if __name__ == "__main__":
    run_tool(main)
