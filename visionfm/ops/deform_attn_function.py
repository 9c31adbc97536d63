"""Multi-scale deformable attention.

From Deformable DETR (Zhu et al., "Deformable DETR: Deformable Transformers for
End-to-End Object Detection", ICLR 2021). Each query attends, per head and
feature level, to P sampling points around a reference point instead of to all
keys: the output is the attention-weighted sum of the value maps, bilinearly
interpolated at the sampling locations.

``multi_scale_deformable_attention`` is the functional op. It follows the
original CUDA kernel, i.e. ``F.grid_sample`` with bilinear interpolation, zero
padding and ``align_corners=False``: locations 0 and 1 are the outer edges of a
feature map, pixel centres lie at ``(i + 0.5) / W``, and outside the map the
values are 0.

It is computed in pure PyTorch as a weighted gather rather than by one
``grid_sample`` per level: the four bilinear corners of every sampling point are
rows of ``value`` in its own (B, S, heads, head_dim) layout (no transposed copy
per level), the bilinear and attention weights multiply into one weight per
corner, and a single ``F.embedding_bag(mode="sum")`` sums the weighted rows into
the (B, Q, heads * head_dim) output. The (B * heads, head_dim, Q, L * P) tensor
of samples that the ``grid_sample`` formulation builds, multiplies and sums
never exists. The backward (``_MSDeformAttn``) is exact and explicit: value's
gradient is a transposed gather (one sort of the points, then ``embedding_bag``
again, see ``_scatter_to_value``), the weights' gradient a sampled row dot
product (``torch.sparse.sampled_addmm``), and the chain rule to locations and
attention weights is written out. Tests hold the op against an explicit
bilinear loop, ``gradcheck`` and the ``grid_sample`` formulation of HF
transformers.

The module using it, ``MultiScaleDeformableAttention``, is in ``deform_attn.py``.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["multi_scale_deformable_attention"]

_INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------- checks


def _check_inputs(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> None:
    """Raise ValueError with the offending shapes when the inputs do not fit together."""
    if value.dim() != 4:
        raise ValueError(f"value must be (B, S, heads, head_dim), got shape {tuple(value.shape)}")
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            "sampling_locations must be (B, Q, heads, levels, points, 2), "
            f"got shape {tuple(sampling_locations.shape)}"
        )
    if attention_weights.dim() != 5:
        raise ValueError(
            "attention_weights must be (B, Q, heads, levels, points), "
            f"got shape {tuple(attention_weights.shape)}"
        )
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"spatial_shapes must be (levels, 2), got {tuple(spatial_shapes.shape)}")
    if spatial_shapes.is_floating_point() or spatial_shapes.is_complex():
        raise ValueError(f"spatial_shapes must hold integers, got {spatial_shapes.dtype}")
    if not value.is_floating_point():
        raise ValueError(f"value must be floating point, got {value.dtype}")
    for name, t in (
        ("sampling_locations", sampling_locations),
        ("attention_weights", attention_weights),
    ):
        if t.dtype != value.dtype or t.device != value.device:
            raise ValueError(
                f"{name} ({t.dtype}, {t.device}) must have value's dtype and device "
                f"({value.dtype}, {value.device})"
            )
    batch, length, heads, _ = value.shape
    levels = spatial_shapes.shape[0]
    if sampling_locations.shape[:-1] != attention_weights.shape:
        raise ValueError(
            f"sampling_locations {tuple(sampling_locations.shape)} and attention_weights "
            f"{tuple(attention_weights.shape)} disagree on (B, Q, heads, levels, points)"
        )
    b, _, h, lv, _ = attention_weights.shape
    if (b, h) != (batch, heads):
        raise ValueError(
            f"value has (B, heads) = {(batch, heads)} but the sampling locations have {(b, h)}"
        )
    if lv != levels:
        raise ValueError(f"spatial_shapes has {levels} levels but the sampling locations have {lv}")
    if (spatial_shapes <= 0).any():
        raise ValueError(f"spatial_shapes must be positive, got {spatial_shapes.tolist()}")
    total = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    if total != length:
        raise ValueError(
            f"spatial_shapes {spatial_shapes.tolist()} cover sum(H * W) = {total} positions "
            f"but value has S = {length}"
        )
    if level_start_index is not None:
        expected = _level_starts(spatial_shapes)
        if level_start_index.shape != (levels,) or not torch.equal(
            level_start_index.to(expected), expected
        ):
            raise ValueError(
                f"level_start_index {level_start_index.tolist()} does not match spatial_shapes "
                f"(expected {expected.tolist()})"
            )


def _level_starts(spatial_shapes: torch.Tensor) -> torch.Tensor:
    """(L, 2) -> (L,) offset of each level's first position in the flattened value."""
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return sizes.cumsum(0) - sizes


