"""Where the decoder's queries come from: learned embeddings, or encoder proposals.

- DETR (Carion et al., ECCV 2020): learned query positions, zero content, no reference.
- Deformable DETR (Zhu et al., ICLR 2021), single stage: learned (position, content) pairs;
  2-d reference points ``sigmoid(Linear(position))``.
- DAB-DETR style anchors (Liu et al., ICLR 2022): learned content and learned 4-d reference
  boxes; the decoder's ``ref_point_head`` makes the positions.
- Deformable DETR, two stage: every encoder token proposes a box (a fixed-size box at its
  centre, refined by a box head); the top-k by class score become the references, and their
  sine code, through Linear + LayerNorm, both positions and content.
- DINO (Zhang et al., ICLR 2023), mixed query selection: top-k proposals as references,
  content queries learned (static), positions from the decoder's ``ref_point_head``.
- LW-DETR (Chen et al., 2024) / RF-DETR (Robinson et al., 2025): mixed selection whose
  references are the top-k proposals moved by learned per-query 4-d deltas
  (``mixed_anchors``); with Group DETR (Chen et al., ICCV 2023) every group of queries has its
  own proposal heads and top-k (:class:`GroupedProposals`), all groups in training, the first
  at inference.

The top-k proposals' boxes are detached before they become references; their class logits
and boxes are returned with gradient for the encoder (two-stage) loss.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from visionfm.layers import MLP, Memory, sine_encoding
from visionfm.ops.boxes import inverse_sigmoid

from .transformer import apply_box_delta

__all__ = [
    "DecoderQueries",
    "GroupedProposals",
    "LinearClassifier",
    "TwoStageProposals",
    "encoder_proposals",
    "query_mode",
]

QueryMode = Literal["learned_pos", "points", "anchors", "proposals", "mixed", "mixed_anchors"]
_MODES = ("learned_pos", "points", "anchors", "proposals", "mixed", "mixed_anchors")


def query_mode(
    two_stage: bool,
    mixed: bool,
    ref_point_head: nn.Module | None,
    needs_reference: bool,
    denoising: bool,
    anchor_deltas: bool = False,
) -> QueryMode:
    """The query mode a head's options ask for; incompatible options raise ValueError."""
    if mixed and not two_stage:
        raise ValueError("mixed_query_selection needs two_stage=True")
    if anchor_deltas and not mixed:
        raise ValueError("anchor_deltas needs mixed_query_selection=True (and two_stage=True)")
    if (mixed or denoising) and ref_point_head is None:
        raise ValueError(
            "mixed query selection and denoising need the decoder's ref_point_head (their "
            "queries have no learned position)"
        )
    if two_stage:
        if not mixed and ref_point_head is not None:
            raise ValueError("two_stage with a ref_point_head: set mixed_query_selection=True")
        if mixed:
            return "mixed_anchors" if anchor_deltas else "mixed"
        return "proposals"
    if ref_point_head is not None:
        return "anchors"
    return "points" if needs_reference else "learned_pos"


def encoder_proposals(
    memory: Memory, base_scale: float = 0.05, margin: float = 0.01, box_param: str = "logit"
) -> tuple[Tensor, Tensor]:
    """One box per encoder token: its centre, sized ``base_scale * 2 ** level``.

    Returns ``proposals`` (B, S, 4) normalised cxcywh, as logits (inverse sigmoid) for
    ``box_param='logit'``, as they are for ``'reparam'`` (``apply_box_delta``), 0 where
    invalid; and ``valid`` (B, S) bool: not padding and every coordinate inside
    ``(margin, 1 - margin)``. Centres are normalised to the valid image, so they do not
    depend on the batch's padding.
    """
    centres = memory.token_centres()  # (B, S, 2)
    size = base_scale * 2.0 ** memory.token_levels().to(centres)  # (S,)
    proposals = torch.cat((centres, size[None, :, None].expand(centres.shape[0], -1, 2)), dim=-1)
    inside = ((proposals > margin) & (proposals < 1 - margin)).all(-1)
    valid = inside & ~memory.padding_mask
    if box_param == "logit":
        proposals = inverse_sigmoid(proposals)
    proposals = proposals.masked_fill(~valid[..., None], 0.0)
    return proposals.to(memory.feats.dtype), valid


