"""visionfm.ops.deform_attn: the op against an explicit bilinear loop, gradcheck and HF
transformers' grid_sample formulation; the module's reference points, padding mask and
input checks."""

from __future__ import annotations

import math

import pytest
import torch

from visionfm.ops.deform_attn import (
    MultiScaleDeformableAttention,
    multi_scale_deformable_attention,
)
from visionfm.registry import MODELS

# Non-square levels of different sizes, down to a single pixel.
SHAPES = [(5, 7), (3, 4), (2, 3), (1, 1)]


def _level_starts(shapes: list[tuple[int, int]]) -> torch.Tensor:
    sizes = torch.tensor([h * w for h, w in shapes])
    return sizes.cumsum(0) - sizes


def _inputs(
    shapes=SHAPES, batch=2, queries=5, heads=2, head_dim=3, points=3, dtype=torch.float64, seed=0
):
    """value (B, S, heads, D), spatial_shapes, level_start_index, locations (B, Q, heads,
    L, P, 2) spread over [-0.25, 1.25] (inside, on and outside the borders), attention
    weights (B, Q, heads, L, P) softmaxed over L * P."""
    gen = torch.Generator().manual_seed(seed)
    levels = len(shapes)
    length = sum(h * w for h, w in shapes)
    value = torch.randn(batch, length, heads, head_dim, generator=gen, dtype=dtype)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=gen, dtype=dtype)
    locations = locations * 1.5 - 0.25
    logits = torch.randn(batch, queries, heads, levels * points, generator=gen, dtype=dtype)
    weights = logits.softmax(-1).view(batch, queries, heads, levels, points)
    return value, torch.tensor(shapes), _level_starts(shapes), locations, weights


def _bilinear_loop(value, spatial_shapes, locations, weights):
    """Reference: for every query, head, level and point, interpolate the four pixels
    around the location (pixel centres at (i + 0.5) / size, zeros outside the map)."""
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    shapes = spatial_shapes.tolist()
    starts = _level_starts(shapes).tolist()
    out = torch.zeros(batch, queries, heads, head_dim, dtype=value.dtype)
    for b in range(batch):
        for q in range(queries):
            for h in range(heads):
                for lvl, ((height, width), start) in enumerate(zip(shapes, starts)):
                    for p in range(points):
                        loc_x, loc_y = locations[b, q, h, lvl, p].tolist()
                        x = loc_x * width - 0.5
                        y = loc_y * height - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(head_dim, dtype=value.dtype)
                        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                                if 0 <= xx < width and 0 <= yy < height:
                                    sample += wy * wx * value[b, start + yy * width + xx, h]
                        out[b, q, h] += weights[b, q, h, lvl, p] * sample
    return out.view(batch, queries, heads * head_dim)


# --------------------------------------------------------------------------- the op


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_explicit_bilinear_loop(seed):
    value, shapes, starts, locations, weights = _inputs(seed=seed)
    # also exactly on the edges, on pixel centres and far outside
    locations[0, 0, 0, :, 0] = torch.tensor([0.0, 0.0])
    locations[0, 0, 0, :, 1] = torch.tensor([1.0, 1.0])
    locations[0, 1, 1, 0, 0] = torch.tensor([0.5 / 7, 2.5 / 5])
    locations[1, 2, 0, 1, 2] = torch.tensor([-3.0, 0.5])
    locations[1, 3, 1, 2, 1] = torch.tensor([0.5, 7.0])
    out = multi_scale_deformable_attention(value, shapes, starts, locations, weights)
    expected = _bilinear_loop(value, shapes, locations, weights)
    assert out.shape == (2, 5, 2 * 3)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_lower_precision_matches_float64(dtype, tol):
    value, shapes, starts, locations, weights = _inputs(queries=20)
    low = [t.to(dtype).requires_grad_() for t in (value, locations, weights)]
    # the reference sees the same (rounded) inputs: a rounded location may move cells
    value, locations, weights = inputs = [t.detach().double().requires_grad_() for t in low]
    grad_out = torch.randn(2, 20, 6, dtype=torch.float64)
    expected = multi_scale_deformable_attention(value, shapes, starts, locations, weights)
    out = multi_scale_deformable_attention(low[0], shapes, None, low[1], low[2])
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), expected, rtol=tol, atol=tol)
    expected_grads = torch.autograd.grad(expected, inputs, grad_out)
    grads = torch.autograd.grad(out, low, grad_out.to(dtype))
    for g, e in zip(grads, expected_grads):  # location gradients scale with the map size
        torch.testing.assert_close(g.double(), e, rtol=tol, atol=tol * e.abs().max().item())


