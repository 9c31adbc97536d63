"""Softmax attention with one call and three interchangeable backends.

``attention(q, k, v, bias=None, mask=None, dropout_p=0.0, scale=None, backend=None)``
is the only place in visionfm that runs softmax attention. Backends:

- ``xformers``: ``xformers.ops.memory_efficient_attention``; CUDA tensors only.
- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (flash /
  memory-efficient / C++ kernels chosen by PyTorch).
- ``math``: the explicit matmul-softmax-matmul reference that tests hold the
  others against.

The backend is chosen per call from the tensors' device and dtype and what is
installed, never at import time. Priority: the ``backend`` argument (a
module's override; refused with the reason if it cannot run these tensors),
then the ``VISIONFM_ATTN`` environment variable (falls back, logging why, if it
cannot), then automatic (xformers for CUDA when installed, else sdpa).
``explain_backends(...)`` tells, for given inputs, why each backend would or
would not be used.

Semantics shared by every backend:
    q: (B, heads, Nq, D), k: (B, heads, Nk, D), v: (B, heads, Nk, Dv)
    bias: additive float tensor broadcastable to (B, heads, Nq, Nk)
        (relative position bias, ALiBi, window masks given as -inf/0 ...)
    mask: bool tensor broadcastable to (B, heads, Nq, Nk); True = may attend.
        Every query must be left at least one key it may attend.
    scale: logits multiplier, default D ** -0.5
    dropout_p: dropout on the attention weights (pass 0.0 in eval mode)
    returns (B, heads, Nq, Dv)
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os

import torch
import torch.nn.functional as F

BACKENDS = ("xformers", "sdpa", "math")
ENV_VAR = "VISIONFM_ATTN"

logger = logging.getLogger(__name__)
_warned: set[str] = set()


def _xformers_available() -> bool:
    return importlib.util.find_spec("xformers") is not None


def _why_not(backend: str, q: torch.Tensor) -> str | None:
    """Reason ``backend`` cannot run on tensors like ``q``; None if it can."""
    if backend == "math":
        return None
    if backend == "sdpa":
        return None
    if backend == "xformers":
        if not q.is_cuda:
            return f"xformers needs CUDA tensors, got device {q.device}"
        if not _xformers_available():
            return "xformers is not installed (pip install visionfm[xformers])"
        if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            return f"xformers does not support dtype {q.dtype}"
        return None
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {BACKENDS}")


def explain_backends(q: torch.Tensor) -> dict[str, str | None]:
    """For each backend: None if it can run tensors like ``q``, else the reason it cannot."""
    return {name: _why_not(name, q) for name in BACKENDS}


def select_backend(q: torch.Tensor, backend: str | None = None) -> str:
    """The backend a call with ``q`` and this override will use (see module docstring)."""
    if backend is not None:
        reason = _why_not(backend, q)
        if reason is not None:
            raise ValueError(f"attention backend {backend!r} was requested but cannot run: {reason}")
        return backend
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env and env != "auto":
        reason = _why_not(env, q)
        if reason is None:
            return env
        if env not in _warned:
            _warned.add(env)
            logger.warning("%s=%s ignored for this call: %s", ENV_VAR, env, reason)
    return "xformers" if _why_not("xformers", q) is None else "sdpa"


def _combined_bias(
    bias: torch.Tensor | None, mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """Fold a boolean mask into an additive bias (masked-out = -inf)."""
    if mask is None:
        return bias
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = attend), got {mask.dtype}")
    neg = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return neg if bias is None else bias.to(dtype) + neg


def _math_attention(q, k, v, bias, mask, dropout_p, scale):
    logits = torch.matmul(q * scale, k.transpose(-2, -1))  # (B, h, Nq, Nk)
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    weights = logits.softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    return torch.matmul(weights, v)


def _sdpa(q, k, v, bias, mask, dropout_p, scale):
    attn_mask = mask if bias is None else _combined_bias(bias, mask, q.dtype)
    return F.scaled_dot_product_attention(  # noqa: visionfm-attention (the one allowed call)
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale
    )


def _xformers(q, k, v, bias, mask, dropout_p, scale):
    import xformers.ops as xops

    b, h, nq, nk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    attn_bias = _combined_bias(bias, mask, q.dtype)
    if attn_bias is not None:
        # xformers wants a (B, h, Nq, Nk) bias whose last dim is 8-aligned in memory.
        pad = (-nk) % 8
        full = torch.zeros(b, h, nq, nk + pad, dtype=q.dtype, device=q.device)
        full[..., :nk] = attn_bias
        attn_bias = full[..., :nk]
    out = xops.memory_efficient_attention(  # (B, Nq, h, Dv)
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
        attn_bias=attn_bias, p=dropout_p, scale=scale,
    )
    return out.transpose(1, 2)


_IMPLS = {"math": _math_attention, "sdpa": _sdpa, "xformers": _xformers}


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
    """Softmax attention ``softmax(q k^T * scale + bias, masked) v``; shapes in the module doc."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be (B, heads, N, D); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"q/k head dims or k/v lengths differ: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = attend), got {mask.dtype}")
    if bias is not None and bias.dtype != q.dtype:
        bias = bias.to(q.dtype)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    name = select_backend(q, backend)
    return _IMPLS[name](q, k, v, bias, mask, dropout_p, scale)
