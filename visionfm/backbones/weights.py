"""Checkpoint reading and loading reports shared by every backbone family.

Flow of ``Backbone.load_pretrained(source)``:

1. :func:`read_checkpoint` reads ``.pth`` / ``.pt`` / ``.bin`` (``torch.load`` with
   ``weights_only=True``), ``.safetensors``, a Hugging Face model folder, or takes a dict
   already in memory, and unwraps ``state_dict`` / ``model`` / ``module`` containers and
   DDP's ``module.`` prefix -> ``dict[str, Tensor]``.
2. The family's converter (e.g. ``vit_convert.convert_vit_checkpoint``) renames and
   reshapes it into this model's layout -> :class:`ConvertedCheckpoint`.
3. :func:`load_converted` checks every key and shape against the model, refuses what
   cannot load (:class:`CheckpointError` listing every mismatch with shapes), loads the
   rest and returns a :class:`LoadReport` (also logged).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "ConvertedCheckpoint",
    "LoadReport",
    "find_prefix",
    "load_converted",
    "read_checkpoint",
    "unwrap_state_dict",
]

_CONTAINER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict")
_HF_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint cannot be read, is not of the expected family, or does not fit the model."""


def _fmt_shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def read_checkpoint(source: str | os.PathLike | Mapping) -> dict[str, torch.Tensor]:
    """Read a checkpoint into a flat ``{name: tensor}`` dict (on CPU for files).

    ``source``: a file (``.safetensors``; anything else through ``torch.load(weights_only=True)``),
    a folder holding ``model.safetensors`` or ``pytorch_model.bin``, or a mapping in memory.
    """
    if isinstance(source, Mapping):
        return unwrap_state_dict(source)
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
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure means a corrupt or foreign file
        hint = ""
        if "weights_only" in str(exc):
            hint = (
                "\nThe file pickles Python objects besides tensors (e.g. training arguments). "
                "If you trust it, re-save just the weights: "
                "torch.save(torch.load(path, weights_only=False)['model'], new_path)."
            )
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}"
        ) from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return unwrap_state_dict(obj, where=str(path))


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


@dataclass
class ConvertedCheckpoint:
    """A checkpoint renamed into a model's layout by a family converter.

    ``ignored``: source keys knowingly dropped (classifier heads, mask tokens ...);
    ``notes``: human-readable remarks (resized position embeddings ...).
    """

    state_dict: dict[str, torch.Tensor]
    source_format: str
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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


def load_converted(
    model: nn.Module,
    converted: ConvertedCheckpoint,
    strict: bool = False,
    min_loaded: float = 0.5,
) -> LoadReport:
    """Check ``converted`` against ``model``'s state dict, then load it in place.

    Raises :class:`CheckpointError` (with the full report) before touching the model when any
    shape differs, when fewer than ``min_loaded`` of the model's parameter elements would be
    loaded (a checkpoint of another family or size), when whole transformer blocks
    (``...blocks.<i>``) would stay at their initial weights (a shallower model's checkpoint),
    or, if ``strict``, when any key is missing or unexpected. Otherwise loads what matches and logs the report.
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
    missing_blocks = sorted({_block_of(n) for n, _ in report.missing if _block_of(n)})
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
    if strict and (report.missing or report.unexpected):
        problems.append("strict=True and keys are missing or unexpected")
    if problems:
        raise CheckpointError(
            f"cannot load this {converted.source_format} checkpoint into "
            f"{type(model).__name__}: {'; '.join(problems)}\n{report}"
        )
    with torch.no_grad():
        for name in report.loaded:
            own[name].copy_(sd[name])
    log = logger.info if report.ok else logger.warning
    log("%s: %s", type(model).__name__, report)
    return report