# --------------------------------------------------------------------------- bilinear corners


class _Levels:
    """Per-call constants of the level geometry, on value's device.

    ``size`` is expanded to (2, L, P) so that elementwise ops on (M, ..., L, P) tensors
    broadcast over leading dims only and run over contiguous L * P blocks.
    """

    def __init__(self, spatial_shapes, batch, heads, points, dtype, device, index_dtype):
        hw = spatial_shapes.to(device)
        levels = hw.shape[0]
        self.batch, self.heads, self.index_dtype = batch, heads, index_dtype
        self.shapes = [tuple(s) for s in hw.tolist()]
        size = hw.t().flip(0).to(dtype)[:, :, None]  # (2, L, 1) as (W, H)
        self.size = size.expand(2, levels, points).contiguous()
        hw = hw.to(index_dtype)
        self.width = hw[:, 1, None]  # (L, 1)
        ones = torch.ones_like(self.width)
        # (4, L, 1) row offset of corner (cy, cx) from the top-left one
        self.corner_shift = torch.stack([0 * ones, ones, self.width, self.width + 1]) * heads
        self.starts = _level_starts(hw)[:, None]  # (L, 1)
        # Key space of the backward: per level the (H + 1) x (W + 1) top-left corners in
        # [-1, H - 1] x [-1, W - 1]; rows of value and keys are both (b, position, head).
        key_sizes = (hw[:, 0] + 1) * (hw[:, 1] + 1)
        self.key_starts = (key_sizes.cumsum(0) - key_sizes)[:, None]
        self.key_length = int(key_sizes.sum())
        self.num_keys = batch * heads * self.key_length

    def per_bag(self, queries: int, length: int, starts: torch.Tensor) -> torch.Tensor:
        """(M, L, 1): offset ((b * length + starts[l]) * heads + head) of bag m = (b, q, head)
        and level l, for rows (b, position, head) of a table of `length` positions."""
        device, dtype = self.width.device, self.index_dtype
        b = torch.arange(self.batch, device=device, dtype=dtype)[:, None, None]
        h = torch.arange(self.heads, device=device, dtype=dtype)
        offset = (b * (length * self.heads) + h).expand(self.batch, queries, self.heads)
        return offset.reshape(-1, 1, 1) + starts[None] * self.heads


def _bilinear_corners(loc: torch.Tensor, size: torch.Tensor):
    """Bilinear corners of normalised points. loc (M, L, P, 2) as (x, y), size (2, L, P) pixels.

    Tensors are laid out with (L, P) last so that elementwise ops run over contiguous
    blocks whatever they broadcast over.

    Returns:
        pix: (M, 2, L, P) pixel coordinates along x / y, centres at integers.
        weights: (M, 2, 2, L, P) [:, axis, corner] weight of the lower / upper corner
            along x / y, 0 for a corner outside the map.
        lower: (M, 2, L, P) the lower corner as a float integer in [-1, size - 1].
    """
    m, levels, points, _ = loc.shape
    pix = loc.new_empty(m, 2, levels, points)
    torch.addcmul(loc.new_tensor(-0.5), loc.permute(0, 3, 1, 2), size, out=pix)
    # Clamped to [-1, size] a point keeps its value (0 outside) and its corners stay
    # within one pixel of the map; the lower one is kept <= size - 1.
    clamped = torch.clamp(pix, loc.new_tensor(-1.0), size)
    lower = torch.minimum(clamped.floor(), size - 1)
    frac = clamped.sub_(lower)
    weights = loc.new_empty(m, 2, 2, levels, points)
    torch.minimum(1 - frac, lower + 1, out=weights[:, :, 0])  # 0 when lower == -1
    torch.minimum(frac, size - 1 - lower, out=weights[:, :, 1])  # 0 when lower == size - 1
    return pix, weights, lower


