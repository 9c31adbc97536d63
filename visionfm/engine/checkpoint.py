"""Checkpoint loading that works with ``weights_only=True`` (torch >= 2.6), and checks.

mmengine 0.10.x calls ``torch.load`` without ``weights_only``; on current torch
that defaults to True and fails on what mmengine itself saves: the message
hub's ``HistoryBuffer`` objects (which pickle their statistics methods through
``builtins.getattr``) and numpy arrays/scalars. This module is the one place
that works around mmengine's checkpoint handling:

- ``SAFE_GLOBALS`` allow-lists exactly the classes an mmengine checkpoint of
  ours contains (besides ``visionfm.safe_pickle.PICKLED_ARGS_GLOBALS``: numpy values and the
  training arguments of original-repository checkpoints), and instead of the real ``getattr`` (which would re-open
  arbitrary code execution) a stand-in that resolves only HistoryBuffer's
  registered statistics methods.
- ``load_checkpoint_file`` loads with ``weights_only=True`` under that list.
- ``find_latest_checkpoint`` (``--resume auto``) returns the newest checkpoint that
  loads, skipping truncated or corrupt ones with a warning naming them.
- ``load_checkpoint_to_model`` (``load_from`` and resume) lists missing, unexpected and
  mismatched-shape keys and refuses a checkpoint of a different model outright, where
  mmengine would log a warning and train from random weights. Fine-tuning from a detector
  trained on other classes keeps every other weight and re-initialises the heads' declared
  ``class_layers`` whose shape differs (logged, tensor by tensor, with both shapes);
  ``load_model_weights`` (test, demo, Inferencer) refuses such a checkpoint instead, naming
  ``num_classes``.
- ``install()`` puts these, and the atomic, finite-only ``save_checkpoint`` of
  ``checkpoint_saving``, in place of mmengine's.
"""

from __future__ import annotations

import glob
import os
import os.path as osp
import re
from collections import OrderedDict
from dataclasses import replace

import mmengine.runner as mm_runner_pkg
import mmengine.runner.checkpoint as mm_checkpoint
import mmengine.runner.runner as mm_runner
import torch
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from visionfm.heads.base import Head
from visionfm.models.published import convert_published, families, is_published_path
from visionfm.safe_pickle import PICKLED_ARGS_GLOBALS
from visionfm.weights import (
    CheckpointError,
    load_converted,
    read_checkpoint,
    read_hf_config,
)

from .checkpoint_saving import save_checkpoint

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


SAFE_GLOBALS: list = [
    HistoryBuffer,
    (_history_buffer_getattr, "builtins.getattr"),
    *PICKLED_ARGS_GLOBALS,
]


