"""The project's registries and the builder that turns configs into objects.

Every registry is a child of mmengine's root registry of the same kind, in the
``visionfm`` scope, and names the packages it lives in (``locations=``) so a
lookup imports them itself: no object is ever "not registered" because an
import was forgotten.

``MODELS.build(cfg)`` builds recursively: every nested dict that carries a
``type`` (also inside lists / tuples and plain dicts, e.g. a task model's
``{name: head config}``) is built first, so constructors receive
built modules and plain values, never config dicts. Unknown types and unknown
constructor arguments fail with the config key at fault and the closest
registered / accepted names.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from mmengine.config import Config, ConfigDict
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry
from mmengine.registry import root as mmengine_root

__all__ = [
    "MODELS",
    "DATASETS",
    "TRANSFORMS",
    "METRICS",
    "HOOKS",
    "VISUALIZERS",
    "OPTIM_WRAPPER_CONSTRUCTORS",
    "OPTIM_WRAPPERS",
    "ConfigError",
    "build_from_cfg",
]


class ConfigError(KeyError):
    """A config names an unknown type or passes an argument the type does not take."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


def _registered_names(registry: Registry) -> list[str]:
    """Names visible from ``registry``: its own, its parents' and its children's."""
    registry.import_from_location()
    names: set[str] = set()
    reg: Registry | None = registry
    while reg is not None:
        names.update(reg.module_dict)
        reg = reg.parent
    for child in registry.children.values():
        names.update(child.module_dict)
    return sorted(names)


def _lookup(registry: Registry, obj_type: Any, key: str) -> Any:
    if callable(obj_type):
        return obj_type
    if not isinstance(obj_type, str):
        raise ConfigError(f"{key}.type must be a string or a class, got {type(obj_type).__name__}")
    obj_cls = registry.get(obj_type)
    if obj_cls is None:
        names = _registered_names(registry)
        close = difflib.get_close_matches(obj_type, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"{key}.type: {obj_type!r} is not in the {registry.scope}::{registry.name} "
            f"registry.{hint} ({len(names)} names are registered; "
            f'`python -c "from visionfm.registry import {_var_name(registry)} as R; '
            f'print(R)"` lists them.)'
        )
    return obj_cls


def _var_name(registry: Registry) -> str:
    return {
        "model": "MODELS",
        "dataset": "DATASETS",
        "transform": "TRANSFORMS",
        "metric": "METRICS",
        "hook": "HOOKS",
        "visualizer": "VISUALIZERS",
    }.get(registry.name, registry.name.upper())


def _check_arguments(obj_cls: Any, args: dict, key: str) -> None:
    """Refuse keyword arguments the constructor does not accept, with suggestions."""
    target = obj_cls.__init__ if inspect.isclass(obj_cls) else obj_cls
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if n != "self" and p.kind is not p.VAR_POSITIONAL]
    for name in args:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"{key}.{name}: {getattr(obj_cls, '__name__', obj_cls)} takes no argument "
                f"{name!r}.{hint} It accepts: {', '.join(accepted)}."
            )


def _merge(cfg: dict, default_args: dict | None) -> dict:
    args = dict(cfg)
    for name, value in (default_args or {}).items():
        args.setdefault(name, value)
    return args


def build_from_cfg(
    cfg: dict, registry: Registry, default_args: dict | None = None, key: str = "cfg"
) -> Any:
    """Build one object from ``cfg`` (non-recursive); errors name ``key``."""
    if not isinstance(cfg, (dict, ConfigDict, Config)):
        raise ConfigError(f"{key} must be a dict with a 'type', got {type(cfg).__name__}")
    args = _merge(cfg, default_args)
    if "type" not in args:
        raise ConfigError(f"{key} has no 'type' key (keys: {sorted(args)})")
    scope = args.pop("_scope_", None)
    with registry.switch_scope_and_registry(scope) as reg:
        obj_cls = _lookup(reg, args.pop("type"), key)
        _check_arguments(obj_cls, args, key)
        return obj_cls(**args)


