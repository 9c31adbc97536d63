"""Build an mmengine ``Runner`` from a visionfm config.

The model is built with our ``MODELS`` registry (recursive: constructors get
built modules) before it reaches mmengine, whose own builder is not recursive.
Hooks always added: ``RNGStateHook``, so that resuming continues the random
streams (dropout, drop path, augmentation) where the checkpoint left them,
``ClassNumCheckHook``, which refuses a head whose ``num_classes`` differs from the
dataset's number of classes, ``NonFiniteLossHook`` (config key ``nan_policy``:
'raise' or 'skip'), which keeps NaN/inf steps from being applied, and
``SkippedSamplesHook``, which reports per epoch how many bad samples a dataset with
``on_error='skip'`` left out.

Never losing work: ``CheckpointHook`` is replaced by ``SafeCheckpointHook`` (atomic
files, deletions after saving), and mmengine's train loops by ``visionfm.engine.loops``'
resumable ones (a mid-epoch checkpoint resumes at the next batch, random streams intact).

Distributed (``launcher`` other than 'none'): ``visionfm.engine.dist`` prepares the config
(gloo and CPU placement where there is no GPU) and, for an FSDP ``model_wrapper_cfg``,
initialises the weights before sharding and adapts the runner (full checkpoints, clipping
by the global gradient norm).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.runner.utils import set_random_seed

from visionfm.registry import MODELS

from .config_check import check_config
from .dist import (
    adapt_runner_to_fsdp,
    init_weights_before_sharding,
    is_fsdp_config,
    setup_distributed,
)
from .loops import ResumableEpochBasedTrainLoop, ResumableIterBasedTrainLoop

# Runner arguments taken from the config as they are (mmengine's names).
_RUNS = itertools.count(1)  # runners built in this process

_RUNNER_KEYS = (
    "work_dir",
    "train_dataloader",
    "val_dataloader",
    "test_dataloader",
    "train_cfg",
    "val_cfg",
    "test_cfg",
    "auto_scale_lr",
    "optim_wrapper",
    "param_scheduler",
    "val_evaluator",
    "test_evaluator",
    "default_hooks",
    "load_from",
    "resume",
    "launcher",
    "env_cfg",
    "log_processor",
    "log_level",
    "visualizer",
    "randomness",
    "experiment_name",
)


def _use_safe_checkpointing(kwargs: dict) -> None:
    """SafeCheckpointHook for mmengine's CheckpointHook; our resumable loops for its."""
    hooks = dict(kwargs.get("default_hooks") or {})
    checkpoint = hooks.get("checkpoint", dict(type="CheckpointHook", interval=1))
    if isinstance(checkpoint, dict) and checkpoint.get("type") == "CheckpointHook":
        hooks["checkpoint"] = {**checkpoint, "type": "SafeCheckpointHook"}
    kwargs["default_hooks"] = hooks
    loop = dict(kwargs.get("train_cfg") or {})
    if "by_epoch" in loop and "type" not in loop:  # both: mmengine's error stands
        loop["type"] = "EpochBasedTrainLoop" if loop.pop("by_epoch") else "IterBasedTrainLoop"
    ours = dict(
        EpochBasedTrainLoop=ResumableEpochBasedTrainLoop,
        IterBasedTrainLoop=ResumableIterBasedTrainLoop,
    )
    if isinstance(loop.get("type"), str) and loop["type"] in ours:
        kwargs["train_cfg"] = {**loop, "type": ours[loop["type"]]}


def build_runner(cfg: Config) -> Runner:
    """Runner for ``cfg``; ``cfg.model`` is built here through ``visionfm.registry.MODELS``."""
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("default_scope", "visionfm")
    if cfg.default_scope != "visionfm":
        raise ValueError(f"default_scope must be 'visionfm', got {cfg.default_scope!r}")
    check_config(cfg)  # unknown types / arguments / misspelt keys, before anything is built
    setup_distributed(cfg)  # gloo and CPU placement without CUDA; FSDP checks
    run = next(_RUNS)
    if run > 1 and cfg.get("experiment_name") is None:
        # mmengine names a run's Visualizer, logger and message hub after the config and the
        # second it started, and hands a later run of the same name the earlier one's (which
        # writes into the earlier work dir): a second run in this process gets its own name
        cfg.experiment_name = f"{Path(cfg.filename or 'run').stem}_run{run}"
    kwargs = {key: cfg[key] for key in _RUNNER_KEYS if key in cfg}
    custom_hooks = list(cfg.get("custom_hooks") or [])
    nan_guard = dict(type="NonFiniteLossHook", policy=cfg.get("nan_policy", "raise"))
    always_added = (
        dict(type="RNGStateHook"),
        dict(type="ClassNumCheckHook"),
        nan_guard,
        dict(type="SkippedSamplesHook"),
    )
    for always in always_added:
        if not any(isinstance(h, dict) and h.get("type") == always["type"] for h in custom_hooks):
            custom_hooks.append(always)
    _use_safe_checkpointing(kwargs)
    seed = (cfg.get("randomness") or {}).get("seed")
    if seed is not None:  # the model's initial weights follow the config's seed too
        set_random_seed(seed, deterministic=cfg.randomness.get("deterministic", False))
    model = MODELS.build(cfg.model)
    fsdp = is_fsdp_config(cfg)
    if fsdp:
        init_weights_before_sharding(model)
    runner = Runner(
        model=model,
        custom_hooks=custom_hooks,
        default_scope="visionfm",
        cfg=cfg,
        **kwargs,
    )
    if fsdp:
        adapt_runner_to_fsdp(runner)
    return runner