def load_checkpoint_file(
    path: str, map_location: str | torch.device | None = "cpu", mmap: bool = False
) -> dict:
    """Load a checkpoint written by our runner (or a plain state dict) with weights_only=True.

    ``mmap=True`` maps the tensors instead of reading them (a cheap completeness check).
    Raises FileNotFoundError naming ``path`` if it is missing, and RuntimeError naming
    it if the file is not a readable torch checkpoint.
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # corrupt, truncated, or holds disallowed objects
        raise RuntimeError(f"cannot load checkpoint {path}: {err}") from err


def load_from_local_weights_only(path: str, map_location=None) -> dict:
    """mmengine loader scheme for local paths (its log line names the part after 'load_from_').

    A folder or ``.safetensors`` file (a published model, ``visionfm.models.published``) is
    read as ``{"state_dict": ..., "meta": {"hf_config": config.json or None}}``."""
    if is_published_path(path):
        return dict(state_dict=read_checkpoint(path), meta=dict(hf_config=read_hf_config(path)))
    return load_checkpoint_file(path, map_location)


def _mtime(path: str) -> float:
    return osp.getmtime(path) if osp.exists(path) else 0.0


def _is_resumable(ckpt: object) -> bool:
    return isinstance(ckpt, dict) and "state_dict" in ckpt and "iter" in ckpt.get("meta", {})


def find_latest_checkpoint(work_dir: str) -> str | None:
    """The newest complete training checkpoint of ``work_dir`` (``--resume auto``), or None.

    Tries the file ``work_dir/last_checkpoint`` names, then the other ``*.pth`` files next
    to it and in ``work_dir`` (not ``best_*``, which lack the optimizer), newest first.
    A file that does not load (truncated, corrupt) or holds no training state is skipped
    with a warning naming it.
    """
    candidates: list[str] = []
    pointer = osp.join(work_dir, "last_checkpoint")
    if osp.isfile(pointer):
        with open(pointer) as f:
            target = f.read().strip()
        if target:
            candidates.append(target)
    folders = {work_dir} | {osp.dirname(c) for c in candidates}
    others = [p for d in folders for p in glob.glob(osp.join(d, "*.pth"))]
    others = [p for p in others if not osp.basename(p).startswith("best_")]
    for path in sorted(set(others), key=_mtime, reverse=True):
        if not any(osp.abspath(path) == osp.abspath(c) for c in candidates):
            candidates.append(path)
    for path in candidates:
        try:
            ckpt = load_checkpoint_file(path, mmap=True)
        except (FileNotFoundError, RuntimeError) as err:
            print_log(f"skipping checkpoint {path}: {err}", logger="current", level=30)
            continue
        if _is_resumable(ckpt):
            if path != candidates[0]:
                print_log(f"resuming from {path}, the newest complete checkpoint", "current")
            return path
        print_log(f"skipping {path}: no training state (meta/iter)", logger="current", level=30)
    return None


def _show(items: list[str], limit: int = 8) -> str:
    more = f" ... ({len(items)} in all)" if len(items) > limit else ""
    return (", ".join(items[:limit]) + more) if items else "none"


def describe_key_mismatch(own: dict, state: dict) -> tuple[str, bool]:
    """Compare a model's ``own`` state dict with a checkpoint's ``state``.

    Returns ``(report, foreign)``: ``report`` lists missing, unexpected and mismatched-shape
    keys ("" when everything matches); ``foreign`` is True when fewer than half of the
    model's entries and fewer than half of the checkpoint's match by name and shape,
    i.e. the checkpoint belongs to a different architecture.
    """
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    common = sorted(set(own) & set(state))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in common
        if hasattr(state[k], "shape") and state[k].shape != own[k].shape
    ]
    matched = len(common) - len(mismatched)
    foreign = matched < 0.5 * len(own) and matched < 0.5 * max(len(state), 1)
    report = ""
    if missing or unexpected or mismatched:
        report = (
            f"missing {_show(missing)}; unexpected {_show(unexpected)}; "
            f"shape mismatch {_show(mismatched)}"
        )
    if foreign:
        report = (
            f"this checkpoint looks like a different model: only {matched} of the model's "
            f"{len(own)} entries (and of the checkpoint's {len(state)}) match by name and "
            f"shape. Check that the config and the checkpoint belong together. {report}"
        )
    return report, foreign


def class_layer_mismatches(model: torch.nn.Module, state: dict) -> list[tuple[str, tuple, tuple]]:
    """``(key, checkpoint shape, model shape)`` of every tensor of a head's ``class_layers``
    (:class:`~visionfm.heads.base.Head`) whose shape in ``state`` differs from the model's."""
    found = []
    for prefix, head in model.named_modules():
        if not isinstance(head, Head) or not head.class_layers:
            continue
        for name, tensor in head.state_dict().items():
            key = f"{prefix}.{name}" if prefix else name
            if key in state and any(re.match(p, name) for p in head.class_layers):
                if tuple(state[key].shape) != tuple(tensor.shape):
                    found.append((key, tuple(state[key].shape), tuple(tensor.shape)))
    return found


def _num_classes_note(model: torch.nn.Module, mismatches: list) -> str:
    """'checkpoint N classes, model M' from the first class head's rows."""
    key, theirs, ours = mismatches[0]
    head = next(
        (m for p, m in model.named_modules() if isinstance(m, Head) and key.startswith(p)), None
    )
    model_classes = getattr(head, "num_classes", None)
    if not isinstance(model_classes, int):
        return f"{key}: checkpoint {theirs} vs model {ours}"
    return f"{model_classes + theirs[0] - ours[0]} classes in the checkpoint, {model_classes} in the model"


def reinit_class_layers(model: torch.nn.Module, state: dict) -> tuple[dict, list[str]]:
    """``state`` with the class layers whose shape differs replaced by the model's own
    (freshly initialised) tensors, and one line per tensor saying so (fine-tuning on other
    classes); ``state`` itself is not changed."""
    mismatches = class_layer_mismatches(model, state)
    if not mismatches:
        return state, []
    own = model.state_dict()
    state = dict(state)
    for key, _, _ in mismatches:
        state[key] = own[key].detach().clone()
    lines = [
        f"re-initialised {len(mismatches)} class-dependent tensors for fine-tuning on other "
        f"classes ({_num_classes_note(model, mismatches)}):"
    ] + [f"  {key}: checkpoint {theirs} -> model {ours}" for key, theirs, ours in mismatches]
    return state, lines


def _refuse_other_classes(model: torch.nn.Module, state: dict, path: str) -> None:
    """A checkpoint of another class count does not load for testing / inference."""
    mismatches = class_layer_mismatches(model, state)
    if mismatches:
        shown = ", ".join(f"{k} {a} vs {b}" for k, a, b in mismatches[:3])
        raise CheckpointError(
            f"checkpoint {path} was trained on another number of classes than this "
            f"{type(model).__name__} ({_num_classes_note(model, mismatches)}; {shown}): set "
            "the head's num_classes to the checkpoint's, or fine-tune from it with "
            "load_from= (its class layers are then re-initialised)"
        )


