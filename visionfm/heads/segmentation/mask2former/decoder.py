"""Masked-attention transformer decoder of Mask2Former (Cheng et al., "Masked-attention Mask
Transformer for Universal Image Segmentation", CVPR 2022).

Each layer: masked cross-attention of the queries into one level of the pixel decoder
(each query attends only the pixels its previous prediction holds as foreground,
``sigmoid(mask logit) >= 0.5``), then self-attention among the queries, then an FFN, each
with a residual and a post-norm. Layers visit the levels round-robin, coarsest first.

Two rules keep the masked attention well defined:

- a query whose predicted mask is empty at the level (no pixel >= 0.5) attends every pixel
  (the "empty mask" fix of the paper's code);
- padded pixels are never attended.

All softmax attention runs through :func:`visionfm.ops.attention.attention` (by
``DetrMultiheadAttention``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.layers import PostNormLayer
from visionfm.registry import MODELS

__all__ = ["MaskedAttentionDecoder", "MaskedAttentionDecoderLayer", "masked_attention_mask"]


@torch.no_grad()
def masked_attention_mask(
    mask_logits: Tensor, size: Sequence[int], padding: Tensor | None = None
) -> Tensor:
    """Which pixels of a level each query may attend.

    Args:
        mask_logits: (B, Q, H, W) the previous prediction's mask logits.
        size: (h, w) of the level.
        padding: (B, h, w) bool, True on padded pixels, or None.

    Returns:
        (B, 1, Q, h * w) bool, True = may attend: the pixels where the resized prediction's
        sigmoid is >= 0.5 (as the paper's code rounds it), except padding; a query left with none attends every valid
        pixel.
    """
    resized = F.interpolate(mask_logits, size=tuple(size), mode="bilinear")
    allowed = resized.flatten(2).sigmoid() >= 0.5  # (B, Q, h * w), in the logits' dtype
    valid = torch.ones_like(allowed[:, :1]) if padding is None else ~padding.flatten(1)[:, None]
    allowed = allowed & valid
    empty = ~allowed.any(-1, keepdim=True)  # (B, Q, 1)
    return (allowed | (empty & valid))[:, None]  # as a where(empty, valid, allowed) of bools


@MODELS.register_module()
class MaskedAttentionDecoderLayer(PostNormLayer):
    """Masked cross-attention -> self-attention -> FFN, post-norm (see the module doc).

    Args:
        cross_attn, self_attn: ``DetrMultiheadAttention`` modules, called as
            ``attn(query, key, value, mask)``.
        ffn: (B, Q, C) -> (B, Q, C), e.g. ``DetrFFN``.
        post_norm: ``dropout`` and ``norm_layer`` of :class:`~visionfm.layers.PostNormLayer`.
    """

    def __init__(
        self, cross_attn: nn.Module, self_attn: nn.Module, ffn: nn.Module, **post_norm
    ) -> None:
        super().__init__(dict(cross_attn=cross_attn, self_attn=self_attn, ffn=ffn), **post_norm)

    def forward(
        self,
        query: Tensor,
        query_pos: Tensor,
        feats: Tensor,
        pos: Tensor,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        """query, query_pos: (B, Q, C); feats, pos: (B, S, C) one level's pixels and their
        positions; attn_mask: bool (B, 1, Q, S), True = may attend -> (B, Q, C)."""
        cross = self.cross_attn(query + query_pos, feats + pos, feats, attn_mask)
        query = self.norm1(query + self.drop(cross))
        qk = query + query_pos
        query = self.norm2(query + self.drop(self.self_attn(qk, qk, query)))
        return self.norm3(query + self.drop(self.ffn(query)))


@MODELS.register_module()
class MaskedAttentionDecoder(nn.Module):
    """``num_layers`` copies of ``layer`` visiting the levels round-robin.

    The head supplies ``predict``: (B, Q, C) queries -> (class logits (B, Q, K + 1), mask
    logits (B, Q, H, W)); it runs before the first layer and after every layer, and each
    prediction's masks restrict the next layer's cross-attention.
    """

    def __init__(self, layer: nn.Module, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.embed_dims = layer.embed_dims

    def forward(
        self,
        query: Tensor,
        query_pos: Tensor,
        levels: Sequence[Tensor],
        level_pos: Sequence[Tensor],
        padding: Sequence[Tensor],
        predict: Callable[[Tensor], tuple[Tensor, Tensor]],
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Run the layers.

        Args:
            query, query_pos: (B, Q, C) initial content queries and their positions.
            levels: L maps (B, C, H_l, W_l), coarsest first; level_pos: their (B, C, H_l,
                W_l) positions (+ level embedding); padding: their (B, H_l, W_l) masks.
            predict: see the class doc.

        Returns:
            ``num_layers + 1`` class logits (B, Q, K + 1) and mask logits (B, Q, H, W): the
            prediction from the initial queries, then one after each layer.
        """
        flat = [x.flatten(2).transpose(1, 2) for x in levels]  # each (B, H_l * W_l, C)
        flat_pos = [p.flatten(2).transpose(1, 2).to(x.dtype) for p, x in zip(level_pos, flat)]
        cls_logits, mask_logits = predict(query)
        all_cls, all_masks = [cls_logits], [mask_logits]
        for i, layer in enumerate(self.layers):
            lvl = i % len(levels)
            attn_mask = masked_attention_mask(mask_logits, levels[lvl].shape[-2:], padding[lvl])
            query = layer(query, query_pos, flat[lvl], flat_pos[lvl], attn_mask)
            cls_logits, mask_logits = predict(query)
            all_cls.append(cls_logits)
            all_masks.append(mask_logits)
        return all_cls, all_masks
