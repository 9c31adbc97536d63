"""Unpickling that never runs code: the only classes a checkpoint pickle may rebuild
besides tensors and plain containers (:data:`PICKLED_ARGS_GLOBALS`), for
``torch.load(weights_only=True)`` and for detectron2's plain ``.pkl`` checkpoints
(:func:`read_pickled_arrays`)."""

from __future__ import annotations

import argparse
import codecs
import collections
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

__all__ = ["PICKLED_ARGS_GLOBALS", "read_pickled_arrays"]


def _numpy_core():
    return np._core if hasattr(np, "_core") else np.core  # numpy 2 / numpy 1


def _numpy_dtype_classes() -> list[type]:
    names = ("Float16", "Float32", "Float64", "Int32", "Int64", "UInt8", "UInt32", "Bool")
    return [getattr(np.dtypes, f"{n}DType") for n in names if hasattr(np.dtypes, f"{n}DType")]


#: What ``torch.load(weights_only=True)`` may rebuild besides tensors and plain containers:
#: the training arguments original repositories pickle beside the weights (DETR, Deformable
#: DETR, DINO, RF-DETR: ``args`` an ``argparse.Namespace``) and numpy arrays, scalars and
#: dtypes (in those arguments and in mmengine's message hub). Nothing here runs code when
#: rebuilt; a pickle asking for anything else (``os.system`` through ``__reduce__`` ...) is
#: refused. ``visionfm.engine.checkpoint.SAFE_GLOBALS`` extends this list for mmengine's
#: own checkpoints.
PICKLED_ARGS_GLOBALS: list = [
    argparse.Namespace,
    np.ndarray,
    np.dtype,
    _numpy_core().multiarray.scalar,
    _numpy_core().multiarray._reconstruct,
    *_numpy_dtype_classes(),
]


class _PickledArraysUnpickler(pickle.Unpickler):
    """A plain pickle (detectron2's ``.pkl`` checkpoints) rebuilt with nothing but
    containers, numbers, strings and :data:`PICKLED_ARGS_GLOBALS`; any other global (which
    could run code) is refused before its module is imported. Protocol-2 pickles write
    bytes as ``_codecs.encode(text, 'latin1')``, which is allowed too."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        if module.split(".")[0] in ("numpy", "argparse", "collections"):
            found = super().find_class(module, name)
            if found in PICKLED_ARGS_GLOBALS or found is collections.OrderedDict:
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint pickle")


def _tensors_from_arrays(obj):
    """Mappings with numpy arrays (at any depth) -> the same with tensors."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, Mapping):
        return {k: _tensors_from_arrays(v) for k, v in obj.items()}
    return obj


def read_pickled_arrays(path: Path) -> object:
    """A detectron2 ``.pkl`` (``{"model": {name: ndarray}, "__author__": ...}``, as model zoos
    publish ``model_final_*.pkl``), its arrays as tensors."""
    with open(path, "rb") as f:
        return _tensors_from_arrays(_PickledArraysUnpickler(f, encoding="latin1").load())
