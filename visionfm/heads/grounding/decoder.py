"""Grounding DINO's cross-modality decoder layer: self-attention among the queries, then
attention into the prompt's tokens, then deformable attention into the image, then the FFN,
each post-normed (Liu et al., ECCV 2024, section 3.4). The stack is the DETR family's
``DetrDecoder`` (box refinement, query positions from the reference boxes)."""

from __future__ import annotations

from torch import Tensor, nn

from visionfm.layers import Memory, PostNormLayer
from visionfm.registry import MODELS

__all__ = ["GroundingDecoderLayer"]


@MODELS.register_module()
class GroundingDecoderLayer(PostNormLayer):
    """Args:
    self_attn: ``DetrMultiheadAttention`` among the queries.
    text_cross_attn: ``DetrMultiheadAttention`` from the queries into the text tokens.
    cross_attn: a memory attention into the image (``DeformableMemoryAttention``).
    ffn: (B, Q, C) -> (B, Q, C).
    post_norm: ``dropout`` and ``norm_layer`` of :class:`~visionfm.layers.PostNormLayer`.
    """

    def __init__(
        self,
        self_attn: nn.Module,
        text_cross_attn: nn.Module,
        cross_attn: nn.Module,
        ffn: nn.Module,
        **post_norm,
    ) -> None:
        super().__init__(
            dict(
                self_attn=self_attn, text_cross_attn=text_cross_attn, cross_attn=cross_attn, ffn=ffn
            ),
            **post_norm,
        )

    def forward(
        self,
        query: Tensor,
        query_pos: Tensor | None,
        reference: Tensor | None,
        memory: Memory,
        self_attn_mask: Tensor | None = None,
    ) -> Tensor:
        """query, query_pos: (B, Q, C); reference: (B, Q, L, 4); memory with ``text``;
        self_attn_mask: bool broadcastable to (B, heads, Q, Q), True = may attend."""
        qk = query if query_pos is None else query + query_pos
        query = self.norm1(query + self.drop(self.self_attn(qk, qk, query, self_attn_mask)))
        q = query if query_pos is None else query + query_pos
        text = memory.text
        words = self.text_cross_attn(q, text.feats, text.feats, text.mask[:, None, None, :])
        query = self.norm2(query + self.drop(words))
        query = self.norm3(query + self.drop(self.cross_attn(query, query_pos, reference, memory)))
        return self.norm4(query + self.drop(self.ffn(query)))
