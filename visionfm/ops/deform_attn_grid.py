"""Multi-scale deformable attention as one ``F.grid_sample`` per level: the traceable path.

The gather formulation of ``deform_attn_function.py`` (the default) reads the level
geometry as Python numbers (``tolist``), checks its inputs by value and has a hand-written
backward: none of that traces into a ``torch.export`` program or an ONNX graph. This
formulation, Deformable DETR's own PyTorch reference (and HF transformers'), traces into
``aten.grid_sampler_2d`` (ONNX ``GridSample``, opset >= 16) with the level sizes taken from
the maps' shapes, so an exported program keeps any input size. Same semantics: bilinear,
zeros outside the map, ``align_corners=False`` (0 and 1 are the outer edges of a map).
``MultiScaleDeformableAttention`` runs it while a model is being exported.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["deform_attn_grid_sample", "is_exporting"]


def is_exporting() -> bool:
    """True while ``torch.export`` (and so the dynamo ONNX exporter) or the TorchScript ONNX
    exporter traces the model: the traceable paths are taken then."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def deform_attn_grid_sample(
    value: torch.Tensor,
    level_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Attention-weighted sum of bilinear samples of multi-level value maps.

    Args:
        value: (B, S, heads, head_dim), the L levels flattened row-major and concatenated.
        level_shapes: L pairs (H_l, W_l), S = sum of H_l * W_l.
        sampling_locations: (B, Q, heads, L, P, 2) normalised (x, y).
        attention_weights: (B, Q, heads, L, P).

    Returns:
        (B, Q, heads * head_dim), as ``multi_scale_deformable_attention``.
    """
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = sampling_locations.shape
    per_level = value.split([h * w for h, w in level_shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1]
    samples = []
    for lvl, (h, w) in enumerate(level_shapes):
        # (B, H * W, heads, D) -> (B * heads, D, H, W)
        maps = per_level[lvl].flatten(2).transpose(1, 2).reshape(batch * heads, dim, h, w)
        grid = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)  # (B * heads, Q, P, 2)
        samples.append(
            F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        )  # (B * heads, D, Q, P)
    weights = attention_weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1)  # (B * heads, D, Q)
    return out.view(batch, heads * dim, queries).transpose(1, 2)
