"""The multi-scale memory of DETR-style heads, and deformable attention into it.

:class:`Memory` holds the image features flattened over levels with their positions, padding
masks and valid ratios (DETR's single map is the one-level case).

Deformable DETR (Zhu et al., "Deformable DETR: Deformable Transformers for End-to-End Object
Detection", ICLR 2021): each query attends a few sampled points per head and level around its
reference point (or inside its reference box), instead of every token.

The encoder and decoder stacks are the shared ones of ``transformer.py``: a Deformable DETR
encoder is ``DetrEncoder(DetrEncoderLayer(self_attn=DeformableMemoryAttention(...), ...))``
and its decoder ``DetrDecoder(DetrDecoderLayer(cross_attn=DeformableMemoryAttention(...),
...))``; the stacks compute the per-level reference points that this attention needs
(``needs_reference``), the padding masks and valid ratios come with the :class:`Memory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from visionfm.ops.deform_attn import MultiScaleDeformableAttention
from visionfm.registry import MODELS

__all__ = ["DeformableMemoryAttention", "Memory", "flatten_levels"]


@dataclass
class Memory:
    """Image features of a batch flattened over levels (S = sum of H_l * W_l tokens).

    feats: (B, S, C); pos: (B, S, C) positional + level embedding; padding_mask: (B, S) bool,
    True on padding; spatial_shapes: (L, 2) long ``(H_l, W_l)``; level_start_index: (L,) long;
    valid_ratios: (B, L, 2) ``(w, h)``: fraction of each level's map the image covers.
    level_shapes: the same ``(H_l, W_l)`` as Python ints, read from the maps' shapes (under
    ``torch.export`` symbolic sizes, so that an exported program keeps any input size).
    text: None, or the prompt's ``visionfm.text.TextFeatures`` (``feats`` (B, T, C), ``mask``
    (B, T) True on real tokens, ...) that grounding layers attend to next to the image.
    """

    feats: Tensor
    pos: Tensor
    padding_mask: Tensor
    spatial_shapes: Tensor
    level_start_index: Tensor
    valid_ratios: Tensor
    level_shapes: tuple[tuple[int, int], ...]
    text: Any = None

    def token_centres(self) -> Tensor:
        """(B, S, 2) ``(x, y)`` centre of every token normalised to the image's valid region
        (``(j + 0.5) / valid_W``): the same for an image whatever the batch's padding."""
        points = []
        for lvl, (h, w) in enumerate(self.level_shapes):
            ys, xs = torch.meshgrid(
                torch.arange(h, device=self.feats.device) + 0.5,
                torch.arange(w, device=self.feats.device) + 0.5,
                indexing="ij",
            )
            ratio = self.valid_ratios[:, lvl]  # (B, 2)
            x = xs.reshape(1, -1) / (ratio[:, None, 0] * w)  # (B, h * w)
            y = ys.reshape(1, -1) / (ratio[:, None, 1] * h)
            points.append(torch.stack((x, y), dim=-1))
        return torch.cat(points, dim=1).to(self.feats.dtype)

    def token_levels(self) -> Tensor:
        """(S,) long: the level of every token."""
        device = self.spatial_shapes.device
        return torch.cat(
            [
                torch.full((h * w,), lvl, dtype=torch.long, device=device)
                for lvl, (h, w) in enumerate(self.level_shapes)
            ]
        )

    def reference_points(self) -> Tensor:
        """(B, S, L, 2) token centres normalised to each level's padded map (the centres
        scaled by each level's valid ratio), as Deformable DETR's encoder uses them."""
        return self.token_centres()[:, :, None] * self.valid_ratios[:, None]


def flatten_levels(
    maps: Sequence[Tensor],
    masks: Sequence[Tensor],
    pos: Sequence[Tensor],
    level_embed: Tensor | None = None,
) -> Memory:
    """L maps (B, C, H_l, W_l), padding masks (B, H_l, W_l) and positional codes (B, C, H_l,
    W_l) -> one :class:`Memory`; ``level_embed`` (L, C) is added to each level's positions."""
    level_shapes = tuple((m.shape[-2], m.shape[-1]) for m in maps)
    shapes = torch.tensor(level_shapes, dtype=torch.long, device=maps[0].device)
    starts = torch.cat((shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]))
    pos_flat = [p.flatten(2).transpose(1, 2) for p in pos]  # each (B, H_l * W_l, C)
    if level_embed is not None:
        pos_flat = [p + level_embed[lvl] for lvl, p in enumerate(pos_flat)]
    valid_h = torch.stack([(~m[:, :, 0]).sum(1) / m.shape[1] for m in masks], dim=1)  # (B, L)
    valid_w = torch.stack([(~m[:, 0, :]).sum(1) / m.shape[2] for m in masks], dim=1)
    return Memory(
        feats=torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1),
        pos=torch.cat(pos_flat, dim=1).to(maps[0].dtype),
        padding_mask=torch.cat([m.flatten(1) for m in masks], dim=1),
        spatial_shapes=shapes,
        level_start_index=starts,
        valid_ratios=torch.stack((valid_w, valid_h), dim=-1).to(maps[0].dtype),
        level_shapes=level_shapes,
    )


@MODELS.register_module()
class DeformableMemoryAttention(nn.Module):
    """``visionfm.ops.deform_attn.MultiScaleDeformableAttention`` behind the memory-attention
    interface of ``transformer.py``.

    The sampling offsets and attention weights are computed from ``query + query_pos``;
    values are ``memory.feats`` with padded tokens zeroed (``memory.padding_mask``).

    Args:
        embed_dims: channels C; num_heads: attention heads; num_levels: feature levels L;
        num_points: sampling points per head and level.
    """

    needs_reference = True

    def __init__(
        self, embed_dims: int, num_heads: int = 8, num_levels: int = 4, num_points: int = 4
    ) -> None:
        super().__init__()
        self.embed_dims, self.num_levels = embed_dims, num_levels
        self.attn = MultiScaleDeformableAttention(embed_dims, num_heads, num_levels, num_points)

    def reset_parameters(self) -> None:
        """The op's own initialisation (radial offsets, uniform weights, Xavier projections)."""
        self.attn.reset_parameters()

    def forward(
        self, query: Tensor, query_pos: Tensor | None, reference: Tensor, memory: Memory
    ) -> Tensor:
        """query, query_pos: (B, N, C); reference: (B, N, L, 2) points or (B, N, L, 4) boxes,
        normalised to each level's padded map -> (B, N, C)."""
        if reference is None or reference.shape[2] != self.num_levels:
            shape = None if reference is None else tuple(reference.shape)
            raise ValueError(
                f"deformable attention over {self.num_levels} levels needs references "
                f"(B, N, {self.num_levels}, 2|4), got {shape}"
            )
        q = query if query_pos is None else query + query_pos
        return self.attn(
            q,
            reference,
            memory.feats,
            memory.spatial_shapes,
            memory.level_start_index,
            memory.padding_mask,
            memory.level_shapes,
        )
