"""Multi-scale deformable attention (Zhu et al., "Deformable DETR", ICLR 2021): the module.

``MultiScaleDeformableAttention`` holds the value / offset / attention / output
projections, with offsets initialised in the paper's radial pattern, and is registered in
``MODELS``. The functional op, ``multi_scale_deformable_attention`` (pure PyTorch, exact
hand-written backward), lives in ``deform_attn_function.py`` and is re-exported here; while a
model is exported the module runs the traceable ``grid_sample`` formulation
(``deform_attn_grid.py``) instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from visionfm.registry import MODELS

from .deform_attn_function import multi_scale_deformable_attention
from .deform_attn_grid import deform_attn_grid_sample, is_exporting

__all__ = ["MultiScaleDeformableAttention", "multi_scale_deformable_attention"]


@MODELS.register_module()
class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention over L feature levels (the MSDeformAttn block of Deformable DETR).

    Each of ``num_heads`` heads predicts, from the query, ``num_points`` offsets per
    level around the query's reference point and a softmax over the L * P samples.

    Args:
        embed_dims: C, channels of query, value and output.
        num_heads: attention heads; C must divide by it.
        num_levels: L, feature levels in ``value``.
        num_points: P, sampling points per head and level.
        dropout: dropout on the output (after ``output_proj``).
        batch_first: True for (B, N, C) inputs/outputs, False for (N, B, C).
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        dropout: float = 0.0,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(
                f"embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})"
            )
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.batch_first = batch_first
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start as a radial pattern: head i looks along angle 2 pi i / heads, point
        j at j + 1 pixels (in the max-norm); uniform attention; Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angle = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        direction = torch.stack([angle.cos(), angle.sin()], -1)  # (heads, 2)
        direction = direction / direction.abs().amax(-1, keepdim=True)  # onto the unit square
        step = torch.arange(1, self.num_points + 1, dtype=torch.float32)[:, None]  # (P, 1)
        bias = direction[:, None, None, :] * step  # (heads, 1, P, 2)
        bias = bias.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor | None = None,
        value_padding_mask: torch.Tensor | None = None,
        level_shapes: Sequence[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """Deformable attention of the queries to the multi-level value.

        Args:
            query: (B, Q, C) (or (Q, B, C) when not ``batch_first``).
            reference_points: (B, Q, L, 2) normalised (x, y) points, or (B, Q, L, 4)
                normalised (cx, cy, w, h) boxes: offsets are then in units of half the
                box size / P.
            value: (B, S, C) (or (S, B, C)), the levels flattened and concatenated.
            spatial_shapes: (L, 2) integer (H_l, W_l).
            level_start_index: (L,) or None, see ``multi_scale_deformable_attention``.
            value_padding_mask: (B, S) bool, True where value is padding (zeroed).
            level_shapes: the same (H_l, W_l) as Python ints (symbolic sizes under
                ``torch.export``), e.g. ``Memory.level_shapes``; needed while exporting, when
                the traceable ``grid_sample`` formulation runs (``deform_attn_grid``).

        Returns:
            (B, Q, C) (or (Q, B, C)).
        """
        if not self.batch_first:
            query, value = query.transpose(0, 1), value.transpose(0, 1)
        if query.dim() != 3 or value.dim() != 3:
            raise ValueError(
                f"query and value must be 3-D, got {tuple(query.shape)} and {tuple(value.shape)}"
            )
        batch, queries, channels = query.shape
        length = value.shape[1]
        if channels != self.embed_dims or value.shape[2] != self.embed_dims:
            raise ValueError(
                f"query {tuple(query.shape)} and value {tuple(value.shape)} must have "
                f"embed_dims = {self.embed_dims} channels"
            )
        if value.shape[0] != batch:
            raise ValueError(f"query has batch {batch} but value has batch {value.shape[0]}")
        if spatial_shapes.shape != (self.num_levels, 2):
            raise ValueError(
                f"spatial_shapes must be ({self.num_levels}, 2) for num_levels="
                f"{self.num_levels}, got {tuple(spatial_shapes.shape)}"
            )
        if reference_points.shape[:3] != (batch, queries, self.num_levels) or (
            reference_points.shape[-1] not in (2, 4) or reference_points.dim() != 4
        ):
            raise ValueError(
                f"reference_points must be (B, Q, L, 2) points or (B, Q, L, 4) boxes with "
                f"(B, Q, L) = {(batch, queries, self.num_levels)}, got "
                f"{tuple(reference_points.shape)}"
            )

        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        value = self.value_proj(value)
        if value_padding_mask is not None:
            if value_padding_mask.shape != (batch, length):
                raise ValueError(
                    f"value_padding_mask must be (B, S) = {(batch, length)}, "
                    f"got {tuple(value_padding_mask.shape)}"
                )
            value = value.masked_fill(value_padding_mask[..., None], 0.0)
        value = value.view(batch, length, heads, -1)
        offsets = self.sampling_offsets(query).view(batch, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, queries, heads, levels * points)
        weights = weights.softmax(-1).view(batch, queries, heads, levels, points)

        ref = reference_points[:, :, None, :, None, :]  # (B, Q, 1, L, 1, 2 | 4)
        if reference_points.shape[-1] == 2:
            size_xy = spatial_shapes.flip(-1).to(offsets)  # (L, 2) as (W, H)
            locations = ref + offsets / size_xy[:, None, :]
        else:
            locations = ref[..., :2] + offsets * (ref[..., 2:] * (0.5 / points))
        # Under autocast value may be half while locations / softmax are float32: sample
        # in the widest dtype (as grid_sample does under autocast).
        dtype = torch.promote_types(
            torch.promote_types(value.dtype, locations.dtype), weights.dtype
        )
        value, locations, weights = value.to(dtype), locations.to(dtype), weights.to(dtype)
        if is_exporting():
            if level_shapes is None:
                raise ValueError(
                    "exporting deformable attention needs level_shapes=((H_l, W_l), ...) "
                    "read from the maps' shapes (e.g. Memory.level_shapes)"
                )
            out = deform_attn_grid_sample(value, level_shapes, locations, weights)
        else:
            out = multi_scale_deformable_attention(
                value, spatial_shapes, level_start_index, locations, weights
            )
        out = self.dropout(self.output_proj(out))
        return out if self.batch_first else out.transpose(0, 1)
