"""Backend choice and input checks for :func:`visionfm.ops.attention.attention`.

:mod:`visionfm.ops.attention` runs the kernels (it is the one place that calls SDPA or
xformers); this module decides which one may run for given tensors and validates the
inputs first. Its public names are re-exported there, and its warnings are logged under
``visionfm.ops.attention``. :func:`xformers_unavailable_reason` is the one seam tests
replace to run the xformers path on a CPU machine against a stand-in ``xformers.ops``.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os

import torch

BACKENDS = ("xformers", "sdpa", "math")
ENV_VAR = "VISIONFM_ATTN"

logger = logging.getLogger("visionfm.ops.attention")
_warned: set[tuple[str, str]] = set()  # (what, reason) pairs already logged; tests empty it


# ---------------------------------------------------------------- xformers availability


def needs_bias_grad(bias: torch.Tensor | None) -> bool:
    """Whether a call with this bias (any shape, or None) must return its gradient."""
    return bias is not None and bias.requires_grad and torch.is_grad_enabled()


@functools.cache
def _xformers_installed() -> bool:
    # Looked up on first need (a CUDA call), never at import; cached afterwards.
    return importlib.util.find_spec("xformers") is not None


@functools.cache
def _xformers_bias_grad_reason() -> str | None:
    """Why the installed xformers cannot return a bias gradient; None if it can."""
    try:
        from xformers.ops.fmha import cutlass
    except Exception as err:  # a broken install (e.g. built for another torch) is a reason too
        return f"xformers.ops.fmha.cutlass cannot be imported ({err})"
    if not getattr(cutlass.BwOp, "SUPPORTS_ATTN_BIAS_GRAD", False):
        return "the installed xformers cannot backpropagate into attn_bias; upgrade it"
    return None


def xformers_unavailable_reason(q: torch.Tensor, bias_needs_grad: bool = False) -> str | None:
    """Why :func:`xformers_attention` cannot run tensors like ``q`` (B, heads, N, D)
    (with a bias needing a gradient if ``bias_needs_grad``); None if it can.

    The seam for tests: replaced by one returning None (with a stand-in
    ``xformers.ops`` in ``sys.modules``), it lets the xformers path run on CPU.
    """
    if not q.is_cuda:
        return f"xformers needs CUDA tensors, got device {q.device}"
    if not _xformers_installed():
        return "xformers is not installed (pip install visionfm[xformers])"
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"xformers does not support dtype {q.dtype}"
    if bias_needs_grad:
        return _xformers_bias_grad_reason()
    return None


# ---------------------------------------------------------------- selection


def warn_once(what: str, reason: str, message: str) -> None:
    if (what, reason) not in _warned:
        _warned.add((what, reason))
        logger.warning(message)


def _why_not(backend: str, q: torch.Tensor, bias_needs_grad: bool = False) -> str | None:
    """Reason ``backend`` cannot run on tensors like ``q``; None if it can."""
    if backend in ("math", "sdpa"):
        return None
    if backend == "xformers":  # a module global: tests replace this seam
        return xformers_unavailable_reason(q, bias_needs_grad)
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS} or 'auto'")


def check_backend(backend: str | None) -> str | None:
    """Validate a backend name at module construction; returns it (None for 'auto')."""
    if backend is None or backend == "auto":
        return None
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown attention backend {backend!r}; choose one of {BACKENDS} or 'auto'"
        )
    return backend


def explain_backends(q: torch.Tensor, bias: torch.Tensor | None = None) -> dict[str, str | None]:
    """For each backend: None if it can run tensors like ``q`` (and ``bias``), else why not."""
    needs_grad = needs_bias_grad(bias)
    return {name: _why_not(name, q, needs_grad) for name in BACKENDS}


def select_backend(
    q: torch.Tensor, backend: str | None = None, bias: torch.Tensor | None = None
) -> str:
    """The backend a call with ``q`` (and ``bias``) and this override uses (see module doc).

    Raises ValueError for unknown names (argument or environment variable) and
    for an explicitly requested backend that cannot run these tensors.
    """
    needs_grad = needs_bias_grad(bias)
    backend = check_backend(backend)
    if backend is not None:
        reason = _why_not(backend, q, needs_grad)
        if reason is not None:
            raise ValueError(
                f"attention backend {backend!r} was requested but cannot run: {reason}"
            )
        return backend
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env and env != "auto":
        if env not in BACKENDS:
            raise ValueError(
                f"{ENV_VAR}={env!r} is not an attention backend; choose one of {BACKENDS} or 'auto'"
            )
        reason = _why_not(env, q, needs_grad)
        if reason is None:
            return env
        warn_once(env, reason, f"{ENV_VAR}={env} cannot run here ({reason}); using the default")
    return "xformers" if _why_not("xformers", q, needs_grad) is None else "sdpa"


# ---------------------------------------------------------------- validation


def validate(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    mask: torch.Tensor | None,
    dropout_p: float,
) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "q, k, v must be (B, heads, N, head_dim); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[:2] != k.shape[:2] or k.shape[:2] != v.shape[:2]:
        raise ValueError(
            "q, k, v must share (B, heads); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            "q/k head dims or k/v lengths differ: "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not q.is_floating_point() or q.dtype != k.dtype or q.dtype != v.dtype:
        raise TypeError(f"q, k, v must share one float dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.device != k.device or q.device != v.device:
        raise ValueError(f"q, k, v are on different devices: {q.device}, {k.device}, {v.device}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    logits_shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    for name, t in (("bias", bias), ("mask", mask)):
        if t is None:
            continue
        if name == "mask" and t.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = attend), got {t.dtype}")
        if name == "bias" and not t.is_floating_point():
            raise TypeError(
                f"bias must be a float tensor, got {t.dtype} (pass boolean masks as mask=)"
            )
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
        try:
            ok = t.dim() <= 4 and torch.broadcast_shapes(t.shape, logits_shape) == logits_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not broadcast to "
                f"(B, heads, Nq, Nk) = {logits_shape}"
            )
