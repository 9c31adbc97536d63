"""Build an mmengine ``Runner`` from a visionfm config.

The model is built with our ``MODELS`` registry (recursive: constructors get
built modules) before it reaches mmengine, whose own builder is not recursive.
Two hooks are always added: ``RNGStateHook``, so that resuming continues the random
streams (dropout, drop path, augmentation) where the checkpoint left them, and
``ClassNumCheckHook``, which refuses a head whose ``num_classes`` differs from the
dataset's number of classes.
"""

from __future__ import annotations

import copy

from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.runner.utils import set_random_seed

from visionfm.registry import MODELS

# Runner arguments taken from the config as they are (mmengine's names).
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
    "model_wrapper_cfg",
)


def build_runner(cfg: Config) -> Runner:
    """Runner for ``cfg``; ``cfg.model`` is built here through ``visionfm.registry.MODELS``."""
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("default_scope", "visionfm")
    if cfg.default_scope != "visionfm":
        raise ValueError(f"default_scope must be 'visionfm', got {cfg.default_scope!r}")
    kwargs = {key: cfg[key] for key in _RUNNER_KEYS if key in cfg}
    custom_hooks = list(cfg.get("custom_hooks") or [])
    for always in ("RNGStateHook", "ClassNumCheckHook"):
        if not any(isinstance(h, dict) and h.get("type") == always for h in custom_hooks):
            custom_hooks.append(dict(type=always))
    seed = (cfg.get("randomness") or {}).get("seed")
    if seed is not None:  # the model's initial weights follow the config's seed too
        set_random_seed(seed, deterministic=cfg.randomness.get("deterministic", False))
    runner = Runner(
        model=MODELS.build(cfg.model),
        custom_hooks=custom_hooks,
        default_scope="visionfm",
        cfg=cfg,
        **kwargs,
    )
    return runner