def test_gradcheck():
    value, shapes, starts, locations, weights = _inputs(queries=3, points=2)
    inputs = tuple(t.requires_grad_() for t in (value, locations, weights))

    def op(v, loc, w):
        return multi_scale_deformable_attention(v, shapes, starts, loc, w)

    assert torch.autograd.gradcheck(op, inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("which", [(0,), (1,), (2,), (0, 2), (1, 2)])
def test_partial_gradients_match_full(which):
    """Each gradient is computed only when asked for, and equals the all-inputs one."""
    value, shapes, starts, locations, weights = _inputs()
    grad_out = torch.randn(2, 5, 6, dtype=torch.float64)
    full = [t.clone().requires_grad_() for t in (value, locations, weights)]
    out = multi_scale_deformable_attention(full[0], shapes, starts, full[1], full[2])
    expected = torch.autograd.grad(out, full, grad_out)
    some = [t.clone().requires_grad_(i in which) for i, t in enumerate((value, locations, weights))]
    out = multi_scale_deformable_attention(some[0], shapes, starts, some[1], some[2])
    got = torch.autograd.grad(out, [some[i] for i in which], grad_out)
    for i, g in zip(which, got):
        torch.testing.assert_close(g, expected[i], rtol=1e-12, atol=1e-12)


def test_matches_hf_transformers():
    """Our published reference: HF's pure-PyTorch op (one grid_sample per level)."""
    modeling = pytest.importorskip("transformers.models.deformable_detr.modeling_deformable_detr")
    hf = modeling.MultiScaleDeformableAttention()
    value, shapes, starts, locations, weights = _inputs(queries=7, heads=3, head_dim=4, points=4)
    inputs = [t.requires_grad_() for t in (value, locations, weights)]
    grad_out = torch.randn(2, 7, 12, dtype=torch.float64)

    ours = multi_scale_deformable_attention(value, shapes, starts, locations, weights)
    theirs = hf(value, shapes, [tuple(s) for s in shapes.tolist()], starts, locations, weights, 64)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    for g_ours, g_theirs in zip(
        torch.autograd.grad(ours, inputs, grad_out), torch.autograd.grad(theirs, inputs, grad_out)
    ):
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-10)


