"""Loading configs for the tools, with ``--cfg-options`` that always apply.

mmengine resolves ``data_root + 'annotations/...'`` when the file is parsed, so
overriding ``data_root`` on the command line would silently leave every path
built from it pointing at the old root (a well-known trap in OpenMMLab
projects). ``load_config`` re-roots those paths: every string in the config
that starts with the old ``data_root`` is moved to the new one.
"""

from __future__ import annotations

from typing import Any

from mmengine.config import Config
from mmengine.logging import print_log


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


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """``Config.fromfile(path)`` with ``cfg_options`` merged; paths follow a new ``data_root``."""
    cfg = Config.fromfile(path)
    if not cfg_options:
        return cfg
    old_root = cfg.get("data_root")
    cfg.merge_from_dict(cfg_options)
    new_root = cfg.get("data_root")
    if isinstance(old_root, str) and old_root and new_root != old_root:
        cfg.data_root = old_root  # moved below together with everything derived from it
        body, count = _reroot(cfg.to_dict(), old_root, str(new_root))
        cfg = Config(body, filename=cfg.filename)
        print_log(f"data_root {old_root!r} -> {new_root!r}: {count} paths moved", logger="current")
    return cfg
