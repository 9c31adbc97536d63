"""The GPU check's shared pieces (``benchmarks/gpu_check.py``): statuses, relative-error
comparisons, and the memory helpers the sections call between runs.

``ctx`` below is the run's ``SimpleNamespace`` built by ``gpu_check.main`` (``device``,
``device_type``, ``quick``, sizes, ``progress``).
"""

from __future__ import annotations

import gc
import math

import torch

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"


# ---------------------------------------------------------------- comparisons


def abs_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| (inf where ``got`` has a NaN/inf)."""
    diff = (got.detach().double() - ref.detach().double()).abs().max().item()
    return diff if math.isfinite(diff) else math.inf


def rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / max |ref| (inf where ``got`` has a NaN/inf)."""
    return abs_error(got, ref) / max(ref.detach().double().abs().max().item(), 1e-12)


def compare(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], tol) -> dict:
    """Each tensor of ``got`` against the same key of ``ref`` -> ``{'errors': {key: relative
    error}, 'abs_errors': {key: max abs difference}, 'tol': tol, 'status'}``: PASS if every
    relative error is within ``tol`` (a float, or a float per key), else FAIL."""
    errors = {key: rel_error(got[key], ref[key]) for key in ref}
    bound = tol if isinstance(tol, dict) else dict.fromkeys(errors, tol)
    ok = all(errors[key] <= bound[key] for key in errors)
    abs_errors = {key: abs_error(got[key], ref[key]) for key in ref}
    return dict(errors=errors, abs_errors=abs_errors, tol=tol, status=PASS if ok else FAIL)


def judge(ok: bool, applies: bool = True) -> str:
    """PASS / FAIL, or INFO where the threshold does not apply (tiny --quick sizes)."""
    return (PASS if ok else FAIL) if applies else INFO


def overall(statuses: list[str]) -> str:
    """A section's status: FAIL if any check failed, else PASS if any passed, else INFO."""
    if FAIL in statuses:
        return FAIL
    return PASS if PASS in statuses else (INFO if INFO in statuses else SKIP)


def error_line(err: BaseException) -> str:
    """'<type>: <first line of the message>' of an exception, for a table cell."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def release(ctx) -> None:
    """Frees what the last run left: Python garbage, then cached CUDA memory."""
    gc.collect()
    if ctx.device_type == "cuda":
        torch.cuda.empty_cache()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