def _build_nested(value: Any, registry: Registry, key: str) -> Any:
    if isinstance(value, (dict, ConfigDict)) and "type" in value:
        return build_model(value, registry, key=key)
    if isinstance(value, (list, tuple)) and any(
        isinstance(v, (dict, ConfigDict)) and "type" in v for v in value
    ):
        return type(value)(_build_nested(v, registry, f"{key}[{i}]") for i, v in enumerate(value))
    if isinstance(value, (dict, ConfigDict)) and any(
        isinstance(v, (dict, ConfigDict)) and "type" in v for v in value.values()
    ):  # built in sorted order (see build_model), kept in the config's order
        built = {k: _build_nested(value[k], registry, f"{key}.{k}") for k in sorted(value)}
        return {k: built[k] for k in value}
    return value


def build_model(
    cfg: dict | list, registry: Registry, default_args: dict | None = None, key: str = "model"
) -> Any:
    """Recursive build for ``MODELS``: nested ``type`` dicts are built first.

    A list of configs builds a list of modules (an ``nn.ModuleList`` when all are modules).
    Sibling keys are built in sorted order, so a config with its keys reordered (as
    mmengine dumps it) gives the same weights from the same seed.
    """
    import torch.nn as nn

    if isinstance(cfg, (list, tuple)):
        built = [build_model(c, registry, default_args, f"{key}[{i}]") for i, c in enumerate(cfg)]
        return nn.ModuleList(built) if all(isinstance(m, nn.Module) for m in built) else built
    args = _merge(cfg, default_args)
    built = {
        name: _build_nested(args[name], registry, f"{key}.{name}")
        for name in sorted(args)
        if name not in ("type", "_scope_")
    }
    nested = {name: built.get(name, value) for name, value in args.items()}
    return build_from_cfg(nested, registry, key=key)


def _make(name: str, parent: Registry, locations: list[str], recursive: bool = False) -> Registry:
    def build_func(cfg: Any, registry: Registry, default_args: dict | None = None) -> Any:
        if recursive:
            return build_model(cfg, registry, default_args, key=name)
        return build_from_cfg(cfg, registry, default_args, key=name)

    return Registry(
        parent.name,
        parent=parent,
        scope="visionfm",
        locations=locations,
        build_func=build_func,
    )


_ALL = [
    "visionfm.ops",
    "visionfm.backbones",
    "visionfm.necks",
    "visionfm.heads",
    "visionfm.models",
    "visionfm.data",
]

MODELS = _make("model", MMENGINE_MODELS, _ALL, recursive=True)
DATASETS = _make("dataset", MMENGINE_DATASETS, ["visionfm.data"])
TRANSFORMS = _make("transform", MMENGINE_TRANSFORMS, ["visionfm.data"])
METRICS = _make("metric", MMENGINE_METRICS, ["visionfm.evaluation"])
HOOKS = _make("hook", MMENGINE_HOOKS, ["visionfm.engine"])
VISUALIZERS = _make("visualizer", MMENGINE_VISUALIZERS, ["visionfm.visualization"])
OPTIM_WRAPPER_CONSTRUCTORS = _make(
    "optimizer wrapper constructor", mmengine_root.OPTIM_WRAPPER_CONSTRUCTORS, ["visionfm.engine"]
)

# The rest of mmengine's registries get a (so far empty) 'visionfm' child so that runs
# in the visionfm scope resolve them without mmengine's scope-fallback warnings.
_PLAIN_CHILDREN = {  # they keep mmengine's build functions
    name: Registry(
        getattr(mmengine_root, name).name, parent=getattr(mmengine_root, name), scope="visionfm"
    )
    for name in (
        "RUNNERS",
        "RUNNER_CONSTRUCTORS",
        "LOOPS",
        "STRATEGIES",
        "DATA_SAMPLERS",
        "MODEL_WRAPPERS",
        "WEIGHT_INITIALIZERS",
        "OPTIMIZERS",
        "OPTIM_WRAPPERS",
        "PARAM_SCHEDULERS",
        "EVALUATOR",
        "TASK_UTILS",
        "VISBACKENDS",
        "LOG_PROCESSORS",
        "INFERENCERS",
        "FUNCTIONS",
    )
    if hasattr(mmengine_root, name)
}
OPTIM_WRAPPERS = _PLAIN_CHILDREN["OPTIM_WRAPPERS"]
