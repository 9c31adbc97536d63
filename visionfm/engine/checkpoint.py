"""Checkpoint loading that works with ``weights_only=True`` (torch >= 2.6).

mmengine 0.10.x calls ``torch.load`` without ``weights_only``; on current torch
that defaults to True and fails on what mmengine itself saves: the message
hub's ``HistoryBuffer`` objects (which pickle their statistics methods through
``builtins.getattr``) and numpy arrays/scalars. This module is the one place
that works around it:

- ``SAFE_GLOBALS`` allow-lists exactly the classes an mmengine checkpoint of
  ours contains, and instead of the real ``getattr`` (which would re-open
  arbitrary code execution) a stand-in that resolves only HistoryBuffer's
  registered statistics methods.
- ``load_checkpoint_file`` loads with ``weights_only=True`` under that list.
- ``install()`` makes mmengine's local-file loader (used by ``Runner.resume``
  and ``load_from``) use it.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

_STATISTICS = ("min", "max", "mean", "current")  # HistoryBuffer's built-in statistics


def _history_buffer_getattr(obj: object, name: str) -> object:
    """``getattr`` restricted to ``HistoryBuffer``'s statistics methods."""
    allowed = set(_STATISTICS) | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise RuntimeError(
        f"checkpoint asked for getattr({obj!r}, {name!r}); only HistoryBuffer statistics "
        "methods are allowed when loading with weights_only=True"
    )


def _numpy_dtype_classes() -> list[type]:
    names = [
        "Float16DType",
        "Float32DType",
        "Float64DType",
        "Int32DType",
        "Int64DType",
        "UInt8DType",
        "UInt32DType",
        "BoolDType",
    ]
    return [getattr(np.dtypes, n) for n in names if hasattr(np.dtypes, n)]


def _numpy_core():
    return np._core if hasattr(np, "_core") else np.core  # numpy 2 / numpy 1


SAFE_GLOBALS: list = [
    HistoryBuffer,
    (_history_buffer_getattr, "builtins.getattr"),
    np.ndarray,
    np.dtype,
    _numpy_core().multiarray.scalar,
    _numpy_core().multiarray._reconstruct,
    *_numpy_dtype_classes(),
]


def load_checkpoint_file(path: str, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint written by our runner (or a plain state dict) with weights_only=True.

    Raises FileNotFoundError naming ``path`` if it is missing, and RuntimeError naming
    it if the file is not a readable torch checkpoint.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt, truncated, or holds disallowed objects
        raise RuntimeError(f"cannot load checkpoint {path}: {err}") from err


def load_from_local_weights_only(path: str, map_location=None) -> dict:
    """mmengine loader scheme for local paths (its log line names the part after 'load_from_')."""
    return load_checkpoint_file(path, map_location)


def install() -> None:
    """Route mmengine's loading of local checkpoint files through ``load_checkpoint_file``."""
    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local_weights_only, force=True)


def load_model_weights(model: torch.nn.Module, path: str) -> dict:
    """Load a training checkpoint's (or a bare state dict's) weights into ``model``, strictly.

    Returns the checkpoint's ``meta`` (``{}`` for a bare state dict). Raises RuntimeError
    naming ``path`` and listing the missing, unexpected and mismatched-shape keys when the
    checkpoint does not belong to this model.
    """
    ckpt = load_checkpoint_file(path)
    state = ckpt.get("state_dict", ckpt)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if hasattr(state[k], "shape") and state[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:

        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")

        raise RuntimeError(
            f"checkpoint {path} does not match the model ({type(model).__name__}): "
            f"missing {show(missing) or 'none'}; unexpected {show(unexpected) or 'none'}; "
            f"shape mismatch {show(mismatched) or 'none'}"
        )
    model.load_state_dict(state)
    return ckpt.get("meta", {}) if "state_dict" in ckpt else {}