class LinearClassifier(nn.Linear):
    """``nn.Linear`` called as a classifier of the DETR heads: ``(x (B, Q, C), memory) ->
    (B, Q, num_classes)``; the memory is not read (a grounding head's contrastive classifier
    reads the prompt's tokens from it)."""

    def forward(self, x: Tensor, memory: Memory | None = None) -> Tensor:
        return super().forward(x)


class TwoStageProposals(nn.Module):
    """Encoder proposals and their top-k selection (two-stage Deformable DETR / DINO).

    Each valid token's feature goes through Linear + LayerNorm, then the class head
    ``cls_head(feats, memory)``. The top-k go by their best class logit (for a
    grounding head: their best prompt token, language-guided query selection); only they go
    through the box head (box logits added to the token's fixed proposal,
    :func:`encoder_proposals`, as ``box_param`` says: see ``apply_box_delta``). Tokens at
    the border or on padding (not ``valid``, :func:`encoder_proposals`) are never selected,
    unless ``select_invalid``: as in the original DINO / Grounding DINO code (and HF's), they
    keep their score from zeroed features and, if selected, get the full-image box
    (1, 1, 1, 1) — needed for published weights to give the same outputs.
    ``class_agnostic``: the top-k go by class 0's logit instead (the original two-stage
    Deformable DETR, and HF's, whose encoder class head learns "object" as class 0).
    """

    def __init__(
        self,
        embed_dims: int,
        cls_head: nn.Module,
        base_scale: float = 0.05,
        select_invalid: bool = False,
        box_param: str = "logit",
        class_agnostic: bool = False,
    ) -> None:
        super().__init__()
        self.base_scale, self.select_invalid = base_scale, select_invalid
        self.class_agnostic = class_agnostic
        self.box_param = box_param
        self.proj = nn.Linear(embed_dims, embed_dims)
        self.norm = nn.LayerNorm(embed_dims)
        self.cls_head = cls_head
        self.box_head = MLP(embed_dims, embed_dims, 4, 3)

    def forward(self, tokens: Tensor, memory: Memory, num_queries: int) -> dict[str, Tensor]:
        """tokens: (B, S, C) encoder output.

        Returns ``logits`` (B, K, num_classes) and ``boxes`` (B, K, 4) normalised cxcywh of the
        K = ``num_queries`` best-scoring valid proposals (with gradient), and ``reference``
        (B, K, 4): the same boxes, detached.
        """
        if tokens.shape[1] < num_queries:
            raise ValueError(
                f"two-stage selection needs at least num_queries={num_queries} encoder tokens, "
                f"got {tokens.shape[1]}: use larger images or fewer queries"
            )
        proposals, valid = encoder_proposals(memory, self.base_scale, box_param=self.box_param)
        feats = self.norm(self.proj(tokens.masked_fill(~valid[..., None], 0.0)))
        logits = self.cls_head(feats, memory)  # (B, S, num_classes)
        score = logits.detach()[..., 0] if self.class_agnostic else logits.detach().max(-1).values
        if not self.select_invalid:
            score = score.masked_fill(~valid, float("-inf"))
        index = score.topk(num_queries, dim=1).indices  # (B, K)
        logits = logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))
        # the box head reads only the selected tokens' features (B, K, C), not all S
        delta = self.box_head(feats.gather(1, index[..., None].expand(-1, -1, feats.shape[-1])))
        base = proposals.gather(1, index[..., None].expand(-1, -1, 4))
        if self.box_param == "logit":
            boxes = (delta + base).sigmoid()
        else:
            boxes = apply_box_delta(delta, base, self.box_param)
        if self.select_invalid:  # the original code: the full-image box if selected
            chosen = valid.gather(1, index)  # (B, K)
            boxes = boxes.masked_fill(~chosen[..., None], 1.0)
        return dict(logits=logits, boxes=boxes, reference=boxes.detach())


class GroupedProposals(nn.ModuleList):
    """One :class:`TwoStageProposals` per query group (Group DETR): each group projects the
    tokens with its own layers and takes its own top-k. In training every group runs; in
    eval mode only the first (the groups are a training device).

    ``forward(tokens (B, S, C), memory, num_queries)`` -> the groups' outputs concatenated
    along the queries: ``logits`` (B, G * K, num_classes), ``boxes`` / ``reference``
    (B, G * K, 4), group g's at ``g * K : (g + 1) * K``.
    """

    def forward(self, tokens: Tensor, memory: Memory, num_queries: int) -> dict[str, Tensor]:
        groups = list(self) if self.training else list(self)[:1]
        outs = [group(tokens, memory, num_queries) for group in groups]
        return {k: torch.cat([o[k] for o in outs], dim=1) for k in outs[0]}


