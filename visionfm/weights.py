"""Checkpoint reading and loading reports shared by every backbone family and by the heads'
converters of whole published models (DPT, ViTPose).

Flow of ``Backbone.load_pretrained(source)``:

1. :func:`read_checkpoint` reads ``.pth`` / ``.pt`` / ``.bin`` (``torch.load`` with
   ``weights_only=True`` and only ``visionfm.safe_pickle.PICKLED_ARGS_GLOBALS`` allowed
   besides tensors; detectron2's ``.pkl`` through ``safe_pickle.read_pickled_arrays``),
   ``.safetensors``, a Hugging Face model folder, or takes a dict already in memory, and
   unwraps ``state_dict`` / ``model`` / ``module`` containers and DDP's ``module.`` prefix
   -> :class:`CheckpointState` (a ``dict[str, Tensor]`` that also carries the training
   ``args`` an original repository pickles beside the weights); :func:`read_hf_config` reads
   the ``config.json`` of a Hugging Face folder (or of the folder holding the weights file).
2. The family's converter (e.g. ``vit_convert.convert_vit_checkpoint``) renames and
   reshapes it into this model's layout -> :class:`ConvertedCheckpoint`, and refuses a
   ``config.json`` that states another architecture than the model's
   (:func:`check_hf_config` with the family's table of :class:`ConfigEntry`).
3. :func:`load_converted` checks every key and shape against the model, refuses what
   cannot load (:class:`CheckpointError` listing every mismatch with shapes), loads the
   rest and returns a :class:`LoadReport` (also logged).

A checkpoint never loads with parameters silently dropped: a tensor the model has no place
for refuses the load unless the converter knowingly ignored it (classifier heads, mask
tokens ...). The family's :class:`ArchHint` table turns such tensors (and model parts the
checkpoint lacks, where leaving them at their initial values changes the outputs) into the
constructor argument to set. The model is never reconfigured behind the user's back: the
error names the argument, the user sets it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from visionfm.safe_pickle import PICKLED_ARGS_GLOBALS, read_pickled_arrays

logger = logging.getLogger(__name__)

__all__ = [
    "ArchHint",
    "CheckpointError",
    "CheckpointState",
    "ConfigEntry",
    "ConvertedCheckpoint",
    "LoadReport",
    "check_hf_config",
    "find_prefix",
    "hf_act",
    "load_converted",
    "locate_model_keys",
    "put_tied",
    "read_checkpoint",
    "split_in_proj",
    "stage_depths",
    "read_hf_config",
    "unwrap_state_dict",
]

_CONTAINER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict", "base_model")
_HF_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint cannot be read, is not of the expected family, or does not fit the model."""


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


