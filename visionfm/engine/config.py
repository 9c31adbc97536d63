"""Loading configs for the tools, with ``--cfg-options`` that always apply.

mmengine resolves a config file's variables when the file is read, so overriding one on
the command line would silently leave every value computed from it unchanged (a
well-known trap in OpenMMLab projects). ``load_config`` follows two kinds:

- ``data_root``: every string that starts with the old root is moved to the new one; a new
  root given without the old one's trailing ``/`` gets it (``data_root=/data/coco`` and
  ``/data/coco/`` are the same: configs build paths as ``data_root + "annotations/..."``);
- any other top-level variable (``max_epochs``, ``num_classes``, ``lr``, ...): every key of
  the same name that holds the variable's old value takes the new one
  (``max_epochs=10`` also sets ``train_cfg.max_epochs``). Keys of that name holding other
  values are kept and named in the log, and so is a variable nothing follows.

Then the result is checked (:func:`~visionfm.engine.config_check.check_config`), so every tool
refuses a misspelt key, in the file or on the command line, before it builds anything.

A relative ``_base_`` that is not next to the config file is looked for where it is for the
configs in the project's ``configs/`` folders, so a shipped config copied anywhere
(``cp configs/custom/dino_vit-t_custom-coco.py my_config.py``) loads as the original did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmengine.config import Config
from mmengine.logging import print_log

from visionfm.registry import ConfigError

from .config_check import added_keys, check_config

_ROOT = "data_root"
# The project's configs (the package is installed in place: ``pip install -e .``).
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _reroot(node: Any, old: str, new: str) -> tuple[Any, int]:
    if isinstance(node, str):
        return (new + node[len(old) :], 1) if node.startswith(old) else (node, 0)
    if isinstance(node, dict):
        count = 0
        for key in list(node):
            node[key], n = _reroot(node[key], old, new)
            count += n
        return node, count
    if isinstance(node, (list, tuple)):
        items = [_reroot(v, old, new) for v in node]
        return type(node)(v for v, _ in items), sum(n for _, n in items)
    return node, 0


def _named(node: Any, name: str, path: str = "") -> Iterator[tuple[dict, str]]:
    """(dict, dotted path) for every key ``name`` nested in ``node`` (lists indexed)."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == name and path:
                yield node, where
            yield from _named(value, name, where)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _named(value, name, f"{path}[{i}]")


def _follow(body: dict, name: str, old: Any, new: Any) -> None:
    """Give every nested key ``name`` that holds ``old`` the value ``new``; log what moved."""
    moved, kept = [], []
    for parent, where in _named(body, name):
        if parent[name] == old:
            parent[name] = new
            moved.append(where)
        else:
            kept.append(f"{where} = {parent[name]!r}")
    if moved:
        message = f"{name} {old!r} -> {new!r}: also set {', '.join(moved)}"
    else:
        message = (
            f"{name} {old!r} -> {new!r}: no key named {name!r} holds the old value, so values "
            "the config file computed from it keep it; override those keys themselves"
        )
    if kept:
        message += f" (left as they are: {', '.join(kept)})"
    print_log(message, logger="current")


def _find_base(base: str, filename: str) -> str:
    """The file a relative ``_base_`` entry ``base`` of config ``filename`` names: next to
    ``filename``, else the one file it names from a folder of :data:`CONFIGS` (where a copied
    config came from). Raises :class:`ConfigError` saying where it looked otherwise."""
    here = Path(filename).parent / base
    if here.is_file():
        return str(here)
    found = sorted({str((d / base).resolve()) for d in CONFIGS.glob("*/") if (d / base).is_file()})
    if len(found) == 1:
        return found[0]
    where = (
        f"in several folders of {CONFIGS}: {', '.join(found)}"
        if found
        else f"nor from a folder of {CONFIGS}"
    )
    raise ConfigError(
        f"{filename}: _base_ {base!r} is not at {here.resolve()}, {where}; "
        "give its path relative to this file or absolute"
    )


@contextmanager
def _bases_found_in_configs() -> Iterator[None]:
    """While loading, mmengine resolves relative ``_base_`` entries with :func:`_find_base`
    (mmengine only looks next to the file)."""
    original = Config.__dict__["_get_cfg_path"]

    def get_cfg_path(base: str, filename: str) -> tuple[str, str | None]:
        if "::" in base:  # another package's config: mmengine's own lookup
            return original(base, filename)
        return _find_base(base, filename), None

    Config._get_cfg_path = staticmethod(get_cfg_path)
    try:
        yield
    finally:
        Config._get_cfg_path = original


def _merge(cfg: Config, cfg_options: dict) -> Config:
    """``cfg`` with ``cfg_options`` merged; values the file computed from an overridden
    top-level variable follow it (see the module doc)."""
    variables = {
        k: cfg[k]
        for k in cfg_options
        if "." not in k and k in cfg and not isinstance(cfg[k], dict) and k != _ROOT
    }
    old_root = cfg.get(_ROOT)
    cfg.merge_from_dict(cfg_options)
    new_root = cfg.get(_ROOT)
    if isinstance(old_root, str) and old_root.endswith("/") and isinstance(new_root, str):
        if new_root and not new_root.endswith("/"):
            new_root = cfg[_ROOT] = new_root + "/"
    body = cfg.to_dict()
    for name, old in variables.items():
        if body[name] != old:
            _follow(body, name, old, body[name])
    if isinstance(old_root, str) and old_root and new_root != old_root:
        body[_ROOT] = old_root  # moved below together with everything derived from it
        body, count = _reroot(body, old_root, str(new_root))
        print_log(f"data_root {old_root!r} -> {new_root!r}: {count} paths moved", logger="current")
    return Config(body, filename=cfg.filename)


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """``Config.fromfile(path)`` with ``cfg_options`` merged (see the module doc), checked
    before anything is built: a key of the file or of ``cfg_options`` that nothing accepts
    is a :class:`~visionfm.registry.ConfigError` (:mod:`visionfm.engine.config_check`), and
    so is a file that fails to run as a config (its error named)."""
    try:
        with _bases_found_in_configs():
            cfg = Config.fromfile(path)
    except (FileNotFoundError, ConfigError):
        raise
    except Exception as err:  # a Python file that is not a config: its error, named
        raise ConfigError(
            f"{path} could not be read as a config file: {type(err).__name__}"
            f"{': ' + str(err) if str(err) else ''}"
        ) from err
    added = added_keys(cfg, cfg_options or {})  # before merging hides which keys are new
    if cfg_options:
        cfg = _merge(cfg, cfg_options)
    check_config(cfg, added)
    return cfg
