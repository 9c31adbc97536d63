"""Grounding DINO's feature enhancer: per layer, image-text fusion, then text self-attention
under the sub-sentence mask, then deformable self-attention of the image tokens (Liu et al.,
ECCV 2024, section 3.2).

The image half is the Deformable DETR encoder layer of ``visionfm.heads.detr``; the text
half a post-norm layer of the same parts (:class:`TextEnhancerLayer`). Text tokens carry a
sine code of their position id (restarting in each phrase in sub-sentence mode).
"""

from __future__ import annotations

import copy
from dataclasses import replace

from torch import Tensor, nn

from visionfm.layers import Memory, PostNormLayer, sine_encoding
from visionfm.registry import MODELS

__all__ = ["GroundingEncoder", "GroundingEncoderLayer", "TextEnhancerLayer"]


@MODELS.register_module()
class TextEnhancerLayer(PostNormLayer):
    """Post-norm text layer: ``t = norm(t + attn(t)); t = norm(t + ffn(t))``.

    Args:
        self_attn: a ``DetrMultiheadAttention`` among the prompt's tokens.
        ffn: (B, T, C) -> (B, T, C).
        post_norm: ``dropout`` and ``norm_layer`` of :class:`~visionfm.layers.PostNormLayer`.
    """

    def __init__(self, self_attn: nn.Module, ffn: nn.Module, **post_norm) -> None:
        super().__init__(dict(self_attn=self_attn, ffn=ffn), **post_norm)

    def forward(self, text: Tensor, pos: Tensor, mask: Tensor) -> Tensor:
        """text, pos: (B, T, C); mask: (B, T, T) bool, True = may attend -> (B, T, C)."""
        qk = text + pos
        text = self.norm1(text + self.drop(self.self_attn(qk, qk, text, mask[:, None])))
        return self.norm2(text + self.drop(self.ffn(text)))


@MODELS.register_module()
class GroundingEncoderLayer(nn.Module):
    """Fusion, then the text layer, then the image layer.

    Args:
        fusion: an :class:`~visionfm.heads.grounding.ImageTextFusion`.
        text_layer: a :class:`TextEnhancerLayer`.
        image_layer: a ``DetrEncoderLayer`` with deformable self-attention.
    """

    def __init__(self, fusion: nn.Module, text_layer: nn.Module, image_layer: nn.Module) -> None:
        super().__init__()
        self.fusion, self.text_layer, self.image_layer = fusion, text_layer, image_layer
        self.embed_dims = image_layer.embed_dims

    def forward(self, memory: Memory, reference: Tensor, text_pos: Tensor) -> Memory:
        """memory: image tokens + ``memory.text``; reference: (B, S, L, 2) the image tokens'
        reference points; text_pos: (B, T, C) -> the memory with both streams updated."""
        text = memory.text
        image, words = self.fusion(memory.feats, text.feats, ~memory.padding_mask, text.mask)
        words = self.text_layer(words, text_pos, text.self_attn_mask)
        image = self.image_layer(image, reference, replace(memory, feats=image))
        return replace(memory, feats=image, text=replace(text, feats=words))


@MODELS.register_module()
class GroundingEncoder(nn.Module):
    """``num_layers`` copies of ``layer`` (a :class:`GroundingEncoderLayer`)."""

    def __init__(self, layer: nn.Module, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.embed_dims = layer.embed_dims

    def forward(self, memory: Memory) -> Memory:
        """memory with ``text`` (``TextFeatures``) -> both encoded."""
        if memory.text is None:
            raise ValueError("the grounding encoder needs the prompt's tokens (memory.text)")
        reference = memory.reference_points()
        ids = memory.text.position_ids[..., None].to(memory.feats.dtype)  # (B, T, 1)
        text_pos = sine_encoding(ids, self.embed_dims)  # (B, T, C)
        for layer in self.layers:
            memory = layer(memory, reference, text_pos)
        return memory