class _MSDeformAttn(torch.autograd.Function):
    """Gather-based forward and exact backward of ``multi_scale_deformable_attention``.

    A bag m = (b, q, head) sums 4 * L * P rows of ``value_rows`` (B * S * heads, D): corner
    (cy, cx) of point (l, p) with weight ``attention * wy[cy] * wx[cx]``; corners outside
    the map get weight 0 and a clamped row.
    """

    @staticmethod
    def forward(ctx, value, sampling_locations, attention_weights, spatial_shapes):
        batch, length, heads, head_dim = value.shape
        _, queries, _, levels, points, _ = sampling_locations.shape
        m = batch * queries * heads
        index_dtype = _index_dtype(batch, length, heads, m * levels * points, spatial_shapes)
        # pixel coordinates and weights in float32 at least: a half location can round
        # into the next pixel
        dtype = torch.promote_types(sampling_locations.dtype, torch.float32)
        geo = _Levels(spatial_shapes, batch, heads, points, dtype, value.device, index_dtype)
        loc = sampling_locations.reshape(m, levels, points, 2).to(dtype)
        attn = attention_weights.reshape(m, 1, levels, points).to(dtype)
        pix, axis_weights, lower = _bilinear_corners(loc, geo.size)
        wx, wy = axis_weights.unbind(1)  # (M, 2, L, P) each: lower / upper corner
        weights = ((wy * attn)[:, :, None] * wx[:, None]).view(m, 4, levels, points)
        weights = weights.to(value.dtype)
        # where each corner weight moves with the location: corner in the map and point
        # inside the clamping band
        inside = None
        if ctx.needs_input_grad[1]:
            band = (pix > -1) & (pix < geo.size)
            inside = torch.stack([lower >= 0, lower <= geo.size - 2], 2)  # (M, axis, corner, L, P)
            inside.logical_and_(band[:, :, None])

        lower = lower.to(index_dtype)
        top_left = lower[:, 1] * (geo.width * heads)  # (M, L, P)
        top_left.add_(lower[:, 0], alpha=heads).add_(geo.per_bag(queries, length, geo.starts))
        rows = top_left[:, None] + geo.corner_shift  # (M, 4, L, P)
        rows.clamp_(0, batch * length * heads - 1)  # corners outside the map have weight 0

        value_rows = value.reshape(batch * length * heads, head_dim)
        out = F.embedding_bag(  # detached: else it also prepares its own backward
            rows.view(m, 4 * levels * points),
            value_rows.detach(),
            per_sample_weights=weights.view(m, 4 * levels * points),
            mode="sum",
        )
        ctx.geo = geo
        ctx.shape = (batch, queries, heads, levels, points)
        ctx.input_dtype = sampling_locations.dtype
        ctx.save_for_backward(value_rows, attn, axis_weights, inside, lower, rows, weights)
        return out.view(batch, queries, heads * head_dim)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        value_rows, attn, axis_weights, inside, lower, rows, weights = ctx.saved_tensors
        geo = ctx.geo
        batch, queries, heads, levels, points = ctx.shape
        m = batch * queries * heads
        grad_out = grad_out.reshape(m, value_rows.shape[1]).contiguous()
        grad_value = grad_locations = grad_attention = None
        if ctx.needs_input_grad[0]:
            keys = (lower[:, 1] + 1) * ((geo.width + 1) * heads)
            keys.add_(lower[:, 0] + 1, alpha=heads)
            keys.add_(geo.per_bag(queries, geo.key_length, geo.key_starts))
            keys.clamp_(0, geo.num_keys - 1)  # only NaN locations leave the range
            grad_value = _scatter_to_value(grad_out, weights, keys, geo)
            grad_value = grad_value.view(batch, -1, heads, grad_value.shape[-1])
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # d loss / d weights (M, cy, cx, L, P), weights = attn * wy[cy] * wx[cx]
            grad_weights = _row_dots(grad_out, value_rows, rows).view(m, 2, 2, levels, points)
            wx, wy = axis_weights.unbind(1)
            per_y = torch.addcmul(
                grad_weights[:, :, 0] * wx[:, None, 0], grad_weights[:, :, 1], wx[:, None, 1]
            )
            if ctx.needs_input_grad[2]:
                grad_attention = torch.addcmul(per_y[:, 0] * wy[:, 0], per_y[:, 1], wy[:, 1])
                grad_attention = grad_attention.view(ctx.shape).to(ctx.input_dtype)
            if ctx.needs_input_grad[1]:
                per_x = torch.addcmul(
                    grad_weights[:, 0] * wy[:, 0, None], grad_weights[:, 1], wy[:, 1, None]
                )
                per_axis = torch.stack([per_x, per_y], 1)  # (M, axis, corner, L, P)
                per_axis.mul_(attn[:, None])
                # d w_lower / d pix = -1 and d w_upper / d pix = +1 inside the map
                per_axis.masked_fill_(~inside, 0.0)
                grad_locations = per_axis.new_empty(m, levels, points, 2)
                grad_pix = per_axis[:, :, 1] - per_axis[:, :, 0]  # (M, axis, L, P)
                torch.mul(grad_pix, geo.size, out=grad_locations.permute(0, 3, 1, 2))
                grad_locations = grad_locations.view(*ctx.shape, 2).to(ctx.input_dtype)
        return grad_value, grad_locations, grad_attention, None