class DecoderQueries(nn.Module):
    """The decoder's initial (content, position, reference) for one of the modes of the
    module doc: ``learned_pos`` (DETR), ``points`` (Deformable DETR), ``anchors`` (DAB),
    ``proposals`` (two-stage Deformable DETR), ``mixed`` (DINO), ``mixed_anchors`` (LW-DETR /
    RF-DETR: the proposals moved by learned deltas, applied as ``box_param`` says).

    ``num_groups`` (Group DETR, modes ``mixed`` / ``mixed_anchors``): ``num_groups *
    num_queries`` learned queries; as many are used as proposals are given (the first group
    at inference, see :class:`GroupedProposals`).
    """

    def __init__(
        self,
        mode: QueryMode,
        num_queries: int,
        embed_dims: int,
        num_groups: int = 1,
        box_param: str = "logit",
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"unknown query mode {mode!r}")
        if num_groups > 1 and mode not in ("mixed", "mixed_anchors"):
            raise ValueError(
                f"num_groups={num_groups} (Group DETR) needs two-stage mixed query selection "
                f"(two_stage=True, mixed_query_selection=True), not query mode {mode!r}"
            )
        self.mode, self.num_queries, self.embed_dims = mode, num_queries, embed_dims
        self.box_param = box_param
        total = num_queries * num_groups
        if mode in ("learned_pos", "mixed", "anchors", "mixed_anchors"):
            self.content = nn.Embedding(total, embed_dims)  # positions for learned_pos
        if mode == "points":
            self.content = nn.Embedding(num_queries, 2 * embed_dims)  # (position, content)
            self.point_head = nn.Linear(embed_dims, 2)
        if mode in ("anchors", "mixed_anchors"):
            self.anchors = nn.Embedding(total, 4)
        if mode == "proposals":
            self.pos_trans = nn.Linear(2 * embed_dims, 2 * embed_dims)
            self.pos_norm = nn.LayerNorm(2 * embed_dims)

    def reset_parameters(self) -> None:
        if self.mode == "points":
            nn.init.xavier_uniform_(self.point_head.weight)
            nn.init.zeros_(self.point_head.bias)
        if self.mode == "anchors":
            nn.init.uniform_(self.anchors.weight, -3.0, 3.0)  # spread in logit space
        if self.mode == "mixed_anchors":  # start at the proposals
            nn.init.zeros_(self.anchors.weight)
        if self.mode == "proposals":
            nn.init.xavier_uniform_(self.pos_trans.weight)
            nn.init.zeros_(self.pos_trans.bias)

    def forward(
        self, batch_size: int, proposals: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """proposals: (B, Q, 4) detached top-k boxes in [0, 1] (two-stage modes only; with
        groups Q = groups in use x ``num_queries``).

        Returns content (B, Q, C), position (B, Q, C) or None (made by the decoder's
        ``ref_point_head``), reference (B, Q, 2|4) in [0, 1] or None.
        """
        b = batch_size
        if self.mode == "learned_pos":
            pos = self.content.weight.expand(b, -1, -1)
            return torch.zeros_like(pos), pos, None
        if self.mode == "points":
            pos, content = self.content.weight.expand(b, -1, -1).chunk(2, dim=-1)
            return content, pos, self.point_head(pos).sigmoid()
        if self.mode == "anchors":
            return (
                self.content.weight.expand(b, -1, -1),
                None,
                self.anchors.weight.sigmoid()[None].expand(b, -1, -1),
            )
        if proposals is None:
            raise ValueError(f"query mode {self.mode!r} needs the encoder's proposals")
        n = proposals.shape[1]
        if self.mode == "mixed":
            return self.content.weight[:n].expand(b, -1, -1), None, proposals
        if self.mode == "mixed_anchors":
            deltas = self.anchors.weight[:n].expand(b, -1, -1)
            reference = apply_box_delta(deltas, proposals, self.box_param)
            return self.content.weight[:n].expand(b, -1, -1), None, reference
        code = self.pos_norm(self.pos_trans(sine_encoding(proposals, self.embed_dims // 2)))
        pos, content = code.chunk(2, dim=-1)
        return content, pos, proposals
