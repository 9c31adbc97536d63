"""Contrastive classification of queries against the prompt's tokens (Grounding DINO,
Liu et al., ECCV 2024; scaled + biased as in MM-Grounding-DINO, Zhao et al., 2024).

``logit[q, t] = query_q . token_t * s + b`` with ``s = 1 / sqrt(C)`` (or 1) and a learnable
scalar ``b`` (or none); padded tokens get :data:`MASKED_LOGIT`. A query's score for a phrase
is then the mean of its tokens' sigmoid scores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from visionfm.layers import Memory

__all__ = ["MASKED_LOGIT", "ContrastiveClassifier"]

#: The logit of padded tokens: sigmoid gives exactly 0 and focal costs stay finite (-inf
#: would make the matcher's 0-weighted terms NaN); fits float16.
MASKED_LOGIT = -1e4

#: The focal-loss prior: sigmoid(bias) = 0.01.
PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)


class ContrastiveClassifier(nn.Module):
    """``(query (B, Q, C), memory) -> (B, Q, T)`` logits over ``memory.text``'s tokens.

    Args:
        embed_dims: C.
        scaled: divide by ``sqrt(C)`` (MM-Grounding-DINO; the original Grounding DINO: no).
        bias: learnable scalar bias, initialised to the focal prior (-4.595) by the head;
            False: none (the original Grounding DINO).
    """

    def __init__(self, embed_dims: int, scaled: bool = True, bias: bool = True) -> None:
        super().__init__()
        self.scale = 1 / math.sqrt(embed_dims) if scaled else 1.0
        self.bias = nn.Parameter(torch.tensor(PRIOR_BIAS)) if bias else None

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}, bias={self.bias is not None}"

    def forward(self, query: Tensor, memory: Memory) -> Tensor:
        text = memory.text
        logits = query @ text.feats.transpose(-1, -2) * self.scale  # (B, Q, T)
        if self.bias is not None:
            logits = logits + self.bias
        return logits.masked_fill(~text.mask[:, None, :], MASKED_LOGIT)
