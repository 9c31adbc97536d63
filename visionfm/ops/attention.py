"""Softmax attention with one call and three interchangeable backends.

Scaled dot-product attention (Vaswani et al., "Attention Is All You Need",
2017), run memory-efficiently in the manner of FlashAttention (Dao et al.,
2022) and xFormers' ``memory_efficient_attention`` (Rabe & Staats,
"Self-attention Does Not Need O(n^2) Memory", 2021).

``attention(q, k, v, bias=None, mask=None, dropout_p=0.0, scale=None, backend=None)``
is the only place in visionfm that runs softmax attention. Backends:

- ``xformers``: ``xformers.ops.memory_efficient_attention``; CUDA tensors only.
  In automatic choice, a call xformers has no kernel for falls back to sdpa
  (logged once); a kernel missing only for the backward (e.g. fp32 with
  head_dim > 64 on sm86) is reported by xformers at ``backward()`` time: give
  such a module ``backend="sdpa"``.
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (flash /
  memory-efficient / C++ kernels chosen by PyTorch). One exception, on CPU:
  when ``bias`` needs a gradient (learned relative position bias in training)
  PyTorch's CPU kernel cannot return it and falls back to its own math path,
  which stores the (B, heads, Nq, Nk) probabilities. We instead run SDPA's
  forward and an exact backward that recomputes the probabilities in blocks of
  query rows, so memory stays O(block) plus the bias gradient itself. (With
  dropout_p > 0 that case still takes PyTorch's math fallback: the dropout
  pattern cannot be recovered for a recomputation.)
- ``math``: the explicit matmul-softmax-matmul reference that tests hold the
  others against.

The kernels live in :mod:`visionfm.ops.attention_backends`; this module checks
the inputs, chooses the backend and dispatches.

The backend is chosen per call from the tensors' device and dtype and what is
installed, never at import time. Priority: the ``backend`` argument (a
module's override; refused with the reason if it cannot run these tensors),
then the ``VISIONFM_ATTN`` environment variable, read at every call (falls
back, logging the reason once, if it cannot run them), then automatic
(xformers for CUDA when installed, else sdpa). ``"auto"`` or None mean
automatic. ``explain_backends(q)`` tells why each backend would or would not
be used.

Semantics shared by every backend:
    q: (B, heads, Nq, D), k: (B, heads, Nk, D), v: (B, heads, Nk, Dv)
    bias: additive float tensor broadcastable to (B, heads, Nq, Nk)
        (relative position bias, ALiBi, window masks given as -inf/0 ...);
        gradients flow into it on every backend.
    mask: bool tensor broadcastable to (B, heads, Nq, Nk); True = may attend.
        Every query must be left at least one key it may attend (the output
        of a fully masked row is undefined: NaN on ``math``, 0 or NaN elsewhere).
    scale: logits multiplier, default D ** -0.5
    dropout_p: dropout on the attention weights (pass 0.0 in eval mode).
        Backends draw different random numbers, so only the distribution,
        not the values, agree across backends when dropout_p > 0.
    returns (B, heads, Nq, Dv)

Per-module override: modules take the backend name as a constructor argument
(None = the global default), check it once and pass it on every call::

    class Attention(nn.Module):
        def __init__(self, dim, num_heads, attn_drop=0.0, attn_backend=None):
            super().__init__()
            self.attn_backend = check_backend(attn_backend)  # unknown names fail here
            ...

        def forward(self, x):  # x: (B, N, C)
            q, k, v = ...  # each (B, heads, N, head_dim)
            x = attention(q, k, v, bias=self.rel_pos_bias(),
                          dropout_p=self.attn_drop if self.training else 0.0,
                          backend=self.attn_backend)
"""

from __future__ import annotations

import logging
import math
import os

import torch

from . import attention_backends as backends

BACKENDS = ("xformers", "sdpa", "math")
ENV_VAR = "VISIONFM_ATTN"

logger = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()  # (what, reason) pairs already logged; tests empty it

_IMPLS = {
    "math": backends.math_attention,
    "sdpa": backends.sdpa_attention,
    "xformers": backends.xformers_attention,
}


# ---------------------------------------------------------------- selection


def _warn_once(what: str, reason: str, message: str) -> None:
    if (what, reason) not in _warned:
        _warned.add((what, reason))
        logger.warning(message)


def _why_not(backend: str, q: torch.Tensor, bias_needs_grad: bool = False) -> str | None:
    """Reason ``backend`` cannot run on tensors like ``q``; None if it can."""
    if backend in ("math", "sdpa"):
        return None
    if backend == "xformers":  # looked up on the module: tests replace this seam
        return backends.xformers_unavailable_reason(q, bias_needs_grad)
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
    needs_grad = backends.needs_bias_grad(bias)
    return {name: _why_not(name, q, needs_grad) for name in BACKENDS}


def select_backend(
    q: torch.Tensor, backend: str | None = None, bias: torch.Tensor | None = None
) -> str:
    """The backend a call with ``q`` (and ``bias``) and this override uses (see module doc).

    Raises ValueError for unknown names (argument or environment variable) and
    for an explicitly requested backend that cannot run these tensors.
    """
    needs_grad = backends.needs_bias_grad(bias)
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
        _warn_once(env, reason, f"{ENV_VAR}={env} cannot run here ({reason}); using the default")
    return "xformers" if _why_not("xformers", q, needs_grad) is None else "sdpa"


# ---------------------------------------------------------------- validation


def _validate(
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


# ---------------------------------------------------------------- entry point


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T * scale + bias, masked) v``.

    q (B, heads, Nq, D), k (B, heads, Nk, D), v (B, heads, Nk, Dv); bias and
    mask broadcastable to (B, heads, Nq, Nk); returns (B, heads, Nq, Dv).
    Semantics, backend choice and errors are described in the module doc.
    """
    _validate(q, k, v, bias, mask, dropout_p)
    if bias is not None and bias.dtype != q.dtype:
        bias = bias.to(q.dtype)  # e.g. an fp32 bias table under bf16 autocast
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    explicit = check_backend(backend) is not None
    name = select_backend(q, backend, bias)
    if name != "xformers" or explicit:
        return _IMPLS[name](q, k, v, bias, mask, dropout_p, scale)
    try:
        return backends.xformers_attention(q, k, v, bias, mask, dropout_p, scale)
    except NotImplementedError as err:  # xformers has no kernel for these shapes/options
        reason = str(err).splitlines()[0]
        _warn_once("xformers", reason, f"xformers cannot run this call ({reason}); using sdpa")
        return backends.sdpa_attention(q, k, v, bias, mask, dropout_p, scale)
