"""Grounding DINO's image-text fusion: bi-directional cross-attention between the image
tokens and the prompt's tokens (Liu et al., "Grounding DINO: Marrying DINO with Grounded
Pre-Training for Open-Set Object Detection", ECCV 2024; after GLIP, Li et al., CVPR 2022).

Both streams are layer-normed, then each attends the other through shared projections (the
image's query projection is the text's key projection and vice versa) and adds the result
through a small layer scale (1e-4 at the start, so the fusion starts near identity)::

    image = norm_i(image);  text = norm_t(text)
    image = image + drop_path(gamma_i * out_i(attn(q=P_i image, k=P_t text, v=V_t text)))
    text  = text  + drop_path(gamma_t * out_t(attn(q=P_t text, k=P_i image, v=V_i image)))

with padded text tokens masked as keys of the image queries and padded image tokens as keys
of the text queries. Both attentions run through :func:`visionfm.ops.attention.attention`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from visionfm.layers import DropPath, LayerScale, make_norm
from visionfm.ops.attention import attention, check_backend
from visionfm.registry import MODELS

__all__ = ["ImageTextFusion"]


@MODELS.register_module()
class ImageTextFusion(nn.Module):
    """Bi-directional image <-> text cross-attention with layer-scale residuals.

    Args:
        embed_dims: width C of both streams.
        num_heads: attention heads.
        attn_dims: width of the attention's projections (Grounding DINO: half the encoder's
            FFN width, 1024).
        dropout: on the attention probabilities.
        drop_path: stochastic depth of both residual branches.
        init_scale: initial layer scale of both branches.
        norm_layer: the norm of each stream before the attention.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int,
        attn_dims: int,
        dropout: float = 0.0,
        drop_path: float = 0.0,
        init_scale: float = 1e-4,
        norm_layer: str | Callable[[int], nn.Module] = "LN_1e-5",
        attn_backend: str | None = None,
    ) -> None:
        super().__init__()
        if attn_dims % num_heads:
            raise ValueError(f"attn_dims {attn_dims} is not divisible by num_heads {num_heads}")
        self.embed_dims, self.num_heads, self.dropout = embed_dims, num_heads, dropout
        self.attn_backend = check_backend(attn_backend)
        self.image_norm = make_norm(norm_layer)(embed_dims)
        self.text_norm = make_norm(norm_layer)(embed_dims)
        self.image_proj, self.text_proj, self.image_value, self.text_value = (
            nn.Linear(embed_dims, attn_dims) for _ in range(4)
        )
        self.image_out = nn.Linear(attn_dims, embed_dims)
        self.text_out = nn.Linear(attn_dims, embed_dims)
        self.image_scale = LayerScale(embed_dims, init_scale)
        self.text_scale = LayerScale(embed_dims, init_scale)
        self.drop_path = DropPath(drop_path)

    def _heads(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, heads, N, D / heads)
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(
        self, image: Tensor, text: Tensor, image_valid: Tensor, text_valid: Tensor
    ) -> tuple[Tensor, Tensor]:
        """image: (B, S, C); text: (B, T, C); image_valid (B, S) / text_valid (B, T): bool,
        True on real tokens -> the updated (image, text)."""
        image, text = self.image_norm(image), self.text_norm(text)
        q_image = self._heads(self.image_proj(image))  # (B, heads, S, D / heads)
        q_text = self._heads(self.text_proj(text))  # (B, heads, T, D / heads)
        p = self.dropout if self.training else 0.0
        to_image = attention(
            q_image,
            q_text,
            self._heads(self.text_value(text)),
            mask=text_valid[:, None, None, :],
            dropout_p=p,
            backend=self.attn_backend,
        )
        to_text = attention(
            q_text,
            q_image,
            self._heads(self.image_value(image)),
            mask=image_valid[:, None, None, :],
            dropout_p=p,
            backend=self.attn_backend,
        )
        image = image + self.drop_path(
            self.image_scale(self.image_out(to_image.transpose(1, 2).flatten(2)))
        )
        text = text + self.drop_path(
            self.text_scale(self.text_out(to_text.transpose(1, 2).flatten(2)))
        )
        return image, text