def test_no_queries():
    value, shapes, starts, locations, weights = _inputs(queries=0)
    inputs = [t.requires_grad_() for t in (value, locations, weights)]
    out = multi_scale_deformable_attention(value, shapes, starts, locations, weights)
    assert out.shape == (2, 0, 6)
    grads = torch.autograd.grad(out.sum(), inputs)
    assert torch.equal(grads[0], torch.zeros_like(value))
    assert grads[1].shape == locations.shape and grads[2].shape == weights.shape


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(value=a["value"][:, :-1]), "sum\\(H \\* W\\) = 54 .* S = 53"),
        (lambda a: a.update(value=a["value"].flatten(2)), "value must be"),
        (lambda a: a.update(spatial_shapes=a["spatial_shapes"].float()), "integers"),
        (lambda a: a.update(spatial_shapes=a["spatial_shapes"][:, :1]), "spatial_shapes must be"),
        (lambda a: a.update(spatial_shapes=a["spatial_shapes"][:3]), "3 levels .* have 4"),
        (lambda a: a.update(level_start_index=torch.tensor([0, 35, 47, 50])), "level_start_index"),
        (lambda a: a.update(sampling_locations=a["sampling_locations"][..., 0]), "sampling_locat"),
        (lambda a: a.update(attention_weights=a["attention_weights"][..., :2]), "disagree"),
        (lambda a: a.update(attention_weights=a["attention_weights"][0]), "attention_weights must"),
        (
            lambda a: a.update(
                sampling_locations=a["sampling_locations"][:, :, :1],
                attention_weights=a["attention_weights"][:, :, :1],
            ),
            "heads",
        ),
        (lambda a: a.update(sampling_locations=a["sampling_locations"].float()), "dtype"),
    ],
)
def test_invalid_inputs_raise(change, message):
    value, shapes, starts, locations, weights = _inputs()
    args = dict(
        value=value,
        spatial_shapes=shapes,
        level_start_index=starts,
        sampling_locations=locations,
        attention_weights=weights,
    )
    change(args)
    with pytest.raises(ValueError, match=message):
        multi_scale_deformable_attention(**args)


# --------------------------------------------------------------------------- the module