def load_checkpoint_to_model(
    model, checkpoint: dict, strict: bool = False, logger=None, revise_keys=((r"^module\.", ""),)
) -> dict:
    """Replacement for mmengine's ``_load_checkpoint_to_model`` (``load_from``, resume).

    Loads the entries that match by name and shape, logs a warning listing the rest, and
    raises RuntimeError for a checkpoint of a different model (see
    ``describe_key_mismatch``), or for any difference when ``strict``. Class layers of
    another class count are re-initialised first (:func:`reinit_class_layers`, logged).
    """
    state = checkpoint.get("state_dict", checkpoint)
    hf_config = checkpoint.get("meta", {}).get("hf_config") if "state_dict" in checkpoint else None
    converted = convert_published(model, state, hf_config)
    if converted is None and hf_config is None:  # a torch-saved original-repo file
        converted = _published_in_file(model, checkpoint, None)
    if converted is not None:  # a published layout: converted and loaded strictly
        kept, lines = reinit_class_layers(model, converted.state_dict)
        converted = replace(converted, state_dict=kept, notes=[*converted.notes, *lines])
        _log_reinit(lines)
        print_log(str(load_converted(model, converted, strict=True)), logger="current")
        return checkpoint
    metadata = getattr(state, "_metadata", OrderedDict())
    for pattern, replacement in revise_keys:
        state = OrderedDict((re.sub(pattern, replacement, k), v) for k, v in state.items())
    state, lines = reinit_class_layers(model, state)
    _log_reinit(lines)
    own = model.state_dict()
    report, foreign = describe_key_mismatch(own, state)
    if foreign or (strict and report):
        raise RuntimeError(f"cannot load the checkpoint into {type(model).__name__}: {report}")
    if report:
        print_log(
            f"checkpoint loaded partially into {type(model).__name__}: {report}",
            logger="current",
            level=30,
        )
    compatible = OrderedDict(
        (k, v)
        for k, v in state.items()
        if k in own and getattr(v, "shape", None) == getattr(own[k], "shape", None)
    )
    compatible._metadata = metadata
    model.load_state_dict(compatible, strict=False)
    return checkpoint


def _log_reinit(lines: list[str]) -> None:
    if lines:
        print_log("\n".join(lines), logger="current", level=30)


def install() -> None:
    """Put this module's loading and ``checkpoint_saving``'s saving in place of mmengine's."""
    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local_weights_only, force=True)
    for module in (mm_checkpoint, mm_runner, mm_runner_pkg):
        module.save_checkpoint = save_checkpoint
        module.find_latest_checkpoint = find_latest_checkpoint
    mm_runner._load_checkpoint_to_model = load_checkpoint_to_model


def _published_in_file(model, ckpt: dict, path: str | None):
    """A torch-saved file in a published layout (``{"model": ...}`` of an original repo, its
    pickled ``args`` kept as ``state.args``), converted for ``model``; None for our own
    checkpoints."""
    if "state_dict" in ckpt and "meta" in ckpt:  # ours (runner checkpoints)
        return None
    try:
        state = read_checkpoint(ckpt)
    except CheckpointError:
        return None
    return convert_published(model, state, read_hf_config(path) if path else None)


def load_model_weights(model: torch.nn.Module, path: str) -> dict:
    """Load a training checkpoint's (or a bare state dict's) weights into ``model``, strictly.

    ``path``: our checkpoint, or a published one (a Hugging Face folder / ``.safetensors``, an
    original repository's file), converted strictly by its family. Returns the checkpoint's
    ``meta`` (``{}`` for a bare state dict or a published one). Raises CheckpointError (a
    user error: the tools print it in one line) naming ``path`` and listing the missing,
    unexpected and mismatched-shape keys when the checkpoint does not belong to this model
    ("looks like a different model" when most keys differ), or naming ``num_classes`` (or
    fine-tuning with ``load_from``) when its class layers are of another class count.
    """
    if is_published_path(path):
        converted = convert_published(model, read_checkpoint(path), read_hf_config(path))
    else:
        ckpt = load_checkpoint_file(path)
        converted = _published_in_file(model, ckpt, path)  # e.g. an original repo's .pth
    if converted is not None:
        _refuse_other_classes(model, converted.state_dict, path)
        load_converted(model, converted, strict=True)
        return {}
    if is_published_path(path):
        known = ", ".join(f.name for f in families())
        raise CheckpointError(
            f"{path} is in none of the published layouts we know (families: {known})"
        )
    state = ckpt.get("state_dict", ckpt)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    _refuse_other_classes(model, state, path)
    report, _ = describe_key_mismatch(model.state_dict(), state)
    if report:
        raise CheckpointError(
            f"checkpoint {path} does not match the model ({type(model).__name__}): {report}"
        )
    model.load_state_dict(state, strict=False)  # all but num_batches_tracked checked above
    return ckpt.get("meta", {}) if "state_dict" in ckpt else {}
