"""Check a run's config before anything is built: unknown types and arguments, misspelt keys.

The model is built by our registry, whose errors already name the config key and the closest
registered names. Datasets, samplers, hooks, optimizers, schedulers, loops, metrics and
visualizers are built later by mmengine's own builder, whose errors say neither ("KeyError:
'X is not in the dataset registry'", "TypeError: None is not a callable object" for an
unknown optimizer), often minutes into a run (validation datasets are built after the first
epoch). ``check_config`` looks all of them up first and raises :class:`ConfigError` naming
the config key, with "did you mean" suggestions:

    train_dataloader.dataset.type: 'CocoDatset' is not in the visionfm::dataset registry.
    Did you mean 'CocoDataset'?

Checked: the ``type`` of every dict in those sections (and nested datasets / pipelines /
metrics / vis backends), the arguments of datasets, samplers, optimizers and transforms
against their constructors (classes taking ``**kwargs`` accept anything), the keys of each
dataloader, and top-level keys that are one typo away from a key the runner reads
(``optim_wraper``; other top-level names are the config's own variables and are left alone).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from mmengine.config import Config
from torch.utils.data import DataLoader

from visionfm.registry import (
    _PLAIN_CHILDREN,
    DATASETS,
    HOOKS,
    METRICS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    TRANSFORMS,
    VISUALIZERS,
    ConfigError,
    _check_arguments,
    _lookup,
)

__all__ = ["check_config"]

TOP_LEVEL_KEYS = (
    "model", "work_dir", "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg",
    "val_cfg", "test_cfg", "auto_scale_lr", "optim_wrapper", "param_scheduler",
    "val_evaluator", "test_evaluator", "default_hooks", "custom_hooks", "load_from", "resume",
    "launcher", "env_cfg", "log_processor", "log_level", "visualizer", "randomness",
    "experiment_name", "model_wrapper_cfg", "default_scope", "compile", "nan_policy",
)  # fmt: skip
_LOADER_EXTRA = (
    "dataset",
    "sampler",
    "batch_sampler",
    "collate_fn",
    "worker_init_fn",
    "num_batch_per_epoch",
    "disable_subprocess_warning",
)  # taken by mmengine before the rest goes to torch's DataLoader


def _check(cfg: Any, registry, key: str, arguments: bool = False, skip: tuple = ()) -> Any:
    """Look up ``cfg['type']`` in ``registry`` (and its arguments); returns the class."""
    if not isinstance(cfg, dict) or "type" not in cfg:
        return None
    obj_cls = _lookup(registry, cfg["type"], key)
    if arguments:
        args = {k: v for k, v in cfg.items() if k not in ("type", "_scope_", *skip)}
        _check_arguments(obj_cls, args, key)
    return obj_cls


def _check_dataset(cfg: Any, key: str) -> None:
    if not isinstance(cfg, dict):
        return
    _check(cfg, DATASETS, key, arguments=True)
    for i, transform in enumerate(cfg.get("pipeline") or []):
        _check(transform, TRANSFORMS, f"{key}.pipeline[{i}]", arguments=True)
    if isinstance(cfg.get("dataset"), dict):  # RepeatDataset, ClassBalancedDataset
        _check_dataset(cfg["dataset"], f"{key}.dataset")
    for i, inner in enumerate(cfg.get("datasets") or []):  # ConcatDataset
        _check_dataset(inner, f"{key}.datasets[{i}]")


def _check_dataloader(cfg: Any, key: str) -> None:
    if not isinstance(cfg, dict):
        return
    accepted = [p for p in inspect.signature(DataLoader).parameters if p != "self"]
    accepted += [k for k in _LOADER_EXTRA if k not in accepted]
    for name in cfg:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"{key}.{name}: not a dataloader setting.{hint}")
    _check_dataset(cfg.get("dataset"), f"{key}.dataset")
    _check(cfg.get("sampler"), _PLAIN_CHILDREN["DATA_SAMPLERS"], f"{key}.sampler", True)
    _check(cfg.get("batch_sampler"), _PLAIN_CHILDREN["DATA_SAMPLERS"], f"{key}.batch_sampler")


def _check_top_level(cfg: Config) -> None:
    for name in cfg:
        if name in TOP_LEVEL_KEYS or name.startswith("_"):
            continue
        close = difflib.get_close_matches(name, TOP_LEVEL_KEYS, n=1, cutoff=0.85)
        if close:
            raise ConfigError(
                f"{name}: not a key the runner reads. Did you mean {close[0]!r}? "
                f"(config {cfg.filename or '<in memory>'})"
            )


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_evaluator(cfg: Any, key: str) -> None:
    """A metric dict, a list of them, or ``dict(type='Evaluator', metrics=...)``."""
    if isinstance(cfg, dict) and "metrics" in cfg:
        _check(cfg, _PLAIN_CHILDREN["EVALUATOR"], key)
        key, cfg = f"{key}.metrics", cfg["metrics"]
    if isinstance(cfg, dict):
        _check(cfg, METRICS, key)
        return
    for i, metric in enumerate(_as_list(cfg)):
        _check(metric, METRICS, f"{key}[{i}]")


def check_config(cfg: Config) -> None:
    """Raise :class:`ConfigError` for the first unknown type, argument or misspelt key of
    ``cfg`` outside ``model`` (see the module doc); return None if all is well."""
    _check_top_level(cfg)
    for split in ("train", "val", "test"):
        _check_dataloader(cfg.get(f"{split}_dataloader"), f"{split}_dataloader")
        _check_evaluator(cfg.get(f"{split}_evaluator"), f"{split}_evaluator")
        loop = _PLAIN_CHILDREN["LOOPS"]
        _check(cfg.get(f"{split}_cfg"), loop, f"{split}_cfg")
    for name, hook in (cfg.get("default_hooks") or {}).items():
        _check(hook, HOOKS, f"default_hooks.{name}")
    for i, hook in enumerate(cfg.get("custom_hooks") or []):
        _check(hook, HOOKS, f"custom_hooks[{i}]")
    optim = cfg.get("optim_wrapper")
    if isinstance(optim, dict):
        if "type" in optim:
            _check(optim, OPTIM_WRAPPERS, "optim_wrapper")
        if isinstance(optim.get("constructor"), str):
            _lookup(OPTIM_WRAPPER_CONSTRUCTORS, optim["constructor"], "optim_wrapper.constructor")
        optimizers = _PLAIN_CHILDREN["OPTIMIZERS"]
        _check(optim.get("optimizer"), optimizers, "optim_wrapper.optimizer", True, ("params",))
    for i, scheduler in enumerate(_as_list(cfg.get("param_scheduler"))):
        _check(scheduler, _PLAIN_CHILDREN["PARAM_SCHEDULERS"], f"param_scheduler[{i}]")
    visualizer = cfg.get("visualizer")
    if isinstance(visualizer, dict):
        _check(visualizer, VISUALIZERS, "visualizer")
        for i, backend in enumerate(visualizer.get("vis_backends") or []):
            _check(backend, _PLAIN_CHILDREN["VISBACKENDS"], f"visualizer.vis_backends[{i}]")