def _module_inputs(shapes=SHAPES, batch=2, queries=6, channels=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    length = sum(h * w for h, w in shapes)
    query = torch.randn(batch, queries, channels, generator=gen)
    value = torch.randn(batch, length, channels, generator=gen)
    return query, value, torch.tensor(shapes), _level_starts(shapes)


def _module(levels=4, channels=16, heads=4, points=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    module = MultiScaleDeformableAttention(channels, heads, levels, points, **kwargs)
    with torch.no_grad():  # away from the init, where offsets and weights are plain
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module


def test_module_reference_points_sample_where_they_point():
    """Zero offsets, identity projections and a value whose channel is the normalised x
    (or y) of each pixel centre: bilinear sampling of that ramp returns the reference
    point itself, on every level (locations follow grid_sample, align_corners=False)."""
    shapes, channels = [(6, 8), (3, 4)], 4
    module = MultiScaleDeformableAttention(channels, num_heads=2, num_levels=2, num_points=2)
    with torch.no_grad():
        module.sampling_offsets.weight.zero_()
        module.sampling_offsets.bias.zero_()
        for proj in (module.value_proj, module.output_proj):
            proj.weight.copy_(torch.eye(channels))
            proj.bias.zero_()
    centres = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(
            (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij"
        )
        centres.append(torch.stack([xs, ys], -1).view(-1, 2))
    value = torch.cat(centres).repeat(1, 2)[None]  # (1, S, 4): head 0 and 1 get (x, y)
    # inside the centres of the coarsest level, where the ramp is interpolated exactly
    ref = torch.tensor([[0.2, 0.3], [0.5, 0.5], [0.8, 0.7]])
    out = module(
        torch.randn(1, 3, channels),
        ref[None, :, None].expand(1, 3, 2, 2),
        value,
        torch.tensor(shapes),
    )
    torch.testing.assert_close(out[0], ref.repeat(1, 2), rtol=1e-5, atol=1e-5)


def test_module_boxes_scale_offsets_by_box_size():
    """Box (cx, cy, w, h) references put point offsets in units of (w, h) / (2 P); with a
    box of 2 P pixels that is exactly the point reference's unit of one pixel."""
    shapes, points = [(9, 13)], 3
    module = _module(levels=1, points=points)
    query, value, spatial_shapes, starts = _module_inputs(shapes)
    centres = torch.rand(2, 6, 1, 2, generator=torch.Generator().manual_seed(1))
    box_size = torch.tensor([2.0 * points / 13, 2.0 * points / 9]).expand(2, 6, 1, 2)
    from_points = module(query, centres, value, spatial_shapes, starts)
    from_boxes = module(query, torch.cat([centres, box_size], -1), value, spatial_shapes, starts)
    torch.testing.assert_close(from_boxes, from_points, rtol=1e-5, atol=1e-5)
    smaller = module(query, torch.cat([centres, box_size / 2], -1), value, spatial_shapes, starts)
    assert not torch.allclose(smaller, from_points)


def test_module_padding_mask_zeroes_padded_values():
    module = _module()
    query, value, shapes, starts = _module_inputs()
    ref = torch.rand(2, 6, len(SHAPES), 2)
    mask = torch.zeros(2, value.shape[1], dtype=torch.bool)
    mask[0, 10:30] = True
    mask[1, -5:] = True
    out = module(query, ref, value, shapes, starts, value_padding_mask=mask)
    changed = value.masked_fill(mask[..., None], 1e3)
    torch.testing.assert_close(module(query, ref, changed, shapes, starts, mask), out)
    # the padded positions contribute nothing: as if value_proj gave 0 there
    unmasked = module(query, ref, changed, shapes, starts)
    assert not torch.allclose(unmasked, out)


def test_module_batch_first_false_and_registry():
    module = _module()
    query, value, shapes, starts = _module_inputs()
    ref = torch.rand(2, 6, len(SHAPES), 4)
    expected = module(query, ref, value, shapes, starts)
    other = MODELS.build(
        dict(
            type="MultiScaleDeformableAttention",
            embed_dims=16,
            num_heads=4,
            num_levels=len(SHAPES),
            num_points=3,
            batch_first=False,
        )
    )
    other.load_state_dict(module.state_dict())
    out = other(query.transpose(0, 1), ref, value.transpose(0, 1), shapes, starts)
    torch.testing.assert_close(out.transpose(0, 1), expected)


def test_module_init_pattern():
    """Head i looks along angle 2 pi i / heads (on the unit square), point j at j + 1
    pixels, on every level; attention starts uniform."""
    module = MultiScaleDeformableAttention(embed_dims=32, num_heads=8, num_levels=2, num_points=3)
    bias = module.sampling_offsets.bias.view(8, 2, 3, 2)
    assert torch.equal(
        module.sampling_offsets.weight, torch.zeros_like(module.sampling_offsets.weight)
    )
    expected_directions = torch.tensor(
        [[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]], dtype=torch.float32
    )
    for j in range(3):
        for level in range(2):
            torch.testing.assert_close(
                bias[:, level, j], expected_directions * (j + 1), atol=1e-5, rtol=0
            )
    assert not module.attention_weights.weight.any() and not module.attention_weights.bias.any()


def test_module_backward_reaches_every_parameter():
    module = _module()
    query, value, shapes, starts = _module_inputs()
    module(query, torch.rand(2, 6, len(SHAPES), 2), value, shapes, starts).square().sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(reference_points=torch.rand(2, 6, 4, 3)), "reference_points"),
        (dict(reference_points=torch.rand(2, 6, 3, 2)), "reference_points"),
        (dict(spatial_shapes=torch.tensor(SHAPES[:3])), "spatial_shapes must be \\(4, 2\\)"),
        (dict(value=torch.randn(2, 55, 16)), "S = 55"),
        (dict(value=torch.randn(2, 54, 8)), "embed_dims"),
        (dict(query=torch.randn(3, 6, 16)), "batch"),
        (dict(value_padding_mask=torch.zeros(2, 53, dtype=torch.bool)), "value_padding_mask"),
    ],
)
def test_module_invalid_inputs_raise(change, message):
    module = _module()
    query, value, shapes, starts = _module_inputs()
    args = dict(
        query=query,
        reference_points=torch.rand(2, 6, len(SHAPES), 2),
        value=value,
        spatial_shapes=shapes,
        level_start_index=starts,
    )
    args.update(change)
    with pytest.raises(ValueError, match=message):
        module(**args)


def test_module_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiScaleDeformableAttention(embed_dims=30, num_heads=8)
