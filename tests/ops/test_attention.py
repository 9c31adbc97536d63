"""visionfm.ops.attention: every backend held against the math reference.

Tests go through the public ``attention()`` and its documented switches (the
``backend`` argument, ``VISIONFM_ATTN``). xformers, which cannot run here
without CUDA, is simulated by a stand-in ``xformers.ops`` that enforces its
documented input contract plus the one seam
``attention_select.xformers_unavailable_reason``.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import sys
import types

import pytest
import torch
from torch.overrides import TorchFunctionMode

from visionfm.ops import attention as attn_mod
from visionfm.ops import attention_select as select
from visionfm.ops.attention import (
    BACKENDS,
    ENV_VAR,
    attention,
    check_backend,
    explain_backends,
    select_backend,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _runnable(device: str) -> list[str]:
    reasons = explain_backends(torch.zeros(1, device=device))
    return [b for b in BACKENDS if reasons[b] is None]


# (device, backend) pairs to hold against math; math itself is the reference.
CASES = [(d, b) for d in DEVICES for b in _runnable(d) if b != "math"]
ALL_CASES = [(d, b) for d in DEVICES for b in _runnable(d)]


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(select, "_warned", set())  # "logged once" starts afresh per test


def _grads(out, inputs, seed=123):
    # Drawn in fp32 whatever the output dtype, so every dtype gets the same cotangent.
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad(out, inputs, g.to(out.device, out.dtype))


B, H, N, D = 2, 3, 10, 8  # N not a multiple of 8 on purpose
# fp32 agreement with math: CUDA kernels (xformers' cutlass) are held to
# xformers' own fp32 test tolerance; CPU kernels to near rounding.
TOL = {"cpu": dict(atol=1e-5, rtol=1e-5), "cuda": dict(atol=5e-4, rtol=1e-4)}


def _make_bias(kind, device, dtype):
    gen = torch.Generator().manual_seed(1)
    if kind is None:
        return None
    shape = {"shared": (1, H, N, N), "per_batch_head": (B, H, N, N)}[kind]
    return torch.randn(shape, generator=gen, dtype=dtype).to(device).requires_grad_()


def _make_mask(kind, device):
    if kind is None:
        return None
    if kind == "padding":  # (B, 1, 1, Nk): second image has its last 3 keys padded
        mask = torch.ones(B, 1, 1, N, dtype=torch.bool)
        mask[1, ..., -3:] = False
    else:  # "window": (1, 1, N, N) block-diagonal, windows of 4 tokens
        idx = torch.arange(N) // 4
        mask = (idx[:, None] == idx[None, :])[None, None]
    return mask.to(device)


def _qkv(device, dtype, dv=D, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, N, D, generator=gen, dtype=dtype)
    k = torch.randn(B, H, N, D, generator=gen, dtype=dtype)
    v = torch.randn(B, H, N, dv, generator=gen, dtype=dtype)
    return [t.to(device).requires_grad_() for t in (q, k, v)]


# ------------------------------------------------------------------ equality


@pytest.mark.parametrize("dv", [D, 12], ids=["dv=d", "dv!=d"])
@pytest.mark.parametrize("scale", [None, 0.3], ids=["default_scale", "custom_scale"])
@pytest.mark.parametrize("mask_kind", [None, "padding", "window"], ids=lambda m: f"mask={m}")
@pytest.mark.parametrize("bias_kind", [None, "shared", "per_batch_head"], ids=lambda b: f"bias={b}")
@pytest.mark.parametrize("device,backend", CASES)
def test_backend_matches_math(device, backend, bias_kind, mask_kind, scale, dv, monkeypatch):
    # Small row blocks so the chunked CPU backward runs several blocks (3, 3, 3, 1).
    monkeypatch.setattr(attn_mod, "BLOCK_ELEMENTS", 3 * B * H * N)
    q, k, v = _qkv(device, torch.float32, dv)
    bias = _make_bias(bias_kind, device, torch.float32)
    mask = _make_mask(mask_kind, device)
    inputs = [t for t in (q, k, v, bias) if t is not None]

    out = attention(q, k, v, bias=bias, mask=mask, scale=scale, backend=backend)
    ref = attention(q, k, v, bias=bias, mask=mask, scale=scale, backend="math")

    assert out.shape == (B, H, N, dv)
    torch.testing.assert_close(out, ref, **TOL[device])
    for g, g_ref in zip(_grads(out, inputs), _grads(ref, inputs)):
        assert g is not None and torch.isfinite(g).all()
        torch.testing.assert_close(g, g_ref, **TOL[device])


@pytest.mark.parametrize("device,backend", ALL_CASES)
def test_hand_computed(device, backend):
    """Two queries, two keys, numbers worked out by hand.

    scale 0.5, q0 = (2, 0): logits q0.k * 0.5 = (1, 0); + bias (0, 1 + ln 3) = (1, 1 + ln 3),
    i.e. weights proportional to (e, 3e) = (1/4, 3/4) -> out (2.5, 3.5).
    q1 = (0, 5) may only attend key 0 -> out = v0 = (1, 2).
    """
    q = torch.tensor([[2.0, 0.0], [0.0, 5.0]]).view(1, 1, 2, 2)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    bias = torch.tensor([0.0, 1.0 + math.log(3.0)]).view(1, 2)  # broadcast over queries
    mask = torch.tensor([[True, True], [True, False]])
    args = [t.to(device) for t in (q, k, v, bias, mask)]
    out = attention(*args[:3], bias=args[3], mask=args[4], scale=0.5, backend=backend)
    expected = torch.tensor([[2.5, 3.5], [1.0, 2.0]]).view(1, 1, 2, 2)
    torch.testing.assert_close(out.cpu(), expected, **TOL[device])


@pytest.mark.parametrize(
    "bias_shape",
    [(N,), (H, 1, N), (B, 1, 1, N), (1, H, N, 1), (H, N, N), (B, 1, N, N)],
    ids=lambda s: "x".join(map(str, s)),
)
@pytest.mark.parametrize("device,backend", CASES)
def test_bias_gradient_for_every_broadcast_shape(
    device, backend, bias_shape, monkeypatch, poisoned_new_empty
):
    """The bias gradient is reduced over exactly the dims the bias broadcasts over."""
    monkeypatch.setattr(attn_mod, "BLOCK_ELEMENTS", 3 * B * H * N)  # several row blocks
    q, k, v = _qkv(device, torch.float32)
    gen = torch.Generator().manual_seed(2)
    bias = torch.randn(bias_shape, generator=gen).to(device).requires_grad_()
    mask = _make_mask("padding", device)
    out = attention(q, k, v, bias=bias, mask=mask, backend=backend)
    ref = attention(q, k, v, bias=bias, mask=mask, backend="math")
    torch.testing.assert_close(out, ref, **TOL[device])
    (g,), (g_ref,) = _grads(out, [bias]), _grads(ref, [bias])
    assert g.shape == bias.shape
    torch.testing.assert_close(g, g_ref, **TOL[device])


@pytest.fixture
def poisoned_new_empty(monkeypatch):
    """Buffers from ``new_empty`` start as NaN: a kernel reading one before writing it fails."""
    new_empty = torch.Tensor.new_empty

    def poisoned(self, *args, **kwargs):
        out = new_empty(self, *args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out

    monkeypatch.setattr(torch.Tensor, "new_empty", poisoned)


@pytest.mark.parametrize(
    "bias_shape",
    [(N,), (1, H, 1, N), (1, H, 1, 1), (B, H, 1, N), (B, 1, 1, 1)],
    ids=lambda s: "x".join(map(str, s)),
)
@pytest.mark.parametrize("device,backend", CASES)
def test_bias_gradient_for_a_single_query(device, backend, bias_shape, poisoned_new_empty):
    """One query row (a 1x1 Swin window, a class token): the bias gradient is written, not
    added to an uninitialised buffer (it was, when the bias had one row too)."""
    q, k, v = _qkv(device, torch.float32)
    q = q[:, :, :1].detach().requires_grad_()
    gen = torch.Generator().manual_seed(2)
    bias = torch.randn(bias_shape, generator=gen).to(device).requires_grad_()
    out = attention(q, k, v, bias=bias, backend=backend)
    ref = attention(q, k, v, bias=bias, backend="math")
    torch.testing.assert_close(out, ref, **TOL[device])
    grads, grads_ref = _grads(out, [q, k, v, bias]), _grads(ref, [q, k, v, bias])
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, **TOL[device])


@pytest.mark.parametrize("device,backend", CASES)
def test_bias_minus_inf_equals_bool_mask(device, backend):
    """A window mask given as a -inf/0 bias means the same as the bool mask."""
    q, k, v = _qkv(device, torch.float32)
    mask = _make_mask("window", device)
    as_bias = torch.zeros(mask.shape, device=device).masked_fill(~mask, float("-inf"))
    out_bias = attention(q, k, v, bias=as_bias, backend=backend)
    out_mask = attention(q, k, v, mask=mask, backend=backend)
    torch.testing.assert_close(out_bias, out_mask)
    for g1, g2 in zip(_grads(out_bias, (q, k, v)), _grads(out_mask, (q, k, v))):
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize(
    "dtype,tol",
    [(torch.float64, 1e-10), (torch.float32, 1e-5), (torch.bfloat16, 3e-2)],
    ids=["f64", "f32", "bf16"],
)
@pytest.mark.parametrize("device,backend", ALL_CASES)
def test_dtypes_against_float64_reference(device, backend, dtype, tol):
    if backend == "xformers" and dtype == torch.float64:
        pytest.skip("xformers has no float64 kernels")
    if dtype == torch.float32:
        tol = TOL[device]["atol"]
    q, k, v = _qkv(device, dtype, dv=12)
    bias = _make_bias("shared", device, torch.float32)  # fp32 table, cast to q's dtype
    mask = _make_mask("padding", device)
    out = attention(q, k, v, bias=bias, mask=mask, backend=backend)
    assert out.dtype == dtype

    q64, k64, v64, b64 = (t.detach().double().requires_grad_() for t in (q, k, v, bias))
    ref = attention(q64, k64, v64, bias=b64, mask=mask, backend="math")
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    grads = _grads(out, (q, k, v, bias))
    assert grads[3].dtype == torch.float32  # the bias grad arrives in the table's dtype
    for i, (g, g_ref) in enumerate(zip(grads, _grads(ref, (q64, k64, v64, b64)))):
        g_tol = 4 * tol if i < 3 else max(4 * tol, 1e-6)  # the bias grad is rounded to fp32
        torch.testing.assert_close(g.double(), g_ref, atol=g_tol, rtol=g_tol)


@pytest.mark.parametrize("device,backend", CASES)
def test_non_contiguous_inputs(device, backend):
    gen = torch.Generator().manual_seed(3)
    qkv = torch.randn(B, N, 3, H, D, generator=gen).to(device)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, N, D), non-contiguous, as in a ViT
    bias = torch.randn(1, H, N, N, generator=gen).to(device).transpose(-2, -1)
    assert not q.is_contiguous() and not bias.is_contiguous()
    out = attention(q, k, v, bias=bias, backend=backend)
    ref = attention(
        q.contiguous(), k.contiguous(), v.contiguous(), bias=bias.contiguous(), backend="math"
    )
    torch.testing.assert_close(out, ref, **TOL[device])


@pytest.mark.parametrize("bias_grad", [True, False], ids=["bias_grad", "bias_fixed"])
@pytest.mark.parametrize("device,backend", ALL_CASES)
def test_gradcheck_float64(device, backend, bias_grad, monkeypatch):
    if backend == "xformers":
        pytest.skip("xformers has no float64 kernels")
    monkeypatch.setattr(attn_mod, "BLOCK_ELEMENTS", 2 * 2 * 5)  # row blocks of 2, 1
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(1, 2, 3, 4, generator=gen, dtype=torch.float64)
    k = torch.randn(1, 2, 5, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(1, 2, 5, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    mask = torch.rand(1, 1, 3, 5, generator=gen) > 0.4
    mask[..., 0] = True
    q, k, v, bias, mask = (t.to(device) for t in (q, k, v, bias, mask))
    inputs = [q, k, v] + ([bias] if bias_grad else [])
    for t in inputs:
        t.requires_grad_()

    def fn(*xs):
        b = xs[3] if bias_grad else bias
        return attention(xs[0], xs[1], xs[2], bias=b, mask=mask, scale=0.7, backend=backend)

    assert torch.autograd.gradcheck(fn, inputs)


def test_cpu_bias_grad_uses_chunked_backward():
    """On CPU a learned bias must not push SDPA into its full-matrix fallback."""
    q, k, v = _qkv("cpu", torch.float32)
    bias = _make_bias("shared", "cpu", torch.float32)
    out = attention(q, k, v, bias=bias, backend="sdpa")
    assert "SdpaBiasGrad" in out.grad_fn.name()
    with torch.no_grad():  # inference keeps the plain SDPA call
        assert attention(q, k, v, bias=bias, backend="sdpa").grad_fn is None


# ------------------------------------------------------------------ dropout


@pytest.mark.parametrize("device,backend", ALL_CASES)
def test_dropout_applied_and_seeded(device, backend):
    q, k, v = _qkv(device, torch.float32)
    bias = _make_bias("shared", device, torch.float32)
    plain = attention(q, k, v, bias=bias, backend=backend)

    torch.manual_seed(7)
    first = attention(q, k, v, bias=bias, dropout_p=0.3, backend=backend)
    torch.manual_seed(7)
    again = attention(q, k, v, bias=bias, dropout_p=0.3, backend=backend)
    torch.manual_seed(8)
    other = attention(q, k, v, bias=bias, dropout_p=0.3, backend=backend)

    assert not torch.allclose(first, plain)
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert not torch.allclose(first, other)
    grads = _grads(first, (q, k, v, bias))  # gradients flow under dropout too, bias included
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("device,backend", ALL_CASES)
def test_dropout_is_unbiased(device, backend):
    """E[dropout attention] = attention: average 4000 independent draws (one batched call)."""
    gen = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(1, 2, 6, 4, generator=gen).to(device) for _ in range(3))
    bias = torch.randn(1, 2, 6, 6, generator=gen).to(device)
    expected = attention(q, k, v, bias=bias, backend="math")
    draws = 4000
    torch.manual_seed(0)
    with torch.no_grad():
        out = attention(
            *(t.expand(draws, -1, -1, -1) for t in (q, k, v)),
            bias=bias,
            dropout_p=0.25,
            backend=backend,
        )
    assert not torch.allclose(out[0], expected[0], atol=1e-3)  # single draws differ, the mean not
    torch.testing.assert_close(out.mean(0, keepdim=True), expected, atol=0.04, rtol=0)


# ------------------------------------------------------------------ selection


class _RecordTorchCalls(TorchFunctionMode):
    """Names of the torch functions called inside the ``with`` block."""

    def __enter__(self):
        self.names = []
        return super().__enter__()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


def _kernel_run(*args, **kwargs) -> str:
    """Call ``attention`` and tell which CPU backend ran: "sdpa" or "math"."""
    with _RecordTorchCalls() as calls:
        attention(*args, **kwargs)
    return "sdpa" if "scaled_dot_product_attention" in calls.names else "math"


def test_env_var_is_read_at_every_call(monkeypatch):
    """Same process, env changed between calls -> different backend: nothing fixed at import."""
    q, k, v = _qkv("cpu", torch.float32)
    called = []
    for env in ("math", "sdpa", " MATH ", "auto", None):
        if env is None:
            monkeypatch.delenv(ENV_VAR)
        else:
            monkeypatch.setenv(ENV_VAR, env)
        called.append(_kernel_run(q, k, v))
    called.append(_kernel_run(q, k, v, backend="math"))  # the per-module override beats the default
    monkeypatch.setenv(ENV_VAR, "sdpa")
    called.append(_kernel_run(q, k, v, backend="math"))  # ... and the environment variable
    assert called == ["math", "sdpa", "math", "sdpa", "sdpa", "math", "math"]


def test_explicit_unusable_backend_raises_with_reason():
    q, k, v = _qkv("cpu", torch.float32)
    reason = "'xformers' was requested but cannot run: xformers needs CUDA"
    with pytest.raises(ValueError, match=reason):
        attention(q, k, v, backend="xformers")


def test_env_unusable_backend_falls_back_and_logs_once(monkeypatch, caplog):
    monkeypatch.setenv(ENV_VAR, "xformers")
    q, k, v = _qkv("cpu", torch.float32)
    with caplog.at_level(logging.WARNING, logger=attn_mod.__name__):
        assert select_backend(q) == "sdpa"
        out = attention(q, k, v)
        attention(q, k, v)
    torch.testing.assert_close(out, attention(q, k, v, backend="math"), atol=1e-5, rtol=1e-5)
    records = [r for r in caplog.records if r.name == attn_mod.__name__]
    assert len(records) == 1
    assert "VISIONFM_ATTN=xformers" in records[0].getMessage()
    assert "needs CUDA" in records[0].getMessage()


def test_unknown_names_raise(monkeypatch):
    q, k, v = _qkv("cpu", torch.float32)
    with pytest.raises(ValueError, match="unknown attention backend 'flash'"):
        attention(q, k, v, backend="flash")
    with pytest.raises(ValueError, match="unknown attention backend"):
        check_backend("Math")
    assert check_backend("auto") is None and check_backend(None) is None
    assert check_backend("math") == "math"
    monkeypatch.setenv(ENV_VAR, "flash")
    with pytest.raises(ValueError, match="VISIONFM_ATTN='flash' is not an attention backend"):
        attention(q, k, v)


def test_explain_backends_reasons():
    reasons = explain_backends(torch.zeros(1, 1, 2, 4))
    assert set(reasons) == set(BACKENDS)
    assert reasons["math"] is None and reasons["sdpa"] is None
    assert "needs CUDA" in reasons["xformers"]

    # Past the device check, the reason depends on what this machine has installed.
    fake_cuda = types.SimpleNamespace(is_cuda=True, device="cuda:0", dtype=torch.float64)
    if importlib.util.find_spec("xformers") is None:
        assert "not installed" in explain_backends(fake_cuda)["xformers"]
    else:
        assert "dtype torch.float64" in explain_backends(fake_cuda)["xformers"]
        fake_cuda.dtype = torch.float16
        assert explain_backends(fake_cuda)["xformers"] is None


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "change,error,match",
    [
        (dict(q=torch.zeros(2, 10, 8)), ValueError, r"must be \(B, heads, N, head_dim\)"),
        (dict(k=torch.zeros(B, H, N, 4)), ValueError, "head dims or k/v lengths"),
        (dict(v=torch.zeros(B, H, 7, D)), ValueError, "head dims or k/v lengths"),
        (dict(k=torch.zeros(B, 1, N, D)), ValueError, "share"),
        (dict(v=torch.zeros(B, H, N, D, dtype=torch.float64)), TypeError, "one float dtype"),
        (dict(mask=torch.ones(1, 1, N, N)), TypeError, "mask must be a bool tensor"),
        (dict(bias=torch.ones(1, 1, N, N, dtype=torch.bool)), TypeError, "pass boolean masks"),
        (dict(bias=torch.zeros(1, H, N, N + 1)), ValueError, "does not broadcast"),
        (dict(mask=torch.ones(3, 1, 1, N, dtype=torch.bool)), ValueError, "does not broadcast"),
        (dict(bias=torch.zeros(1, 1, 1, N, N)), ValueError, "does not broadcast"),
        (dict(dropout_p=1.0), ValueError, "dropout_p"),
        (dict(dropout_p=-0.1), ValueError, "dropout_p"),
    ],
)
def test_input_validation(change, error, match):
    args = dict(q=torch.zeros(B, H, N, D), k=torch.zeros(B, H, N, D), v=torch.zeros(B, H, N, D))
    args.update(change)
    with pytest.raises(error, match=match):
        attention(**args)


# ------------------------------------------------------------------ xformers adapter


def _fake_xformers(monkeypatch, seen, fail=False):
    """Make xformers usable on CPU tensors, as on a CUDA machine with it installed.

    Installs a stand-in ``xformers.ops`` that enforces the documented input contract:
    BMHK tensors with a unit-stride last dim, a tensor attn_bias of exactly
    (B, heads, Mq, Mk) whose rows start 16-byte aligned, dropout as ``p``,
    ``scale`` as a keyword; computes the result with plain torch ops. And replaces
    the seam ``attention_select.xformers_unavailable_reason`` by one that always allows it."""

    def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None):
        if fail:
            raise NotImplementedError("No operator found for `memory_efficient_attention_forward`")
        b, mq, h, _ = query.shape
        mk = key.shape[1]
        assert all(t.stride(-1) == 1 and t.shape[-1] % 8 == 0 for t in (query, key, value))
        if attn_bias is not None:
            assert tuple(attn_bias.shape) == (b, h, mq, mk), attn_bias.shape
            assert attn_bias.dtype == query.dtype and attn_bias.stride(-1) == 1
            assert attn_bias.stride(-2) % 8 == 0 and attn_bias.storage_offset() % 8 == 0
            if attn_bias.requires_grad:  # a bias needing a grad arrives materialised
                assert 0 not in attn_bias.stride()
        seen.append(attn_bias)
        logits = torch.einsum("bqhd,bkhd->bhqk", query, key) * scale
        if attn_bias is not None:
            logits = logits + attn_bias
        weights = torch.nn.functional.dropout(logits.softmax(-1), p=p)
        return torch.einsum("bhqk,bkhd->bqhd", weights, value)

    ops = types.ModuleType("xformers.ops")
    ops.memory_efficient_attention = memory_efficient_attention
    pkg = types.ModuleType("xformers")
    pkg.ops = ops
    monkeypatch.setitem(sys.modules, "xformers", pkg)
    monkeypatch.setitem(sys.modules, "xformers.ops", ops)
    monkeypatch.setattr(select, "xformers_unavailable_reason", lambda q, bias_needs_grad: None)


@pytest.mark.parametrize("mask_kind", [None, "padding", "window"], ids=lambda m: f"mask={m}")
@pytest.mark.parametrize("bias_kind", [None, "shared", "per_batch_head"], ids=lambda b: f"bias={b}")
@pytest.mark.parametrize("bias_grad", [True, False], ids=["bias_grad", "bias_fixed"])
def test_xformers_adapter_layout(monkeypatch, bias_kind, mask_kind, bias_grad):
    seen = []
    _fake_xformers(monkeypatch, seen)
    q, k, v = _qkv("cpu", torch.float32, dv=12)
    bias = _make_bias(bias_kind, "cpu", torch.float32)
    if bias is not None:
        bias.requires_grad_(bias_grad)
    mask = _make_mask(mask_kind, "cpu")
    inputs = [q, k, v] + ([bias] if bias is not None and bias_grad else [])

    out = attention(q, k, v, bias=bias, mask=mask, scale=0.3, backend="xformers")
    assert len(seen) == 1  # the stand-in kernel ran
    ref = attention(q, k, v, bias=bias, mask=mask, scale=0.3, backend="math")
    assert out.shape == ref.shape  # Dv = 12 went in padded to 16 and came back sliced
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for g, g_ref in zip(_grads(out, inputs), _grads(ref, inputs)):
        torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)
    if bias_kind == "shared" and mask_kind in (None, "window") and not bias_grad:
        assert seen[0].stride(0) == 0  # broadcast bias is not copied per batch element


def test_xformers_adapter_pads_head_dims(monkeypatch):
    """head_dim 2 (not 16-byte aligned) goes in zero-padded, with the scale of the real dim."""
    seen = []
    _fake_xformers(monkeypatch, seen)
    q = torch.tensor([[2.0, 0.0], [0.0, 5.0]]).view(1, 1, 2, 2)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    out = attention(q, k, v, backend="xformers")  # default scale 1 / sqrt(2)
    assert len(seen) == 1
    torch.testing.assert_close(out, attention(q, k, v, backend="math"))


def test_xformers_without_kernel_falls_back_in_auto_mode(monkeypatch, caplog):
    seen = []
    _fake_xformers(monkeypatch, seen, fail=True)
    q, k, v = _qkv("cpu", torch.float32)
    ref = attention(q, k, v, backend="math")
    assert select_backend(q) == "xformers"  # the automatic choice, as on a CUDA machine
    with caplog.at_level(logging.WARNING, logger=attn_mod.__name__):
        out = attention(q, k, v)
        attention(q, k, v)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert len([r for r in caplog.records if "using sdpa" in r.getMessage()]) == 1
    with pytest.raises(NotImplementedError):  # an explicit request is not silently replaced
        attention(q, k, v, backend="xformers")