def _index_dtype(batch, length, heads, num_points, spatial_shapes) -> torch.dtype:
    """int32 indices (half the memory traffic of int64) whenever every index fits."""
    key_length = int(((spatial_shapes[:, 0] + 1) * (spatial_shapes[:, 1] + 1)).sum())
    largest = max(batch * heads * (key_length + 1), num_points * 4 + 1)
    return torch.int32 if largest <= _INT32_MAX else torch.int64


def _scatter_to_value(
    grad_out: torch.Tensor, weights: torch.Tensor, keys: torch.Tensor, geo: _Levels
) -> torch.Tensor:
    """Gradient of value_rows (B * S * heads, D): every row gets weight * grad of the bag
    from every corner that sampled it.

    Sorting the M * L * P points by the key of their top-left corner groups them. Row r
    of value is corner c of exactly the points whose key is that of r shifted back by c,
    so with ``offsets_c[r]`` = first sorted point with that key, the points between
    ``offsets_c[r]`` and ``offsets_c[r + 1]`` are row r's, plus points whose corner c lies
    outside the map (the keys on the -1 column/row skipped in between), which have
    weight 0. One ``embedding_bag`` per corner then sums them; no point is sorted twice.
    grad_out: (M, D), weights: (M, 4, L, P), keys: (M, L, P) -> (B * S * heads, D).
    """
    sorted_keys, order = keys.view(-1).sort()
    counts = torch.bincount(sorted_keys, minlength=geo.num_keys)
    first = F.pad(counts.cumsum(0), (1, 0)).to(keys.dtype)  # (num_keys + 1,)
    levels, points = keys.shape[1:]
    bags = torch.div(order, levels * points, rounding_mode="floor").to(keys.dtype)
    per_point = weights.view(weights.shape[0], 4, levels * points).transpose(1, 2).reshape(-1, 4)
    sorted_weights = per_point.index_select(0, order).t().contiguous()  # (4, M * L * P)
    grad_value = None
    for c, target_keys in enumerate(_keys_of_rows(geo)):
        offsets = first.index_select(0, target_keys)
        offsets[0] = 0  # the points before the first row's have weight 0 for this corner
        part = F.embedding_bag(
            bags, grad_out, offsets, per_sample_weights=sorted_weights[c], mode="sum"
        )
        grad_value = part if grad_value is None else grad_value.add_(part)
    return grad_value


