"""Check a run's config before anything is built: unknown types and arguments, misspelt keys.

Datasets, samplers, hooks, optimizers, schedulers, loops, metrics and visualizers are built
by mmengine's own builder, whose errors say neither the key nor what was meant ("KeyError:
'X is not in the dataset registry'", "TypeError: EpochBasedTrainLoop.__init__() got an
unexpected keyword argument"), often minutes into a run (validation datasets are built after
the first epoch). ``check_config`` looks all of them up first, the model too, and raises
:class:`ConfigError` naming the config key, the config file and the closest names:

    train_dataloader.dataset.type: 'CocoDatset' is not in the visionfm::dataset registry.
    Did you mean 'CocoDataset'? (config configs/dino/dino_vit-t_synthetic.py)

Checked: the ``type`` and the arguments of every dict of the model, the datasets (nested
ones and pipelines too), samplers, loops, hooks, metrics, optimizer and its wrapper,
schedulers, log processor, model wrapper and visualizer (with its backends), against the
constructors (``**kwargs`` handed on to a base class are checked against its ``__init__``;
others accept anything); the keys of the dataloaders and of the runner's plain dicts
(``randomness``, ``env_cfg``, ``auto_scale_lr``); the keys of a model's dicts of settings
(a head's ``test_cfg``: :func:`visionfm.registry.settings`); and top-level keys that are one
typo away from a key the runner reads (``optim_wraper``; other top-level names are the
config's own variables).

Keys added on the command line (:func:`added_keys`) are held to more: a new top-level name
must be a key the runner reads (``data_rot`` is refused: did you mean ``data_root``), and a
new key inside a dict none of the checks above covers (``env_cfg.dist_cfg``) is refused with
the keys that dict has in the config file.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from mmengine.config import Config
from mmengine.hooks import CheckpointHook, EMAHook
from torch.utils.data import DataLoader

from visionfm.registry import (
    _PLAIN_CHILDREN,
    DATASETS,
    HOOKS,
    METRICS,
    MODELS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    TRANSFORMS,
    VISUALIZERS,
    ConfigError,
    _accepted_arguments,
    _check_arguments,
    _did_you_mean,
    _lookup,
)

__all__ = ["added_keys", "check_config"]

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
_RUNNER_DICTS = {  # top-level dicts without a type: the keys mmengine's Runner reads
    "randomness": ("seed", "diff_rank_seed", "deterministic"),
    "env_cfg": ("cudnn_benchmark", "mp_cfg", "dist_cfg", "resource_limit"),
    "auto_scale_lr": ("enable", "base_batch_size"),
}


def added_keys(cfg: Config, options: Mapping[str, Any]) -> dict[str, list[str]]:
    """The keys of ``options`` (dotted, as ``--cfg-options`` gives them) that ``cfg`` lacks,
    cut after their first level ``cfg`` lacks and spelt as this module names keys
    (``custom_hooks.0.x`` -> ``custom_hooks[0].x``), each with the keys its dict has in
    ``cfg``. Call it before merging ``options`` into ``cfg``."""
    added, body = {}, cfg.to_dict()
    for option in options:
        node, key = body, ""
        for part in option.split("."):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node, key = node[int(part)], f"{key}[{part}]"
            elif isinstance(node, dict) and part in node:
                node, key = node[part], f"{key}.{part}" if key else part
            else:
                added[f"{key}.{part}" if key else part] = (
                    list(node) if isinstance(node, dict) else []
                )
                break
    return added


def _check_keys(names: Iterable[str], accepted: Iterable[str], key: str, what: str) -> None:
    accepted = list(accepted)
    for name in names:
        if name not in accepted:
            raise ConfigError(f"{key}.{name}: not {what}.{_did_you_mean(name, accepted)}")


def _as_list(value: Any, key: str) -> list[tuple[Any, str]]:
    """``[(item, its key)]`` of a list, or of one item given alone."""
    if isinstance(value, (list, tuple)):
        return [(v, f"{key}[{i}]") for i, v in enumerate(value)]
    return [] if value is None else [(value, key)]


class _Check:
    """One walk over a config; ``checked`` holds the keys of the dicts whose every key it
    held against what their consumer accepts."""

    def __init__(self) -> None:
        self.checked: set[str] = set()

    def typed(
        self, cfg: Any, registry, key: str, skip: tuple = (), default: str | None = None
    ) -> None:
        """Look up ``cfg['type']`` (or ``default``) in ``registry`` and check its arguments."""
        if not isinstance(cfg, dict) or cfg.get("type", default) is None:
            return
        obj_cls = _lookup(registry, cfg.get("type", default), key)
        args = {k: v for k, v in cfg.items() if k not in ("type", "_scope_", *skip)}
        settings = _check_arguments(obj_cls, args, key)
        self.checked.update([key, *(f"{key}.{name}" for name in settings)])

    def plain(self, cfg: Any, accepted: Iterable[str], key: str, what: str) -> None:
        if isinstance(cfg, dict):
            _check_keys(cfg, accepted, key, what)
            self.checked.add(key)

    def model(self, cfg: Any, key: str) -> None:
        """Every dict with a ``type`` in ``cfg``, in lists and plain dicts (a model's heads by
        name) too, as ``MODELS`` builds them."""
        if isinstance(cfg, (list, tuple)):
            for value, inner in _as_list(cfg, key):
                self.model(value, inner)
        elif isinstance(cfg, dict):
            if "type" in cfg:
                self.typed(cfg, MODELS, key)
            for name, value in cfg.items():
                if f"{key}.{name}" not in self.checked:  # dicts of settings are done
                    self.model(value, f"{key}.{name}")

    def hook(self, cfg: Any, key: str) -> None:
        """``priority`` is taken by the runner. Of mmengine's hooks that take ``**kwargs``,
        EMAHook hands them to its EMA model (``ema_type``), and CheckpointHook to
        ``Runner.save_checkpoint`` beside every argument that takes, so none may be left."""
        if not isinstance(cfg, dict) or "type" not in cfg:
            return
        hook_cls = _lookup(HOOKS, cfg["type"], key)
        accepted = _accepted_arguments(hook_cls)
        if inspect.isclass(hook_cls) and issubclass(hook_cls, (EMAHook, CheckpointHook)):
            params = inspect.signature(hook_cls.__init__).parameters
            accepted = {
                n: p for n, p in params.items() if n != "self" and p.kind is p.POSITIONAL_OR_KEYWORD
            }
            if issubclass(hook_cls, EMAHook):
                ema = _lookup(MODELS, cfg.get("ema_type", "ExponentialMovingAverage"), key)
                accepted.update(_accepted_arguments(ema) or {})
        if accepted is not None:
            args = [k for k in cfg if k not in ("type", "_scope_")]
            _check_keys(args, ["priority", *accepted], key, f"an argument of {cfg['type']}")
        self.checked.add(key)

    def dataset(self, cfg: Any, key: str) -> None:
        if not isinstance(cfg, dict):
            return
        self.typed(cfg, DATASETS, key)
        for transform, inner in _as_list(cfg.get("pipeline"), f"{key}.pipeline"):
            self.typed(transform, TRANSFORMS, inner)
        self.dataset(cfg.get("dataset"), f"{key}.dataset")  # RepeatDataset, ...
        for inner, inner_key in _as_list(cfg.get("datasets"), f"{key}.datasets"):  # Concat
            self.dataset(inner, inner_key)

    def dataloader(self, cfg: Any, key: str) -> None:
        if not isinstance(cfg, dict):
            return
        accepted = [p for p in inspect.signature(DataLoader).parameters if p != "self"]
        self.plain(cfg, [*accepted, *_LOADER_EXTRA], key, "a dataloader setting")
        self.dataset(cfg.get("dataset"), f"{key}.dataset")
        samplers = _PLAIN_CHILDREN["DATA_SAMPLERS"]
        self.typed(cfg.get("sampler"), samplers, f"{key}.sampler")
        self.typed(cfg.get("batch_sampler"), samplers, f"{key}.batch_sampler")

    def evaluator(self, cfg: Any, key: str) -> None:
        """A metric dict, a list of them, or ``dict(type='Evaluator', metrics=...)``."""
        if isinstance(cfg, dict) and "metrics" in cfg:
            self.typed(cfg, _PLAIN_CHILDREN["EVALUATOR"], key)
            cfg, key = cfg["metrics"], f"{key}.metrics"
        for metric, inner in _as_list(cfg, key):
            self.typed(metric, METRICS, inner)

    def run(self, cfg: Config) -> None:
        self.model(cfg.get("model"), "model")
        loops = _PLAIN_CHILDREN["LOOPS"]
        train = cfg.get("train_cfg")
        by_epoch = isinstance(train, dict) and train.get("by_epoch")
        train_loop = "EpochBasedTrainLoop" if by_epoch else "IterBasedTrainLoop"
        self.typed(train, loops, "train_cfg", skip=("by_epoch",), default=train_loop)
        self.typed(cfg.get("val_cfg"), loops, "val_cfg", default="ValLoop")
        self.typed(cfg.get("test_cfg"), loops, "test_cfg", default="TestLoop")
        for split in ("train", "val", "test"):
            self.dataloader(cfg.get(f"{split}_dataloader"), f"{split}_dataloader")
            self.evaluator(cfg.get(f"{split}_evaluator"), f"{split}_evaluator")
        for name, hook in (cfg.get("default_hooks") or {}).items():
            self.hook(hook, f"default_hooks.{name}")
        for hook, key in _as_list(cfg.get("custom_hooks"), "custom_hooks"):
            self.hook(hook, key)
        optim = cfg.get("optim_wrapper")
        if isinstance(optim, dict):
            skip = ("optimizer", "constructor", "paramwise_cfg")
            self.typed(optim, OPTIM_WRAPPERS, "optim_wrapper", skip, default="OptimWrapper")
            constructor = optim.get("constructor")
            if isinstance(constructor, str):
                _lookup(OPTIM_WRAPPER_CONSTRUCTORS, constructor, "optim_wrapper.constructor")
            optimizers = _PLAIN_CHILDREN["OPTIMIZERS"]
            self.typed(optim.get("optimizer"), optimizers, "optim_wrapper.optimizer", ("params",))
        schedulers = _PLAIN_CHILDREN["PARAM_SCHEDULERS"]
        for scheduler, key in _as_list(cfg.get("param_scheduler"), "param_scheduler"):
            # convert_to_iter_based: taken by mmengine's builder
            self.typed(scheduler, schedulers, key, skip=("convert_to_iter_based",))
        logs = _PLAIN_CHILDREN["LOG_PROCESSORS"]
        self.typed(cfg.get("log_processor"), logs, "log_processor", default="LogProcessor")
        wrappers, ddp = _PLAIN_CHILDREN["MODEL_WRAPPERS"], "MMDistributedDataParallel"
        self.typed(cfg.get("model_wrapper_cfg"), wrappers, "model_wrapper_cfg", default=ddp)
        visualizer = cfg.get("visualizer")
        self.typed(visualizer, VISUALIZERS, "visualizer")
        if isinstance(visualizer, dict):
            backends = _PLAIN_CHILDREN["VISBACKENDS"]
            for backend, key in _as_list(visualizer.get("vis_backends"), "visualizer.vis_backends"):
                self.typed(backend, backends, key)
        for name, accepted in _RUNNER_DICTS.items():
            self.plain(cfg.get(name), accepted, name, f"a key of {name} the runner reads")


def _check_top_level(cfg: Config) -> None:
    for name in cfg:
        if name in TOP_LEVEL_KEYS or name.startswith("_"):
            continue
        close = difflib.get_close_matches(name, TOP_LEVEL_KEYS, n=1, cutoff=0.85)
        if close:
            raise ConfigError(f"{name}: not a key the runner reads. Did you mean {close[0]!r}?")


def _check_added(key: str, had: list[str], checked: set[str]) -> None:
    """Refuse ``key``, added on the command line, if nothing would read it (module doc)."""
    parent, _, name = key.rpartition(".")
    if not parent and name not in TOP_LEVEL_KEYS:
        raise ConfigError(
            f"{name}: the config has no such name and the runner reads no such key."
            f"{_did_you_mean(name, [*had, *TOP_LEVEL_KEYS])}"
        )
    if parent and parent not in checked:
        raise ConfigError(
            f"{key}: {parent} has no {name!r} in the config, and what it accepts is not known, "
            f"so the command line may only change the keys it has.{_did_you_mean(name, had)} "
            f"It has: {', '.join(had)}. (A new key can be written in a config file.)"
        )


def check_config(cfg: Config, added: Mapping[str, list[str]] | None = None) -> None:
    """Raise :class:`ConfigError` for the first unknown type, argument or misspelt key of
    ``cfg``, or the first key ``added`` on the command line (:func:`added_keys`) that nothing
    reads (see the module doc); return None if all is well."""
    check = _Check()
    try:
        _check_top_level(cfg)
        check.run(cfg)
        for key, had in (added or {}).items():
            _check_added(key, had, check.checked)
    except ConfigError as error:
        raise ConfigError(f"{error} (config {cfg.filename or '<in memory>'})") from None
