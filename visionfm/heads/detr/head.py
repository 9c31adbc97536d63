"""One detection head for the DETR family: DETR, Deformable DETR (box refinement, two-stage)
and DINO, each a configuration of :class:`DETRHead`.

Papers: DETR (Carion et al., ECCV 2020); Deformable DETR (Zhu et al., ICLR 2021); DINO
(Zhang et al., ICLR 2023).

Pipeline: the chosen feature levels are projected to ``embed_dims`` (a
:class:`~visionfm.necks.ChannelMapper` owned by the head, with extra stride-2 levels when
``num_feature_levels`` exceeds the inputs), flattened with sine positions (+ level
embeddings for several levels) and per-level padding masks into a :class:`Memory`; the
encoder encodes it; queries come from :class:`DecoderQueries` (learned, or the top-k
two-stage proposals); DINO's denoising queries are put in front during training; the
decoder returns every layer's hidden states and boxes; a class head per layer gives logits.

Where the variants differ (all by config):

=====================  ================  ==========================  ======================
                       DETR              Deformable DETR             DINO
=====================  ================  ==========================  ======================
memory attention       global            deformable                  deformable
levels                 1                 4 (3 + 1 extra)             4 or 5
queries                learned position  learned position + 2-d      top-k proposals +
                                         point; two-stage: top-k     learned content
                                         proposals                   (mixed selection)
query position         fixed             fixed                       ``ref_point_head`` of
                                                                     the reference box
box refinement         no                ``with_box_refine``         yes, look-forward-twice
denoising              no                no                          ``CdnQueryGenerator``
=====================  ================  ==========================  ======================

LW-DETR (Chen et al., 2024) / RF-DETR (Robinson et al., 2025) are configurations too: no
encoder (``encoder=None``) and no input projection (``project_inputs=False``: their projector
neck makes the levels), two-stage mixed selection whose references are the proposals moved by
learned 4-d deltas (``anchor_deltas``), ``bbox_reparam`` boxes (the decoder's
``box_param='reparam'``), references kept over the layers (``with_box_refine=False``), Group
DETR (``num_groups``: per-group proposal heads and top-k, each group decoded as an image of
its own so that groups never attend each other, each matched on its own; in training only)
and the IoU-aware BCE (``cls_loss='iou_aware'``); see ``configs/_base_/models/rf-detr_small.py``.

Losses (all variants): sigmoid focal classification + L1 + GIoU after Hungarian matching
with focal costs, on every decoder layer (``d{i}.`` prefixes for the auxiliary ones), on the
two-stage proposals (``enc_``) and on the denoising queries (``dn_``, matched by
construction). Our DETR configs train DETR like Deformable DETR (focal loss): one matcher and
one loss for the family, and it converges faster. ``classification='softmax'`` is DETR's own
form, which its published weights need: ``num_classes + 1`` logits, the last "no object";
cross-entropy with that class weighted ``no_object_weight`` (DETR: 0.1), the matcher's class
cost ``-softmax[target]`` and scores ``softmax`` without the last column, best class per
query (``losses.softmax_classification_loss``, ``HungarianMatcher(classification=...)``).
Boxes are normalised to each image's valid region (``img_shape``), not to the padded batch.

Beside this module: the loss assembly (``head_losses.DETRLosses``), the post-processing
(``postprocess.DETRPostprocess``), the construction checks (``head_checks``) and Group DETR's
batch folding (``query_groups``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.data.batch import padding_mask
from visionfm.layers import (
    MLP,
    DeformableMemoryAttention,
    Memory,
    SinePositionalEncoding,
    flatten_levels,
)
from visionfm.necks.channel_mapper import ChannelMapper
from visionfm.ops.boxes import rescale_boxes
from visionfm.registry import MODELS, settings

from ..base import Head
from .head_checks import check_classification, check_levels, check_unprojected
from .head_losses import DETRLosses
from .postprocess import DETRPostprocess
from .query_groups import fold_groups, repeat_batch
from .query_selection import (
    DecoderQueries,
    GroupedProposals,
    LinearClassifier,
    TwoStageProposals,
    query_mode,
)

__all__ = ["DETRHead"]

_TEST_CFG = MappingProxyType(dict(max_per_img=100, score_thr=0.0))  # all the settings there are


def _resize_mask(mask: Tensor, like: Tensor) -> Tensor:
    """(B, H, W) bool padding mask -> (B, h, w) at the size of ``like`` (..., h, w), nearest."""
    return F.interpolate(mask[None].float(), size=like.shape[-2:])[0].bool()


def _select(feats: Mapping[str, Tensor], in_channels) -> dict[str, Tensor]:
    if isinstance(in_channels, Mapping):
        return {k: feats[k] for k in in_channels}
    return dict(list(feats.items())[-len(in_channels) :])


@MODELS.register_module()
class DETRHead(DETRLosses, DETRPostprocess, Head):
    """DETR / Deformable DETR / DINO detection head (see the module doc).

    Args:
        num_classes: object classes (sigmoid scores: no background class; softmax: one more
            logit, "no object").
        embed_dims: transformer width C.
        encoder: a ``DetrEncoder``, or None (LW-DETR / RF-DETR: the neck's tokens go to the
            decoder as they are; no level embedding then); decoder: a ``DetrDecoder``
            (layers injected).
        matcher: e.g. ``HungarianMatcher``.
        in_channels: ``{level: channels}`` of the input feature dict to use (the neck's or
            backbone's ``out_channels``), or a list for its last levels.
        strides: ``{level: stride}`` / list aligned with ``in_channels`` (``out_strides``).
        num_queries: matching queries.
        num_feature_levels: levels in the memory; beyond the inputs, stride-2 extra levels are
            added by the input projection. None: as many as inputs.
        positional_encoding: (B, H, W) padding mask -> (B, C, H, W); default: normalised sine.
        two_stage: queries from the top-k encoder proposals (+ ``enc_`` losses).
        with_box_refine: one box / class head per decoder layer; each layer's boxes become
            the next layer's references (detached).
        denoising: a ``CdnQueryGenerator`` (DINO), used in training only.
        mixed_query_selection: with ``two_stage``: learned content queries, references from
            the proposals, positions from the decoder's ``ref_point_head`` (DINO).
        look_forward_twice: with ``with_box_refine``: see ``DetrDecoder.forward``.
        share_pred_heads: with ``with_box_refine``: one class head and one box head for every
            decoder layer (Grounding DINO) instead of one per layer.
        select_invalid_proposals: with ``two_stage``: border / padding tokens may be among the
            top-k proposals, as in the original DINO / Grounding DINO code (see
            ``TwoStageProposals``); needed by their published weights.
        class_agnostic_proposals: with ``two_stage``: the top-k proposals go by class 0's
            logit and the ``enc_`` losses see every target as class 0 (the original two-stage
            Deformable DETR and HF's: an "object" score); needed by their published weights.
        loss_cls, loss_bbox, loss_giou: loss weights.
        focal_alpha, focal_gamma: focal loss parameters.
        cls_loss: the sigmoid classification loss: ``'focal'``, or ``'iou_aware'`` (LW-DETR /
            RF-DETR's IoU-aware BCE, ``losses.iou_aware_classification_loss``; its alpha and
            gamma are ``focal_alpha`` / ``focal_gamma``).
        classification: ``'sigmoid'`` (focal; no background class) or ``'softmax'`` (DETR's
            "no object" class, see the module doc; learned queries only, and the matcher
            built with the same ``classification``).
        no_object_weight: with ``'softmax'``: the cross-entropy weight of "no object".
        input_norm: norm of the input projection (``'GN'``; None: plain conv, exactly
            padding-invariant, since GroupNorm statistics include padded pixels).
        input_bias: biased input-projection convs before the norm (the original DINO and
            Grounding DINO code; see ``ChannelMapper``'s ``conv_bias``).
        mask_padded_inputs: zero the input levels on padded pixels before the projection, so
            that an image's extra levels do not depend on the batch's padding; False: as the
            original Deformable DETR / DINO code and HF (the extra levels' convs and the
            GroupNorm statistics read the backbone's values there), for their published
            weights to give the same outputs in padded batches.
        project_inputs: False: no input projection; the input levels must be
            ``embed_dims`` wide and give every feature level (LW-DETR / RF-DETR, whose
            projector neck makes them).
        anchor_deltas: with ``mixed_query_selection``: each query's reference is its top-k
            proposal moved by a learned 4-d delta (LW-DETR / RF-DETR ``refpoint_embed``).
        num_groups: Group DETR (LW-DETR / RF-DETR ``group_detr``): in training ``num_groups``
            groups of ``num_queries`` queries, each with its own proposal heads and top-k,
            that do not attend each other (the decoder runs each group as an image of its
            own: the block-diagonal self-attention without computing the masked pairs), each
            matched to every target on its own; at inference the first group only. Needs
            two-stage mixed query selection.
        test_cfg: ``max_per_img`` (top-k over queries x classes), ``score_thr``; a dict
            setting some of them.
    """

    predicts = ("pred_instances",)
    class_layers = (r"cls_heads\.", r"proposals\.(.+\.)?cls_head\.", r"denoising\.label_embed\.")

    def __init__(
        self,
        num_classes: int,
        embed_dims: int,
        encoder: nn.Module,
        decoder: nn.Module,
        matcher: nn.Module,
        in_channels: Mapping[str, int] | Sequence[int],
        strides: Mapping[str, int] | Sequence[int],
        num_queries: int = 300,
        num_feature_levels: int | None = None,
        positional_encoding: nn.Module | None = None,
        two_stage: bool = False,
        with_box_refine: bool = False,
        denoising: nn.Module | None = None,
        mixed_query_selection: bool = False,
        look_forward_twice: bool = False,
        share_pred_heads: bool = False,
        select_invalid_proposals: bool = False,
        class_agnostic_proposals: bool = False,
        loss_cls: float = 1.0,
        loss_bbox: float = 5.0,
        loss_giou: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        cls_loss: str = "focal",
        classification: str = "sigmoid",
        no_object_weight: float = 0.1,
        input_norm: str | Callable[[int], nn.Module] | None = "GN",
        input_bias: bool = False,
        mask_padded_inputs: bool = True,
        project_inputs: bool = True,
        anchor_deltas: bool = False,
        num_groups: int = 1,
        test_cfg: Mapping = _TEST_CFG,
    ) -> None:
        super().__init__()
        num_in = len(in_channels)
        levels = num_feature_levels or num_in
        ref_head = getattr(decoder, "ref_point_head", None)
        if look_forward_twice and not with_box_refine:
            raise ValueError("look_forward_twice needs with_box_refine=True")
        if num_groups < 1 or (num_groups > 1 and denoising is not None):
            raise ValueError(
                f"num_groups={num_groups}: Group DETR needs num_groups >= 1 and no denoising"
            )
        check_levels(levels, num_in, encoder, decoder)
        if not project_inputs:
            check_unprojected(in_channels, embed_dims, levels)
        self.num_classes, self.embed_dims, self.num_queries = num_classes, embed_dims, num_queries
        self.in_channels, self.num_groups = in_channels, num_groups
        self.two_stage, self.with_box_refine = two_stage, with_box_refine
        self.look_forward_twice = look_forward_twice
        self.class_agnostic_proposals = class_agnostic_proposals
        self.mask_padded_inputs = mask_padded_inputs
        self.loss_weights = dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_giou=loss_giou)
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        if cls_loss not in ("focal", "iou_aware") or (
            cls_loss == "iou_aware" and classification != "sigmoid"
        ):
            raise ValueError(
                f"cls_loss must be 'focal' or 'iou_aware' (sigmoid classification), got "
                f"{cls_loss!r} with classification={classification!r}"
            )
        self.cls_loss = cls_loss
        check_classification(classification, matcher, two_stage or denoising is not None)
        self.classification, self.no_object_weight = classification, no_object_weight
        self.test_cfg = settings(test_cfg, _TEST_CFG, "test_cfg")

        self.input_proj = None
        if project_inputs:
            self.input_proj = ChannelMapper(
                in_channels,
                strides,
                embed_dims,
                levels - num_in,
                norm_layer=input_norm,
                conv_bias=input_bias or input_norm is None,
            )
        self.positional_encoding = positional_encoding or SinePositionalEncoding(embed_dims // 2)
        self.level_embed = None
        if levels > 1 and encoder is not None:
            self.level_embed = nn.Parameter(torch.empty(levels, embed_dims))
        self.encoder, self.decoder, self.matcher, self.denoising = (
            encoder,
            decoder,
            matcher,
            denoising,
        )
        mode = query_mode(
            two_stage,
            mixed_query_selection,
            ref_head,
            decoder.needs_reference,
            denoising is not None,
            anchor_deltas,
        )
        box_param = getattr(decoder, "box_param", "logit")
        self.queries = DecoderQueries(mode, num_queries, embed_dims, num_groups, box_param)
        self.proposals = None
        if two_stage:
            groups = [
                TwoStageProposals(
                    embed_dims,
                    self._make_classifier(),
                    select_invalid=select_invalid_proposals,
                    class_agnostic=class_agnostic_proposals,
                    box_param=box_param,
                )
                for _ in range(num_groups)
            ]
            self.proposals = groups[0] if num_groups == 1 else GroupedProposals(groups)
        num_heads = len(decoder.layers) if with_box_refine and not share_pred_heads else 1
        self.cls_heads = nn.ModuleList(self._make_classifier() for _ in range(num_heads))
        self.box_heads = nn.ModuleList(MLP(embed_dims, embed_dims, 4, 3) for _ in range(num_heads))
        self._reset_parameters()

    def _make_classifier(self) -> nn.Module:
        """A class head ``(x (B, Q, C), memory) -> (B, Q, num_classes)`` (+ 1 "no object"
        logit with ``classification='softmax'``)."""
        return LinearClassifier(
            self.embed_dims, self.num_classes + (self.classification == "softmax")
        )

    @property
    def in_levels(self) -> tuple[str, ...] | None:
        """The ``in_channels`` levels; None when given as a list (the last levels)."""
        return tuple(self.in_channels) if isinstance(self.in_channels, Mapping) else None

    def _proposal_groups(self) -> list[TwoStageProposals]:
        """The two-stage proposal modules (one per query group; none without two-stage)."""
        if self.proposals is None:
            return []
        return (
            list(self.proposals)
            if isinstance(self.proposals, GroupedProposals)
            else [self.proposals]
        )

    def _reset_parameters(self) -> None:
        """Xavier transformer linears, deformable-attention init, prior-0.01 class biases,
        zero last box layers (as Deformable DETR / DINO)."""
        encoder = self.encoder.parameters() if self.encoder is not None else ()
        for p in (*encoder, *self.decoder.parameters()):
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, DeformableMemoryAttention):
                m.reset_parameters()
        if self.level_embed is not None:
            nn.init.normal_(self.level_embed)
        prior = -math.log((1 - 0.01) / 0.01)
        proposals = self._proposal_groups()
        cls_heads = [*self.cls_heads, *(p.cls_head for p in proposals)]
        if self.classification == "softmax":  # DETR's class head keeps nn.Linear's init
            cls_heads = []
        for head in cls_heads:
            if getattr(head, "bias", None) is not None:
                nn.init.constant_(head.bias, prior)
        box_heads = [*self.box_heads, *(p.box_head for p in proposals)]
        for head in box_heads:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)
        if self.queries.mode == "points":  # 2-d references: start with small boxes
            nn.init.constant_(self.box_heads[0].layers[-1].bias[2:], -2.0)
        for p in proposals:
            nn.init.xavier_uniform_(p.proj.weight)
        self.queries.reset_parameters()

    # ------------------------------------------------------------------ forward
    def _memory(
        self, feats: Mapping[str, Tensor], data_samples, padding: Tensor | None = None
    ) -> Memory:
        """Project, mask and flatten the input levels (see the module doc); ``padding``: the
        (B, H, W) padding mask, else the samples' (``padding_mask``), else none."""
        inputs = _select(feats, self.in_channels)
        pixels = padding
        if pixels is None and data_samples is not None:
            first = next(iter(inputs.values()))
            pixels = padding_mask(data_samples, device=first.device)  # (B, H, W)
        if pixels is not None and self.mask_padded_inputs:
            # zero the padded positions, so that the extra levels' stride-2 convs read the
            # same zeros at an image's border whether or not the batch pads it
            inputs = {
                k: v.masked_fill(_resize_mask(pixels, v)[:, None], 0) for k, v in inputs.items()
            }
        maps = list((self.input_proj(inputs) if self.input_proj is not None else inputs).values())
        if pixels is None:  # no metainfo: nothing is padding
            masks = [m.new_zeros(m.shape[0], *m.shape[-2:], dtype=torch.bool) for m in maps]
        else:
            masks = [_resize_mask(pixels, m) for m in maps]
        pos = [self.positional_encoding(m) for m in masks]
        return flatten_levels(maps, masks, pos, self.level_embed)

    def targets(self, data_samples) -> list[dict[str, Tensor]]:
        """Ground truth as ``labels`` (N,) and ``boxes`` (N, 4) cxcywh normalised to
        ``img_shape``."""
        return [
            dict(
                labels=s.gt_instances.labels.long(),
                boxes=rescale_boxes(s.gt_instances.bboxes.float(), s.img_shape[:2], "normalized"),
            )
            for s in data_samples
        ]

    def _encode(self, memory: Memory) -> Memory:
        """The encoder's pass over the memory (a grounding head's encodes the text too); the
        memory as it is without an encoder."""
        if self.encoder is None:
            return memory
        return replace(memory, feats=self.encoder(memory))

    def forward(
        self,
        feats: Mapping[str, Tensor],
        data_samples,
        targets=None,
        text=None,
        padding: Tensor | None = None,
    ) -> dict:
        """feats: ``{level: (B, C_l, H_l, W_l)}``; targets (training, for denoising): as
        :meth:`targets`; text: the prompts' ``visionfm.text.TextFeatures`` (grounding heads),
        carried by the memory to the encoder, decoder and class heads; padding: (B, H, W) bool,
        True on the batch's padded pixels, instead of the one the samples' ``img_shape`` give
        (an exported network takes it as a tensor, ``visionfm.export``).

        Returns ``logits`` (num_layers, B, Q, num_classes), ``boxes`` (num_layers, B, Q, 4)
        normalised cxcywh; with two-stage ``enc_logits`` / ``enc_boxes`` (B, Q, ...); with
        denoising in training ``dn_logits`` / ``dn_boxes`` (num_layers, B, num_dn, ...) and
        ``dn_meta``.
        """
        memory = self._encode(replace(self._memory(feats, data_samples, padding), text=text))
        out: dict = {} if memory.text is None else {"text_mask": memory.text.mask}
        proposals = None
        if self.proposals is not None:
            enc = self.proposals(memory.feats, memory, self.num_queries)
            out.update(enc_logits=enc["logits"], enc_boxes=enc["boxes"])
            proposals = enc["reference"]
        query, query_pos, reference = self.queries(memory.feats.shape[0], proposals)
        dn, mask = None, None
        if self.denoising is not None and self.training and targets is not None:
            dn = self.denoising(targets, self.num_queries)
        groups = query.shape[1] // self.num_queries  # Group DETR in training: > 1
        decoder_memory = memory
        if groups > 1:  # groups never attend each other: each runs as an image of its own
            query, reference = fold_groups(query, groups), fold_groups(reference, groups)
            decoder_memory = repeat_batch(memory, groups)
        if dn is not None:
            query = torch.cat((dn[0], query), dim=1)
            reference = torch.cat((dn[1], reference), dim=1)
            mask = dn[2]
        layers = len(self.decoder.layers)
        box_heads = [self.box_heads[min(i, len(self.box_heads) - 1)] for i in range(layers)]
        hidden, boxes = self.decoder(
            query,
            query_pos,
            reference,
            decoder_memory,
            box_heads,
            mask,
            self.with_box_refine,
            self.look_forward_twice,
        )
        if groups > 1:  # (layers, B * G, Q, ...) -> (layers, B, G * Q, ...)
            hidden, boxes = (t.unflatten(1, (-1, groups)).flatten(2, 3) for t in (hidden, boxes))
        logits = torch.stack(
            [
                self.cls_heads[min(i, len(self.cls_heads) - 1)](h, memory)
                for i, h in enumerate(hidden)
            ]
        )
        num_dn = 0 if dn is None else dn[0].shape[1]
        out.update(logits=logits[:, :, num_dn:], boxes=boxes[:, :, num_dn:])
        if dn is not None:
            out.update(
                dn_logits=logits[:, :, :num_dn], dn_boxes=boxes[:, :, :num_dn], dn_meta=dn[3]
            )
        return out

    # ------------------------------------------------------------------ losses (DETRLosses)
    def loss(self, feats: Mapping[str, Tensor], data_samples) -> dict[str, Tensor]:
        """Weighted losses: ``loss_cls/bbox/giou`` (last layer), ``d{i}.loss_*`` (earlier
        layers), ``enc_loss_*`` (two-stage), ``dn_loss_*`` / ``d{i}.dn_loss_*`` (denoising)."""
        device = next(iter(feats.values())).device
        targets = [{k: v.to(device) for k, v in t.items()} for t in self.targets(data_samples)]
        return self.loss_by_outputs(self(feats, data_samples, targets), targets)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, feats: Mapping[str, Tensor], data_samples, rescale: bool = True):
        """Fill each sample's ``pred_instances`` (``bboxes`` (K, 4) xyxy, ``scores``,
        ``labels``): top ``max_per_img`` of queries x classes by sigmoid score (softmax: of
        queries by their best class), above ``score_thr``; in original-image pixels when
        ``rescale``, else input pixels."""
        out = self(feats, data_samples)
        return self.predict_by_outputs(out["logits"][-1], out["boxes"][-1], data_samples, rescale)
