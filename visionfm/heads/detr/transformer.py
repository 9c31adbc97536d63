"""Transformer encoder / decoder of the DETR family, shared by DETR, Deformable DETR and DINO.

DETR (Carion et al., ECCV 2020) runs global attention over one flattened feature map;
Deformable DETR (Zhu et al., ICLR 2021) replaces the attention into the image features by
multi-scale deformable attention and refines reference boxes layer by layer; DINO (Zhang et
al., ICLR 2023) adds box-conditioned query positions (from DAB-DETR) and look-forward-twice.

One layer class per side does all of them: what differs is injected.

- The attention that reads image features (encoder self-attention, decoder cross-attention)
  is a *memory attention*: a module called as ``attn(query, query_pos, reference, memory)``
  with ``query`` (B, N, C), ``query_pos`` (B, N, C) or None, ``reference`` (B, N, L, 2|4)
  or None (normalised to each level's padded map) and ``memory`` a ``deformable.Memory``, returning
  (B, N, C). :class:`GlobalMemoryAttention` (here) is DETR's;
  ``deformable.DeformableMemoryAttention`` is Deformable DETR's. A memory attention sets
  ``needs_reference`` so the stacks / head know whether to compute reference points.
- The decoder's ``ref_point_head`` (DINO) turns each layer's reference box into its query
  position; without it the query positions given by the head stay fixed (DETR, Deformable).
- The box heads are passed to :meth:`DetrDecoder.forward` by the head; the decoder applies
  them to every layer's output and, when ``refine``, feeds the refined boxes back as the next
  layer's references (detached), with optional look-forward-twice.

Every softmax attention runs through :func:`visionfm.ops.attention.attention`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from visionfm.layers import Memory, PostNormLayer, make_act, make_norm, sine_encoding
from visionfm.ops.attention import attention, check_backend
from visionfm.ops.boxes import inverse_sigmoid
from visionfm.registry import MODELS

__all__ = [
    "DetrDecoder",
    "DetrDecoderLayer",
    "DetrEncoder",
    "DetrEncoderLayer",
    "DetrFFN",
    "DetrMultiheadAttention",
    "GlobalMemoryAttention",
    "apply_box_delta",
]


@MODELS.register_module()
class DetrMultiheadAttention(nn.Module):
    """Multi-head attention with separate q / k / v projections, run by ``attention()``.

    ``forward(query (B, Nq, C), key (B, Nk, C), value (B, Nk, C), mask)`` -> (B, Nq, C);
    ``mask`` bool broadcastable to (B, heads, Nq, Nk), True = may attend.
    """

    def __init__(
        self, embed_dims: int, num_heads: int, dropout: float = 0.0, attn_backend: str | None = None
    ) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims {embed_dims} is not divisible by num_heads {num_heads}")
        self.embed_dims, self.num_heads, self.dropout = embed_dims, num_heads, dropout
        self.attn_backend = check_backend(attn_backend)
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            nn.Linear(embed_dims, embed_dims) for _ in range(4)
        )

    def _heads(self, x: Tensor) -> Tensor:  # (B, N, C) -> (B, heads, N, C / heads)
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        q = self._heads(self.q_proj(query))  # (B, heads, Nq, C / heads)
        k = self._heads(self.k_proj(key))  # (B, heads, Nk, C / heads)
        v = self._heads(self.v_proj(value))
        dropout_p = self.dropout if self.training else 0.0
        out = attention(q, k, v, mask=mask, dropout_p=dropout_p, backend=self.attn_backend)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # (B, Nq, C)


@MODELS.register_module()
class GlobalMemoryAttention(nn.Module):
    """DETR's attention into the image features: every query attends every valid token.

    Queries are ``query + query_pos``, keys ``memory.feats + memory.pos``, values
    ``memory.feats``; padded tokens are masked. Arguments as :class:`DetrMultiheadAttention`.
    """

    needs_reference = False

    def __init__(
        self, embed_dims: int, num_heads: int, dropout: float = 0.0, attn_backend: str | None = None
    ) -> None:
        super().__init__()
        self.embed_dims = embed_dims
        self.attn = DetrMultiheadAttention(embed_dims, num_heads, dropout, attn_backend)

    def forward(
        self, query: Tensor, query_pos: Tensor | None, reference: Tensor | None, memory: Memory
    ) -> Tensor:
        """query, query_pos: (B, N, C); reference: unused -> (B, N, C)."""
        q = query if query_pos is None else query + query_pos
        mask = ~memory.padding_mask[:, None, None, :]  # (B, 1, 1, S)
        return self.attn(q, memory.feats + memory.pos, memory.feats, mask)


@MODELS.register_module()
class DetrFFN(nn.Module):
    """Position-wise feed-forward: Linear -> act -> dropout -> Linear, (B, N, C) -> (B, N, C)."""

    def __init__(
        self,
        embed_dims: int,
        feedforward_dims: int,
        dropout: float = 0.0,
        act_layer: str | Callable[[], nn.Module] = "relu",
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(embed_dims, feedforward_dims),
            make_act(act_layer)(),
            nn.Dropout(dropout),
            nn.Linear(feedforward_dims, embed_dims),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@MODELS.register_module()
class DetrEncoderLayer(PostNormLayer):
    """Post-norm encoder layer: ``x = norm(x + attn(x)); x = norm(x + ffn(x))``.

    Args:
        self_attn: a memory attention (see module doc) over the layer's own tokens.
        ffn: (B, S, C) -> (B, S, C).
        post_norm: ``dropout`` and ``norm_layer`` of :class:`~visionfm.layers.PostNormLayer`.
    """

    def __init__(self, self_attn: nn.Module, ffn: nn.Module, **post_norm) -> None:
        super().__init__(dict(self_attn=self_attn, ffn=ffn), **post_norm)

    def forward(self, x: Tensor, reference: Tensor | None, memory: Memory) -> Tensor:
        """x: (B, S, C) tokens; reference: (B, S, L, 2) or None -> (B, S, C)."""
        attn = self.self_attn(x, memory.pos, reference, replace(memory, feats=x))
        x = self.norm1(x + self.drop(attn))
        return self.norm2(x + self.drop(self.ffn(x)))


@MODELS.register_module()
class DetrDecoderLayer(PostNormLayer):
    """Post-norm decoder layer: self-attention among queries, attention into the memory, FFN.

    Args:
        self_attn: :class:`DetrMultiheadAttention` among the queries.
        cross_attn: a memory attention (see module doc).
        ffn: (B, Q, C) -> (B, Q, C).
        post_norm: ``dropout`` and ``norm_layer`` of :class:`~visionfm.layers.PostNormLayer`.
    """

    def __init__(
        self, self_attn: nn.Module, cross_attn: nn.Module, ffn: nn.Module, **post_norm
    ) -> None:
        super().__init__(dict(self_attn=self_attn, cross_attn=cross_attn, ffn=ffn), **post_norm)

    def forward(
        self,
        query: Tensor,
        query_pos: Tensor | None,
        reference: Tensor | None,
        memory: Memory,
        self_attn_mask: Tensor | None = None,
    ) -> Tensor:
        """query, query_pos: (B, Q, C); reference: (B, Q, L, 2|4) or None; self_attn_mask:
        bool broadcastable to (B, heads, Q, Q), True = may attend -> (B, Q, C)."""
        qk = query if query_pos is None else query + query_pos
        query = self.norm1(query + self.drop(self.self_attn(qk, qk, query, self_attn_mask)))
        query = self.norm2(query + self.drop(self.cross_attn(query, query_pos, reference, memory)))
        return self.norm3(query + self.drop(self.ffn(query)))


def _clones(layer: nn.Module, num_layers: int) -> nn.ModuleList:
    """``num_layers`` independent copies of ``layer`` (the head re-initialises them)."""
    return nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))


@MODELS.register_module()
class DetrEncoder(nn.Module):
    """``num_layers`` copies of ``layer`` (a :class:`DetrEncoderLayer`) over the memory."""

    def __init__(self, layer: nn.Module, num_layers: int) -> None:
        super().__init__()
        self.layers = _clones(layer, num_layers)
        self.needs_reference = getattr(layer.self_attn, "needs_reference", False)

    def forward(self, memory: Memory) -> Tensor:
        """-> (B, S, C) encoded tokens."""
        reference = memory.reference_points() if self.needs_reference else None
        x = memory.feats
        for layer in self.layers:
            x = layer(x, reference, memory)
        return x


BOX_PARAMS = ("logit", "reparam")


def apply_box_delta(
    delta: Tensor, reference: Tensor | None, param: str = "logit", logit_eps: float = 1e-5
) -> Tensor:
    """A box head's output ``delta`` (B, Q, 4) applied to ``reference`` (B, Q, 2|4) in [0, 1]
    or None -> boxes (B, Q, 4) normalised cxcywh.

    ``param='logit'`` (DETR, Deformable DETR, DINO): the delta is added in inverse-sigmoid
    space (a 2-d reference shifts the centre only; no reference: ``sigmoid(delta)``), the
    reference's logit clamped at ``logit_eps`` (see ``inverse_sigmoid``).
    ``param='reparam'`` (LW-DETR / RF-DETR ``bbox_reparam``): the centre moves by
    ``delta_xy * reference_wh``, the size is ``reference_wh * exp(delta_wh)``; it needs a 4-d
    reference.
    """
    if param == "reparam":
        if reference is None or reference.shape[-1] != 4:
            raise ValueError("box_param='reparam' needs 4-d reference boxes (cx, cy, w, h)")
        centre = delta[..., :2] * reference[..., 2:] + reference[..., :2]
        return torch.cat((centre, delta[..., 2:].exp() * reference[..., 2:]), -1)
    if reference is None:
        return delta.sigmoid()
    if reference.shape[-1] == 2:
        return torch.cat(
            (delta[..., :2] + inverse_sigmoid(reference, logit_eps), delta[..., 2:]), -1
        ).sigmoid()
    return (delta + inverse_sigmoid(reference, logit_eps)).sigmoid()


@MODELS.register_module()
class DetrDecoder(nn.Module):
    """``num_layers`` copies of ``layer`` (a :class:`DetrDecoderLayer`) with box prediction.

    Args:
        layer: the decoder layer to copy.
        num_layers: number of layers.
        norm_layer: norm applied to every layer's output before prediction (DETR, DINO); None
            for none (Deformable DETR, whose post-norm layers end in a norm already).
        ref_point_head: (B, Q, 2 * C) sine code of a 4-d reference box -> (B, Q, C) query
            position, recomputed at every layer (DINO); None keeps the head's query positions.

        refine_from: what the box heads read for the NEXT layer's reference: ``'normed'``
            (the normed output that the prediction reads too: one box-head call per layer)
            or ``'raw'`` (the layer's un-normed output, as DINO's and Grounding DINO's code
            do; the prediction still reads the normed one).
        box_param: how a box head's output applies to its reference (``'logit'`` or
            ``'reparam'``, see :func:`apply_box_delta`); the head's proposals use it too.
        logit_eps: clamp of the references' inverse sigmoid (``apply_box_delta``): 1e-5 as
            Hugging Face's DETR family; 1e-3 as the original DINO and detrex code, whose
            selected border proposals (reference 1.0) then give other boxes.
        query_pos_frame: what ``ref_point_head``'s sine code reads: the reference relative
            to the image (``'image'``: the query position does not depend on the batch's
            padding) or to level 0's padded map (``'padded'``: DINO's, detrex's and Grounding
            DINO's code). The two agree on unpadded images.
    """

    def __init__(
        self,
        layer: nn.Module,
        num_layers: int,
        norm_layer: str | Callable[[int], nn.Module] | None = "LN_1e-5",
        ref_point_head: nn.Module | None = None,
        refine_from: str = "normed",
        box_param: str = "logit",
        logit_eps: float = 1e-5,
        query_pos_frame: str = "image",
    ) -> None:
        super().__init__()
        if refine_from not in ("normed", "raw"):
            raise ValueError(f"refine_from must be 'normed' or 'raw', got {refine_from!r}")
        if query_pos_frame not in ("image", "padded"):
            raise ValueError(
                f"query_pos_frame must be 'image' or 'padded', got {query_pos_frame!r}"
            )
        self.query_pos_frame = query_pos_frame
        if box_param not in BOX_PARAMS:
            raise ValueError(f"box_param must be one of {BOX_PARAMS}, got {box_param!r}")
        self.refine_from, self.box_param = refine_from, box_param
        self.logit_eps = logit_eps
        self.layers = _clones(layer, num_layers)
        self.embed_dims = layer.self_attn.embed_dims
        self.norm = (
            make_norm(norm_layer)(self.embed_dims) if norm_layer is not None else nn.Identity()
        )
        self.ref_point_head = ref_point_head
        self.needs_reference = getattr(layer.cross_attn, "needs_reference", False)

    def forward(
        self,
        query: Tensor,
        query_pos: Tensor | None,
        reference: Tensor | None,
        memory: Memory,
        box_heads: Sequence[nn.Module],
        self_attn_mask: Tensor | None = None,
        refine: bool = False,
        look_forward_twice: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Run the layers; predict boxes after each.

        Args:
            query: (B, Q, C) content queries; query_pos: (B, Q, C) or None (then
                ``ref_point_head`` makes them).
            reference: (B, Q, 2|4) in [0, 1] relative to the valid image, or None.
            box_heads: one module per layer, (B, Q, C) -> (B, Q, 4) box logits relative to
                the layer's reference (the same module repeated when not refining).
            self_attn_mask: bool broadcastable to (B, heads, Q, Q), True = may attend.
            refine: make each layer's boxes (detached) the next layer's references.
            look_forward_twice: layer i's prediction uses layer i-1's refined box WITHOUT the
                detach, so layer i's loss also trains layer i-1's box head (DINO).

        Returns:
            hidden (num_layers, B, Q, C) normed outputs and boxes (num_layers, B, Q, 4)
            normalised cxcywh.
        """
        hidden, boxes = [], []
        previous = reference  # the last refined reference, not detached
        for i, layer in enumerate(self.layers):
            ref_in = None
            if reference is not None:
                ratios = memory.valid_ratios  # (B, L, 2)
                if reference.shape[-1] == 4:
                    ratios = torch.cat((ratios, ratios), dim=-1)
                ref_in = reference[:, :, None] * ratios[:, None]  # (B, Q, L, 2|4)
            if self.ref_point_head is not None and (i == 0 or refine):
                frame = reference if self.query_pos_frame == "image" else ref_in[:, :, 0]
                query_pos = self.ref_point_head(sine_encoding(frame, self.embed_dims // 2))
            query = layer(query, query_pos, ref_in, memory, self_attn_mask)
            out = self.norm(query)
            delta = box_heads[i](out)  # (B, Q, 4)
            base = previous if look_forward_twice else reference
            predicted = apply_box_delta(delta, base, self.box_param, self.logit_eps)
            boxes.append(predicted)
            hidden.append(out)
            if refine:
                if self.refine_from == "raw":
                    delta = box_heads[i](query)
                refined = apply_box_delta(delta, reference, self.box_param, self.logit_eps)
                previous, reference = refined, refined.detach()
        return torch.stack(hidden), torch.stack(boxes)
