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
registered / accepted names. A constructor's ``**kwargs`` that go on to its base
class's ``__init__`` are checked against that one; a class whose ``**kwargs`` go to another
library (``TimmBackbone``'s to ``timm.create_model``) sets ``forwards_kwargs = True`` and
leaves their check to it.

A constructor argument whose default is a read-only mapping
(``types.MappingProxyType``, e.g. a head's ``test_cfg``) is a dict of settings: its
keys are all the settings there are, with their defaults. A config may set some of
them; any other key is refused (:func:`settings`), so none is read and ignored.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from types import MappingProxyType
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
    "settings",
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
        raise ConfigError(
            f"{key}.type: {obj_type!r} is not in the {registry.scope}::{registry.name} "
            f"registry.{_did_you_mean(obj_type, names)} ({len(names)} names are registered; "
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


def _did_you_mean(name: str, names: Iterable[str]) -> str:
    """`` Did you mean 'a', 'b'?`` naming the entries of ``names`` closest to ``name``, or ''."""
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _accepted_arguments(obj_cls: Any) -> dict[str, inspect.Parameter] | None:
    """The keyword arguments ``obj_cls`` (a class or function) takes, by name; None when it
    takes any. The ``**kwargs`` of a class's ``__init__`` are taken to go on to the next
    ``__init__`` of its method resolution order (``object``'s takes any)."""
    if getattr(obj_cls, "forwards_kwargs", False):
        return None
    if not inspect.isclass(obj_cls):
        inits = [obj_cls]
    else:
        inits = [k.__dict__["__init__"] for k in obj_cls.__mro__ if "__init__" in k.__dict__]
    accepted: dict[str, inspect.Parameter] = {}
    for init in inits:
        if init is object.__init__:
            return None
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):  # builtins without a signature
            return None
        for name, p in params.items():
            if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                accepted.setdefault(name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return accepted
    return None


def _check_arguments(obj_cls: Any, args: dict, key: str) -> list[str]:
    """Refuse keyword arguments the constructor does not accept, and keys of a dict of
    settings it does not have (see the module doc), with suggestions. Returns the names of
    the dicts of settings among ``args``."""
    accepted = _accepted_arguments(obj_cls)
    if accepted is None:
        return []
    checked = []
    for name, value in args.items():
        if name not in accepted:
            raise ConfigError(
                f"{key}.{name}: {getattr(obj_cls, '__name__', obj_cls)} takes no argument "
                f"{name!r}.{_did_you_mean(name, accepted)} It accepts: {', '.join(accepted)}."
            )
        default = accepted[name].default
        if isinstance(default, MappingProxyType) and isinstance(value, Mapping):
            settings(value, default, f"{key}.{name}")
            checked.append(name)
    return checked


def settings(given: Mapping | None, defaults: Mapping, key: str) -> dict:
    """``defaults`` updated with ``given``; a key ``defaults`` lacks is refused (naming
    ``key``, the closest settings and all of them)."""
    for name in given or {}:
        if name not in defaults:
            raise ConfigError(
                f"{key}.{name}: no such setting.{_did_you_mean(name, defaults)} "
                f"The settings are: {', '.join(defaults)}."
            )
    return {**defaults, **(given or {})}


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
    "visionfm.layers",
    "visionfm.backbones",
    "visionfm.necks",
    "visionfm.heads",
    "visionfm.models",
    "visionfm.data",
    "visionfm.text",
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
