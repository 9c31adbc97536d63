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

This module is the one place that runs the kernels (each takes ``(q, k, v, bias,
mask, dropout_p, scale)`` already validated, bias cast to q's dtype, scale
resolved). :mod:`visionfm.ops.attention_select` checks the inputs and chooses
the backend (its public names are re-exported here). Implementation notes:

- ``sdpa`` on CPU with a bias needing a gradient: ``_SdpaBiasGrad`` recomputes
  the probabilities in blocks of about ``BLOCK_ELEMENTS`` elements, following
  FlashAttention's backward (Dao et al., 2022).
- ``xformers``: the adapter hands ``memory_efficient_attention`` what it
  documents: (B, N, heads, D) operands with head dims zero-padded to a multiple
  of 8 if needed, and a (B, heads, Nq, Nk) bias with 16-byte aligned rows,
  broadcast by stride 0 (materialised only when it needs a gradient).

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

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .attention_select import (  # noqa: F401  (re-exported: the public API lives here)
    BACKENDS,
    ENV_VAR,
    check_backend,
    explain_backends,
    needs_bias_grad,
    select_backend,
    validate,
    warn_once,
)

# Query rows per block in the chunked CPU backward are chosen so that one
# (B, heads, rows, Nk) block holds about this many elements (16 MiB in fp32).
# Read at every backward: tests lower it to run several blocks on tiny inputs.
BLOCK_ELEMENTS = 1 << 22
# xformers reads attn_bias rows and q/k/v head dims aligned to 16 bytes: 8
# elements covers every dtype it supports (fp32 needs 4, fp16/bf16 need 8).
_XFORMERS_ALIGN = 8


# ---------------------------------------------------------------- helpers


def _as_4d(t: torch.Tensor) -> torch.Tensor:
    """View a tensor broadcastable to (B, heads, Nq, Nk) as 4-D (leading 1s)."""
    return t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))


