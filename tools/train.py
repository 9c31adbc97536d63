"""Train from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [auto|PATH]] [--amp]
                                 [--cfg-options key=value ...] [--launcher pytorch]

Distributed: ``torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch``
(gloo on CPU, nccl on GPU).
"""

import argparse
import os
import os.path as osp

import torch
from mmengine.config import DictAction

from visionfm.engine import build_runner, load_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a visionfm model from a config")
    parser.add_argument("config", help="config file path")
    parser.add_argument("--work-dir", help="where logs and checkpoints go")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="resume from PATH, or from the newest checkpoint in the work dir ('auto' or no value)",
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
    if args.launcher != "none" and not torch.cuda.is_available():
        # CPU processes: gloo, and DDP without device_ids (mmengine passes the local rank)
        cfg.env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
        cfg.setdefault(
            "model_wrapper_cfg",
            dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False),
        )
    return cfg


def main() -> None:
    args = parse_args()
    cfg = prepare_config(args)
    runner = build_runner(cfg)
    runner.train()


if __name__ == "__main__":
    main()