class CheckpointState(dict):
    """A flat ``{name: tensor}`` state dict, plus ``args``: the training arguments pickled
    beside the weights (``vars(namespace)`` of an original repository's ``args`` entry, a
    dict there), or None; a published family's ``model_config`` reads them."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], args: Mapping | None = None):
        super().__init__(tensors)
        self.args = dict(args) if args is not None else None


def _args_of(obj: Mapping) -> dict | None:
    args = obj.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    return dict(args) if isinstance(args, Mapping) else None


def read_checkpoint(source: str | os.PathLike | Mapping) -> CheckpointState:
    """Read a checkpoint into a flat ``{name: tensor}`` dict (on CPU for files) that also
    carries the pickled training ``args`` (:class:`CheckpointState`).

    ``source``: a file (``.safetensors``; ``.pkl``: a plain pickle of numpy arrays, as
    detectron2 saves, read allowing only :data:`PICKLED_ARGS_GLOBALS`; anything else through
    ``torch.load(weights_only=True)`` allowing :data:`PICKLED_ARGS_GLOBALS`), a folder
    holding ``model.safetensors`` or ``pytorch_model.bin``, or a mapping in memory.
    """
    if isinstance(source, Mapping):
        return CheckpointState(unwrap_state_dict(source), _args_of(source))
    path = Path(source)
    if path.is_dir():
        found = [path / name for name in _HF_FILES if (path / name).is_file()]
        if not found:
            raise CheckpointError(f"{path} is a folder without any of {', '.join(_HF_FILES)}")
        path = found[0]
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        elif path.suffix == ".pkl":
            obj = read_pickled_arrays(path)
        else:
            with torch.serialization.safe_globals(PICKLED_ARGS_GLOBALS):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure means a corrupt or foreign file
        hint = ""
        if "weights_only" in str(exc):
            hint = (
                "\nThe file pickles Python objects that are not weights or training arguments "
                "(they could run code when loaded), so it is refused. If you trust it, re-save "
                "just the weights: torch.save(torch.load(path, weights_only=False)['model'], "
                "new_path)."
            )
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}"
        ) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return CheckpointState(unwrap_state_dict(obj, where=str(path)), _args_of(obj))


def read_hf_config(source: str | os.PathLike | Mapping) -> dict | None:
    """The Hugging Face ``config.json`` of a checkpoint, or None.

    Read from ``source`` when it is a folder, else from the folder holding the weights file;
    only a json object with a ``model_type`` counts (other ``config.json`` files are not
    Hugging Face's). The returned dict also holds ``"_file"``: the path it was read from.
    """
    if isinstance(source, Mapping):
        return None
    path = Path(source)
    path = (path if path.is_dir() else path.parent) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(config, dict) or "model_type" not in config:
        return None
    return {**config, "_file": str(path)}


@dataclass(frozen=True)
class ConfigEntry:
    """One architecture setting that a Hugging Face ``config.json`` states and our
    constructor controls (a row of a family's table, see :func:`check_hf_config`).

    ``name``: what the message calls it (the config key); ``want``: its value from the config
    (with transformers' default where the file omits it); ``ours``: the built model's value in
    the same terms; ``argument``: the constructor argument that gives the config's value.
    """

    name: str
    want: Callable[[Mapping], object]
    ours: Callable[[nn.Module], object]
    argument: Callable[[object], str]


_HF_ACTS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"}


def hf_act(config: Mapping, default: str = "gelu") -> str:
    """Our ``act_layer`` name for a ``config.json``'s ``hidden_act``."""
    name = config.get("hidden_act", default)
    return _HF_ACTS.get(name, name)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and math.isclose(a, b, rel_tol=1e-6)
        )
    return a == b


def check_hf_config(
    config: Mapping | None, model: nn.Module, tables: Mapping[str, Sequence[ConfigEntry]]
) -> list[str]:
    """Compare a ``config.json`` (from :func:`read_hf_config`) with the built model.

    ``tables``: the family's :class:`ConfigEntry` rows per ``model_type``. Raises
    :class:`CheckpointError` naming every setting that differs and the argument to set (the
    model is not reconfigured from the file); returns notes for the report.
    """
    if config is None:
        return []
    model_type, where = config.get("model_type"), config.get("_file", "config.json")
    entries = tables.get(model_type)
    if entries is None:
        return [f"{where}: model_type {model_type!r} is not compared with the model"]
    problems = []
    for entry in entries:
        want, have = entry.want(config), entry.ours(model)
        if not _same(want, have):
            problems.append(
                f"  {entry.name}: {want!r} in config.json, {have!r} in the model: "
                f"set {entry.argument(want)}"
            )
    if problems:
        raise CheckpointError(
            f"{where} ({model_type}) describes another architecture than this "
            f"{type(model).__name__}; build the model with the arguments named:\n"
            + "\n".join(problems)
        )
    return [f"{where} ({model_type}) agrees with the model"]


def unwrap_state_dict(obj: Mapping, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Descend through ``state_dict`` / ``model`` / ``module`` containers; drop ``module.`` prefixes.

    Non-tensor entries of the final dict (e.g. an ``epoch`` counter) are dropped.
    """
    for _ in range(4):  # containers nest at most a few levels
        inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{where} contains no tensors (keys: {sorted(obj)[:10]})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def find_prefix(keys, anchors: tuple[str, ...]) -> tuple[str, str] | None:
    """First ``(prefix, anchor)`` such that ``prefix + anchor`` is a key; shortest prefix wins."""
    best = None
    for key in keys:
        for anchor in anchors:
            if key.endswith(anchor):
                prefix = key[: -len(anchor)]
                if prefix and not prefix.endswith("."):
                    continue
                if best is None or len(prefix) < len(best[0]):
                    best = (prefix, anchor)
    return best


def put_tied(out: dict, key, tensor: torch.Tensor, name: str, copy: str) -> None:
    """``out[key] = tensor``, where a checkpoint stores copies of one tied tensor (a decoder's
    prediction heads): ``name``, the copy read now, must equal the one already at ``key``
    (``copy`` names that one in the error)."""
    if key in out and not torch.equal(out[key], tensor):
        raise CheckpointError(f"{name} differs from its tied copy {copy}")
    out[key] = tensor


def split_in_proj(
    name: str, tensor: torch.Tensor, parts: tuple[str, str, str] = ("q_proj", "k_proj", "v_proj")
) -> dict[str, torch.Tensor]:
    """``<attn>.in_proj_{weight,bias}`` of ``nn.MultiheadAttention`` (rows q, k, v: (3 * C,
    C) or (3 * C,)) -> ``<attn>.<part>.{weight,bias}`` for the three ``parts`` (default
    ``q_proj`` / ``k_proj`` / ``v_proj``; HF's Grounding DINO: ``query`` / ``key`` /
    ``value``)."""
    prefix, kind = name.rsplit(".in_proj_", 1)
    return {f"{prefix}.{p}.{kind}": t for p, t in zip(parts, tensor.chunk(3, dim=0), strict=True)}


def stage_depths(sd: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per stage of a state dict in a hierarchical backbone's layout
    (``stages.<i>.blocks.<j>.``); ``()`` when it has none."""
    found: dict[int, int] = {}
    for name in sd:
        if hit := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", name):
            found[int(hit[1])] = max(found.get(int(hit[1]), 0), int(hit[2]) + 1)
    return tuple(found.get(i, 0) for i in range(max(found, default=-1) + 1))


def locate_model_keys(
    sd: Mapping[str, torch.Tensor], anchors: Mapping[str, str], family: str, layouts: str
) -> tuple[str, str]:
    """``(prefix, format)`` of a family's checkpoint: the shortest prefix under which a key
    ends with one of ``anchors`` (``{anchor key: format name}``, see :func:`find_prefix`).

    Raises :class:`CheckpointError` naming the ``family``, the anchors, the ``layouts`` it
    reads and some of the keys when none does.
    """
    found = find_prefix(sd.keys(), tuple(anchors))
    if found is None:
        sample = ", ".join(sorted(sd)[:8])
        raise CheckpointError(
            f"not a {family} checkpoint: no key ends with any of "
            f"{', '.join(repr(a) for a in anchors)} ({layouts} layouts); "
            f"it has {len(sd)} keys such as: {sample}"
        )
    prefix, anchor = found
    return prefix, anchors[anchor]


@dataclass(frozen=True)
class ArchHint:
    """An optional part of a family's architecture, recognised by its tensor names (a row of
    the table each family keeps beside its converter).

    ``pattern``: regex searched in names of the model's layout; ``part``: what it is
    ("layer scale"); ``add``: the constructor argument that gives the model the part, or a
    function of the checkpoint's ``{name: shape}`` returning it (``reg_tokens=4``);
    ``remove``: the argument that removes it, or None where a model part the checkpoint lacks
    keeps initial values that change nothing (zero biases, zero relative-position tables).
    """

    pattern: str
    part: str
    add: str | Callable[[dict[str, tuple]], str]
    remove: str | None = None


@dataclass
class ConvertedCheckpoint:
    """A checkpoint renamed into a model's layout by a family converter.

    ``ignored``: source keys knowingly dropped (classifier heads, mask tokens ...);
    ``notes``: human-readable remarks (resized position embeddings ...);
    ``hints``: the family's :class:`ArchHint` table, used to name the argument to set when
    the checkpoint has parts the model lacks or the reverse.
    """

    state_dict: dict[str, torch.Tensor]
    source_format: str
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hints: Sequence[ArchHint] = ()


@dataclass
class LoadReport:
    """What loading a checkpoint did. Shapes are tuples; names are in the model's layout."""

    source_format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[tuple[str, tuple]] = field(default_factory=list)  # (name, model shape)
    unexpected: list[tuple[str, tuple]] = field(default_factory=list)  # (name, ckpt shape)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, ckpt, model)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model tensor was loaded and nothing was left over or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors from a {self.source_format} checkpoint"
            + ("" if self.ok else " (incomplete)")
        ]
        if self.mismatched:
            lines.append(f"shape mismatches ({len(self.mismatched)}):")
            lines += [
                f"  {n}: checkpoint {_fmt_shape(c)} vs model {_fmt_shape(m)}"
                for n, c, m in self.mismatched
            ]
        if self.missing:
            lines.append(f"missing in checkpoint ({len(self.missing)}):")
            lines += [f"  {n} {_fmt_shape(s)}" for n, s in self.missing]
        if self.unexpected:
            lines.append(f"unexpected in checkpoint ({len(self.unexpected)}):")
            lines += [f"  {n} {_fmt_shape(s)}" for n, s in self.unexpected]
        if self.ignored:
            shown = ", ".join(self.ignored[:12])
            more = f", ... ({len(self.ignored) - 12} more)" if len(self.ignored) > 12 else ""
            lines.append(f"ignored ({len(self.ignored)}): {shown}{more}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


_BLOCK = re.compile(r"^(?:.*\.)?blocks\.\d+")


def _block_of(name: str) -> str | None:
    """``stages.2.blocks.5.attn.qkv.weight`` -> ``stages.2.blocks.5``; None outside blocks."""
    match = _BLOCK.match(name)
    return match.group(0) if match else None


def _examples(names: list[str], limit: int = 3) -> str:
    more = f", ... {len(names)} tensors" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _architecture_problems(report: LoadReport, converted: ConvertedCheckpoint) -> list[str]:
    """Unexpected tensors, and missing ones of an optional part, as arguments to set."""
    shapes = {n: tuple(t.shape) for n, t in converted.state_dict.items()}
    unexplained = [n for n, _ in report.unexpected]
    problems = []
    for hint in converted.hints:
        extra = [n for n in unexplained if re.search(hint.pattern, n)]
        if extra:
            unexplained = [n for n in unexplained if n not in extra]
            add = hint.add(shapes) if callable(hint.add) else hint.add
            problems.append(
                f"the checkpoint has {hint.part} ({_examples(extra)}) that the model lacks: "
                f"set {add}"
            )
        lacking = [n for n, _ in report.missing if re.search(hint.pattern, n)]
        if lacking and hint.remove:
            problems.append(
                f"the model has {hint.part} ({_examples(lacking)}) that the checkpoint lacks "
                f"(they would keep their initial values): set {hint.remove}"
            )
    if unexplained:
        problems.append(
            f"the checkpoint has {len(unexplained)} tensors the model has no place for "
            f"({_examples(unexplained)}): a checkpoint of another architecture variant? (to "
            "drop them on purpose, pass load_pretrained a state dict without them)"
        )
    return problems


def load_converted(
    model: nn.Module,
    converted: ConvertedCheckpoint,
    strict: bool = False,
    min_loaded: float = 0.5,
) -> LoadReport:
    """Check ``converted`` against ``model``'s state dict, then load it in place.

    Raises :class:`CheckpointError` (with the full report) before touching the model when any
    shape differs; when the checkpoint has a tensor the model has no place for and the
    converter did not knowingly ignore it; when the model has an optional part (an
    :class:`ArchHint` with ``remove``) the checkpoint lacks; when fewer than ``min_loaded`` of
    the model's parameter elements would be loaded (a checkpoint of another family or size);
    when whole transformer blocks (``...blocks.<i>``, none of their tensors in the checkpoint)
    would stay at their initial weights (a
    shallower model's checkpoint); or, if ``strict``, when any key is missing. Otherwise
    loads what matches and logs the report (other missing tensors keep their initial values,
    e.g. per-level output norms that classification checkpoints do not have).
    """
    own = model.state_dict()
    sd = converted.state_dict
    report = LoadReport(
        converted.source_format, ignored=list(converted.ignored), notes=list(converted.notes)
    )
    for name, tensor in sd.items():
        if name not in own:
            report.unexpected.append((name, tuple(tensor.shape)))
        elif tuple(tensor.shape) != tuple(own[name].shape):
            report.mismatched.append((name, tuple(tensor.shape), tuple(own[name].shape)))
        else:
            report.loaded.append(name)
    report.missing = [(n, tuple(t.shape)) for n, t in own.items() if n not in sd]

    param_names = {n for n, _ in model.named_parameters()}
    total = sum(own[n].numel() for n in param_names) or 1
    covered = sum(own[n].numel() for n in report.loaded if n in param_names) / total
    problems = []
    if report.mismatched:
        problems.append("tensor shapes differ (a checkpoint of another model size?)")
    loaded_blocks = {_block_of(n) for n in report.loaded}
    missing_blocks = sorted(
        {b for n, _ in report.missing if (b := _block_of(n)) and b not in loaded_blocks}
    )
    if missing_blocks:
        shown = ", ".join(missing_blocks[:6]) + (" ..." if len(missing_blocks) > 6 else "")
        problems.append(
            f"the checkpoint has no weights for {len(missing_blocks)} of the model's blocks "
            f"({shown}): a checkpoint of a shallower model?"
        )
    if covered < min_loaded:
        problems.append(
            f"only {covered:.0%} of the model's parameters would be loaded "
            f"(a checkpoint of another family or size?)"
        )
    else:  # a checkpoint of this family: name the arguments that make it fit
        problems += _architecture_problems(report, converted)
    if strict and report.missing:
        problems.append("strict=True and keys are missing")
    if problems:
        raise CheckpointError(
            f"cannot load this {converted.source_format} checkpoint into "
            f"{type(model).__name__}:\n- " + "\n- ".join(problems) + f"\n{report}"
        )
    with torch.no_grad():
        for name in report.loaded:
            own[name].copy_(sd[name])
    log = logger.info if report.ok else logger.warning
    log("%s: %s", type(model).__name__, report)
    return report