def _fold_mask(
    bias: torch.Tensor | None, mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """One additive 4-D float tensor for ``bias`` and ``mask`` (masked-out = -inf).

    Materialised only at the broadcast shape of the two (e.g. (1, heads, N, N)
    bias with a (B, 1, 1, N) padding mask gives (B, heads, N, N)).
    """
    if mask is None:
        return None if bias is None else _as_4d(bias)  # SDPA refuses a 1-D attn_mask
    neg_inf = torch.tensor(float("-inf"), dtype=dtype, device=mask.device)
    if bias is None:
        return torch.zeros((), dtype=dtype, device=mask.device).where(mask, neg_inf)
    return bias.where(mask, neg_inf)


# ---------------------------------------------------------------- math


def math_attention(q, k, v, bias, mask, dropout_p, scale):
    """The explicit matmul-softmax-matmul reference; arguments as in :func:`sdpa_attention`."""
    logits = torch.matmul(q * scale, k.transpose(-2, -1))  # (B, h, Nq, Nk)
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    weights = logits.softmax(dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    return torch.matmul(weights, v)  # (B, h, Nq, Dv)


# ---------------------------------------------------------------- sdpa


def sdpa_attention(q, k, v, bias, mask, dropout_p, scale):
    """PyTorch SDPA; on CPU a bias needing a gradient takes :class:`_SdpaBiasGrad`.

    q (B, heads, Nq, D), k (B, heads, Nk, D), v (B, heads, Nk, Dv); bias (float,
    q's dtype) and mask (bool, True = attend) broadcastable to (B, heads, Nq, Nk)
    or None; scale a float. Returns (B, heads, Nq, Dv). Inputs are validated by
    :func:`visionfm.ops.attention.attention`, not here.
    """
    if needs_bias_grad(bias) and q.device.type == "cpu" and dropout_p == 0:
        return _SdpaBiasGrad.apply(q, k, v, bias, mask, scale)
    attn_mask = mask if bias is None else _fold_mask(bias, mask, q.dtype)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale
    )


def _merge_bh(t: torch.Tensor) -> torch.Tensor:
    """(B, h, X, Y) -> (B * h, X, Y); a view whenever the strides allow."""
    return t.reshape(t.shape[0] * t.shape[1], t.shape[2], t.shape[3])


def _bias_3d(bias4: torch.Tensor, b: int, h: int) -> torch.Tensor | None:
    """A 4-D bias viewed as 3-D and broadcastable to (B * h, Nq, Nk), or None where no
    view does (shared over the batch but not over heads with B > 1, or expanded)."""
    bb, bh = bias4.shape[:2]
    if (bb, bh) == (b, h) or bb * bh == 1 or (b == 1 and bh == h):
        try:
            return bias4.view(bb * bh, bias4.shape[2], bias4.shape[3])
        except RuntimeError:  # strides do not merge: add it in 4-D instead of copying
            return None
    return None


def _rows(t: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    """Query rows [start, stop) along dim -2 (unchanged if broadcast over queries)."""
    if t is None or t.shape[-2] == 1:
        return t
    return t[..., start:stop, :]


def _reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a (B, h, rows, Nk) gradient over the dims where ``shape`` broadcasts (size 1)."""
    dims = [d for d in range(4) if shape[d] == 1 and grad.shape[d] != 1]
    return grad.sum(dim=dims, keepdim=True) if dims else grad


class _SdpaBiasGrad(torch.autograd.Function):
    """SDPA forward + exact backward in blocks of query rows, with the bias gradient.

    The probabilities P = softmax(q k^T scale + bias, masked) are recomputed per
    block of query rows instead of stored, as in FlashAttention's backward:
        dV = P^T dO,  dS = P * (dO V^T - rowsum(dO * O)),
        dQ = dS K scale,  dK = dS^T Q scale,  dBias = dS (summed over broadcast dims).
    Work happens on (B * heads, rows, Nk) blocks in two reused buffers; when the
    bias has the full (B, heads, Nq, Nk) shape, dS is written straight into its
    gradient.
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, mask, scale):
        # detach: a bias flagged requires_grad would send SDPA to its math fallback.
        attn_mask = _fold_mask(bias.detach(), mask, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
        ctx.save_for_backward(q, k, v, bias, mask, out)
        ctx.scale = scale
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, bias, mask, out = ctx.saved_tensors
        scale = ctx.scale
        need_q, need_k, need_v, need_bias = ctx.needs_input_grad[:4]
        b, h, nq, nk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        low = q.dtype in (torch.float16, torch.bfloat16)
        acc = torch.float32 if low else q.dtype  # accumulators across blocks

        q3, k3, v3 = _merge_bh(q), _merge_bh(k), _merge_bh(v)  # (B*h, N, D|Dv)
        do3 = _merge_bh(grad_out.to(q.dtype))
        neg_delta = -(do3.to(acc) * _merge_bh(out).to(acc)).sum(-1, keepdim=True)  # (B*h, Nq, 1)
        neg_delta = neg_delta.to(q.dtype)
        bias4 = _as_4d(bias)
        bias3 = _bias_3d(bias4, b, h)
        mask4 = None if mask is None else _as_4d(mask)

        dq3 = q3.new_empty(q3.shape) if need_q else None
        dk3 = k3.new_zeros(k3.shape, dtype=acc) if need_k else None
        dv3 = v3.new_zeros(v3.shape, dtype=acc) if need_v else None
        dbias = ds_into = None
        if need_bias:
            if tuple(bias4.shape) == (b, h, nq, nk):  # no reduction: dS is the gradient
                dbias = bias4.new_empty(bias4.shape, dtype=q.dtype)
                ds_into = _merge_bh(dbias)
            elif bias4.shape[2] == nq:  # reduced over batch/heads/keys, rows written once
                dbias = bias4.new_empty(bias4.shape, dtype=acc)
            else:  # broadcast over queries: accumulated across blocks
                dbias = bias4.new_zeros(bias4.shape, dtype=acc)

        def accumulate(total, x, y, alpha):  # total += alpha * x @ y
            if total.dtype == x.dtype:
                total.baddbmm_(x, y, alpha=alpha)
            else:
                total += torch.bmm(x, y).mul_(alpha)

        rows = max(1, BLOCK_ELEMENTS // max(1, b * h * nk))
        k3_t, v3_t = k3.transpose(1, 2), v3.transpose(1, 2)
        buffers = None
        for start in range(0, nq, rows):
            stop = min(nq, start + rows)
            if buffers is None or stop - start != buffers[0].shape[1]:
                buffers = [q3.new_empty((b * h, stop - start, nk)) for _ in range(2)]
            s, p = buffers  # (B*h, rows, Nk) each
            q_blk, do_blk = q3[:, start:stop], do3[:, start:stop]

            # P for this block: softmax(q k^T scale + bias, masked)
            if bias3 is not None:
                torch.baddbmm(_rows(bias3, start, stop), q_blk, k3_t, alpha=scale, out=s)
            else:
                torch.bmm(q_blk, k3_t, out=s).mul_(scale)
                s.view(b, h, stop - start, nk).add_(_rows(bias4, start, stop))
            if mask4 is not None:
                s.view(b, h, stop - start, nk).masked_fill_(
                    _rows(mask4, start, stop).logical_not(), float("-inf")
                )
            torch.softmax(s, dim=-1, out=p)

            if need_v:
                accumulate(dv3, p.transpose(1, 2), do_blk, 1.0)
            # dS = P * (dO V^T - rowsum(dO * O))
            torch.baddbmm(neg_delta[:, start:stop], do_blk, v3_t, out=s)
            if ds_into is not None:
                ds = torch.mul(s, p, out=ds_into[:, start:stop])
            else:
                ds = s.mul_(p)
                if need_bias:
                    g = _reduce_to(ds.view(b, h, stop - start, nk), bias4.shape)
                    if bias4.shape[2] == nq:  # as allocated above (also when nq == 1)
                        dbias[:, :, start:stop] = g
                    else:
                        dbias += g
            if need_q:
                torch.mul(torch.bmm(ds, k3), scale, out=dq3[:, start:stop])
            if need_k:
                accumulate(dk3, ds.transpose(1, 2), q_blk, scale)

        def unmerge(t3, like):
            return None if t3 is None else t3.view(like.shape).to(like.dtype)

        dbias = None if dbias is None else dbias.to(bias.dtype).reshape(bias.shape)
        return unmerge(dq3, q), unmerge(dk3, k), unmerge(dv3, v), dbias, None, None


# ---------------------------------------------------------------- xformers


def _xformers_bias(folded: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """``folded`` laid out as xformers wants a tensor attn_bias: exactly ``shape`` =
    (B, heads, Nq, Nk), last dim contiguous, rows starting on 16-byte boundaries.

    Dims of size 1 stay broadcast (stride 0, no copy) unless the bias needs a
    gradient: xformers' backward writes a full (B, heads, Nq, Nk) gradient, so
    then the bias is materialised at full size to keep its layout plain.
    """
    b4 = _as_4d(folded)
    nk = shape[3]
    aligned = (
        b4.shape[3] == nk
        and b4.stride(3) == 1
        and (b4.shape[2] == 1 or b4.stride(2) % _XFORMERS_ALIGN == 0)
        and b4.storage_offset() % _XFORMERS_ALIGN == 0
    )
    if folded.requires_grad:
        if b4.shape == shape and aligned and b4.is_contiguous():
            return b4
        b4 = b4.expand(shape)
    elif aligned:
        return b4.expand(shape)
    pad = (-nk) % _XFORMERS_ALIGN
    # Padding the last dim and slicing it back keeps every row 8-aligned.
    padded = F.pad(b4.expand(*b4.shape[:3], nk), (0, pad))  # (b|1, h|1, Nq|1, Nk + pad)
    return padded[..., :nk].expand(shape)


def _xformers_operand(t: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads, d') as xformers takes it: unit-stride last dim,
    d' = d zero-padded to a multiple of 8 (its kernels need 16-byte aligned rows).
    Zero columns change neither q.k nor, once sliced off, the output."""
    t = t.transpose(1, 2)
    pad = (-t.shape[-1]) % _XFORMERS_ALIGN
    if pad:
        return F.pad(t, (0, pad))
    return t if t.stride(-1) == 1 else t.contiguous()


def xformers_attention(q, k, v, bias, mask, dropout_p, scale):
    """``xformers.ops.memory_efficient_attention``; arguments as in :func:`sdpa_attention`.

    Raises xformers' NotImplementedError when it has no kernel for the call.
    """
    import xformers.ops as xops

    b, h, nq, nk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    folded = _fold_mask(bias, mask, q.dtype)
    attn_bias = None if folded is None else _xformers_bias(folded, (b, h, nq, nk))
    out = xops.memory_efficient_attention(  # (B, Nq, h, Dv'); scale is always explicit
        _xformers_operand(q),
        _xformers_operand(k),
        _xformers_operand(v),
        attn_bias=attn_bias,
        p=dropout_p,
        scale=scale,
    )
    return out[..., : v.shape[-1]].transpose(1, 2)  # (B, h, Nq, Dv)


_IMPLS = {"math": math_attention, "sdpa": sdpa_attention, "xformers": xformers_attention}


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
    validate(q, k, v, bias, mask, dropout_p)
    if bias is not None and bias.dtype != q.dtype:
        bias = bias.to(q.dtype)  # e.g. an fp32 bias table under bf16 autocast
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    explicit = check_backend(backend) is not None
    name = select_backend(q, backend, bias)
    if name != "xformers" or explicit:
        return _IMPLS[name](q, k, v, bias, mask, dropout_p, scale)
    try:
        return xformers_attention(q, k, v, bias, mask, dropout_p, scale)
    except NotImplementedError as err:  # xformers has no kernel for these shapes/options
        reason = str(err).splitlines()[0]
        warn_once("xformers", reason, f"xformers cannot run this call ({reason}); using sdpa")
        return sdpa_attention(q, k, v, bias, mask, dropout_p, scale)