def _keys_of_rows(geo: _Levels) -> list[torch.Tensor]:
    """For each corner c, (B * S * heads,): the key of the top-left corner whose corner c
    is that row of value."""
    device, dtype = geo.width.device, geo.index_dtype
    per_corner = [[], [], [], []]
    for (height, width), key_start in zip(geo.shapes, geo.key_starts.view(-1).tolist()):
        y = torch.arange(height, device=device, dtype=dtype)[:, None]
        x = torch.arange(width, device=device, dtype=dtype)
        for c in range(4):  # top-left of corner (y, x) is (y - c // 2, x - c % 2)
            key = key_start + (y + 1 - c // 2) * (width + 1) + (x + 1 - c % 2)
            per_corner[c].append(key.view(-1))
    b = torch.arange(geo.batch, device=device, dtype=dtype)[:, None, None]
    h = torch.arange(geo.heads, device=device, dtype=dtype)
    out = []
    for keys in per_corner:
        keys = (b * geo.key_length + torch.cat(keys)[:, None]) * geo.heads + h  # (B, S, heads)
        out.append(keys.view(-1))
    return out


def _row_dots(grad_out: torch.Tensor, value_rows: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(M, 4, L, P): grad_out[m] . value_rows[rows[m, ...]] for every corner of bag m, in
    float32 or float64 (there is no half ``sampled_addmm`` on CPU).

    grad_out: (M, D), value_rows: (R, D), rows: (M, 4, L, P) in [0, R)."""
    m, per_bag = rows.shape[0], math.prod(rows.shape[1:])
    if grad_out.dtype not in (torch.float32, torch.float64):
        grad_out, value_rows = grad_out.float(), value_rows.float()
    crow = torch.arange(0, m * per_bag + 1, per_bag, device=rows.device, dtype=rows.dtype)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow,
            rows.view(-1),
            grad_out.new_zeros(()).expand(rows.numel()),
            size=(m, value_rows.shape[0]),
            check_invariants=False,
        )
        dots = torch.sparse.sampled_addmm(pattern, grad_out, value_rows.t(), beta=0.0)
    return dots.values().view(rows.shape)


# --------------------------------------------------------------------------- functional op


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor | None,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Attention-weighted sum of bilinear samples of multi-level value maps.

    Args:
        value: (B, S, heads, head_dim), the L levels' maps flattened row-major and
            concatenated, S = sum over levels of H_l * W_l.
        spatial_shapes: (L, 2) integer (H_l, W_l) per level.
        level_start_index: (L,) first position of each level in S (checked against
            ``spatial_shapes``), or None.
        sampling_locations: (B, Q, heads, L, P, 2) normalised (x, y): 0 and 1 are the
            outer edges of the map; samples outside read zeros.
        attention_weights: (B, Q, heads, L, P), normally softmaxed over L * P.

    Returns:
        (B, Q, heads * head_dim), heads-major on the last dim.

    The three tensors must share dtype and device; for half / bfloat16 the pixel
    coordinates and weights are computed in float32. Differentiable once (w.r.t.
    value, sampling_locations and attention_weights), not twice.
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    return _MSDeformAttn.apply(value, sampling_locations, attention_weights, spatial_shapes)


# --------------------------------------------------------------------------- module
