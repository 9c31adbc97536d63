"""Grounding DINO's head (Liu et al., "Grounding DINO: Marrying DINO with Grounded
Pre-Training for Open-Set Object Detection", ECCV 2024): DINO with a text branch.

It is :class:`~visionfm.heads.detr.DETRHead` configured as DINO (two-stage mixed query
selection, box refinement, contrastive denoising) with:

- an encoder that also encodes the prompt's tokens (:class:`GroundingEncoder`: fusion,
  text self-attention, deformable image self-attention);
- class heads that score queries against the tokens (:class:`ContrastiveClassifier`), so
  the top-k proposals go by their best token: language-guided query selection;
- decoder layers that attend the tokens before the image (:class:`GroundingDecoderLayer`).

Prompts come from the samples: ``text`` (the caption), ``phrases`` and ``phrase_spans``
(each phrase's character spans in the caption). Ground truth ``labels`` index ``phrases``;
a box's class target is its phrase's tokens (:func:`visionfm.text.positive_map`), so the
focal loss and the matching cost run over tokens (padded tokens left out).

Inference (``predict``):

- with ``phrase_spans`` (class names, or an expression and its span): a query's score for a
  phrase is the mean of its tokens' sigmoid scores; top ``max_per_img`` over queries x
  phrases. Class prompts longer than the text encoder's token budget are split into chunks
  of whole names (:func:`visionfm.text.chunk_phrases`), each run, the candidates merged.
- with ``text`` only (free text): the boxes whose best token scores above ``box_thr``,
  each named by the words of its tokens above ``text_thr``; ``phrases`` is set to those
  names and ``labels`` index them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch
from torch import Tensor, nn

from visionfm.ops.boxes import rescale_boxes
from visionfm.registry import MODELS, settings
from visionfm.text.tokens import chunk_phrases, positive_map, token_spans_to_phrase

from ..detr.head import DETRHead
from .classifier import ContrastiveClassifier

__all__ = ["GroundingDINOHead"]

_TEST_CFG = MappingProxyType(dict(max_per_img=100, score_thr=0.0, box_thr=0.35, text_thr=0.25))


def _prompt(sample, index: int) -> tuple[str, list | None]:
    """A sample's caption and phrase spans (None: free text).

    The caption ends in " ." as Grounding DINO's code makes it: the sub-sentence mask
    closes a phrase at a separator, and a caption whose only closing token is [SEP] would
    have its tokens attend to themselves alone (spans are unaffected: text is appended)."""
    text = sample.get("text")
    if not isinstance(text, str) or not text.strip():
        where = sample.metainfo.get("img_path", f"sample {index} of the batch")
        raise ValueError(f"{where}: a grounding model needs a prompt (DataSample.text)")
    if not text.rstrip().endswith((".", "?")):
        text = text.rstrip() + " ."
    spans = sample.get("phrase_spans")
    return text, (list(spans) if spans is not None else None)


@MODELS.register_module()
class GroundingDINOHead(DETRHead):
    """Grounding DINO head (see the module doc).

    Args:
        embed_dims, encoder, decoder, matcher, in_channels, strides: as ``DETRHead``;
            ``encoder`` a :class:`GroundingEncoder`, ``decoder`` a ``DetrDecoder`` of
            :class:`GroundingDecoderLayer` with a ``ref_point_head``.
        max_phrases: phrases a prompt may have in training (the size of the denoising
            label embedding; ``denoising.num_classes`` must equal it).
        contrastive_scaled / contrastive_bias: see :class:`ContrastiveClassifier`
            (False / False reproduce the original Grounding DINO).
        test_cfg: ``max_per_img``, ``score_thr`` (phrase prompts), ``box_thr``, ``text_thr``
            (free text).
        detr_options: the other ``DETRHead`` options (num_queries, num_feature_levels,
            positional_encoding, denoising, share_pred_heads, loss weights, ...); two-stage
            mixed query selection with box refinement is fixed.
    """

    needs_text = True
    class_layers = ()  # scores per prompt token: no fixed class set

    def __init__(
        self,
        embed_dims: int,
        encoder: nn.Module,
        decoder: nn.Module,
        matcher: nn.Module,
        in_channels,
        strides,
        max_phrases: int = 256,
        contrastive_scaled: bool = True,
        contrastive_bias: bool = True,
        test_cfg: Mapping = _TEST_CFG,
        **detr_options,
    ) -> None:
        self._contrastive = dict(scaled=contrastive_scaled, bias=contrastive_bias)
        denoising = detr_options.get("denoising")
        if denoising is not None and denoising.num_classes != max_phrases:
            raise ValueError(
                f"denoising.num_classes={denoising.num_classes} must equal max_phrases="
                f"{max_phrases} (denoising queries embed the phrase index)"
            )
        super().__init__(
            num_classes=max_phrases,
            embed_dims=embed_dims,
            encoder=encoder,
            decoder=decoder,
            matcher=matcher,
            in_channels=in_channels,
            strides=strides,
            two_stage=True,
            with_box_refine=True,
            mixed_query_selection=True,
            **detr_options,
        )
        self.test_cfg = settings(test_cfg, _TEST_CFG, "test_cfg")

    def _make_classifier(self) -> nn.Module:
        return ContrastiveClassifier(self.embed_dims, **self._contrastive)

    def _encode(self, memory):
        return self.encoder(memory)

    # ------------------------------------------------------------------ prompts, targets
    def targets(self, data_samples, text) -> list[dict[str, Tensor]]:
        """Per image: ``labels`` (N,) phrase indices, ``boxes`` (N, 4) normalised cxcywh and
        ``class_map`` (N, T): the tokens of each box's phrase."""
        out = []
        num_tokens = text.feats.shape[1]
        for i, sample in enumerate(data_samples):
            caption, spans = _prompt(sample, i)
            labels = sample.gt_instances.labels.long()
            if spans is None:
                raise ValueError(
                    f"{sample.metainfo.get('img_path', f'sample {i}')}: training needs "
                    "phrase_spans (each phrase's character spans in the caption)"
                )
            if len(labels) and int(labels.max()) >= min(len(spans), self.num_classes):
                raise ValueError(
                    f"{sample.metainfo.get('img_path', f'sample {i}')}: box label "
                    f"{int(labels.max())} but the prompt has {len(spans)} phrases "
                    f"(max_phrases={self.num_classes})"
                )
            phrase_tokens = positive_map(text.offsets[i], spans, num_tokens, caption)
            out.append(
                dict(
                    labels=labels,
                    boxes=rescale_boxes(
                        sample.gt_instances.bboxes.float(), sample.img_shape[:2], "normalized"
                    ),
                    class_map=phrase_tokens[labels].float(),
                )
            )
        return out

    def forward(self, feats, data_samples, targets=None, text=None, text_encoder=None) -> dict:
        """As ``DETRHead.forward``, with the prompts' ``text`` features, or encoded here from
        the samples' captions by ``text_encoder``. ``logits`` are over the prompt's tokens
        (B, ..., T); ``text_mask`` (B, T) marks the real ones."""
        if text is None:
            if text_encoder is None:
                raise ValueError("GroundingDINOHead needs text features or a text_encoder")
            text = text_encoder([_prompt(s, i)[0] for i, s in enumerate(data_samples)])
        return super().forward(feats, data_samples, targets, text)

    def loss(self, feats, data_samples, text_encoder) -> dict[str, Tensor]:
        """Weighted set losses over tokens (see ``DETRHead.loss``)."""
        device = next(iter(feats.values())).device
        text = text_encoder([_prompt(s, i)[0] for i, s in enumerate(data_samples)])
        targets = [
            {k: v.to(device) for k, v in t.items()} for t in self.targets(data_samples, text)
        ]
        return self.loss_by_outputs(self(feats, data_samples, targets, text), targets)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, feats, data_samples, text_encoder, rescale: bool = True):
        """Fill ``pred_instances`` (``bboxes``, ``scores``, ``labels`` indexing the sample's
        ``phrases``), see the module doc."""
        budget = text_encoder.max_tokens
        whole, chunked = [], []
        for i, sample in enumerate(data_samples):
            caption, spans = _prompt(sample, i)
            fits = text_encoder.count_tokens(caption) <= budget
            (whole if fits or spans is None else chunked).append(i)
        if whole:
            self._predict_batch(feats, data_samples, whole, text_encoder, rescale)
        for i in chunked:
            self._predict_chunks(feats, data_samples, i, text_encoder, rescale)
        return list(data_samples)

    def _select(self, feats, data_samples, index: list[int]):
        if len(index) == len(data_samples):
            return feats, list(data_samples)
        return {k: v[index] for k, v in feats.items()}, [data_samples[i] for i in index]

    def _predict_batch(self, feats, data_samples, index, text_encoder, rescale) -> None:
        feats, samples = self._select(feats, data_samples, index)
        text = text_encoder([_prompt(s, i)[0] for i, s in enumerate(samples)])
        out = self(feats, samples, text=text)
        for b, sample in enumerate(samples):
            logits, boxes = out["logits"][-1][b], out["boxes"][-1][b]
            spans = sample.get("phrase_spans")
            if spans is None:
                self._decode_free_text(sample, logits, boxes, text, b, rescale)
                continue
            tokens = positive_map(text.offsets[b], spans, logits.shape[-1], text.captions[b])
            scores, queries, labels = self._phrase_candidates(logits, tokens)
            sample.pred_instances = self._instances(
                scores, boxes[queries], labels, sample.metainfo, rescale
            )

    def _predict_chunks(self, feats, data_samples, i, text_encoder, rescale) -> None:
        """One sample whose class prompt exceeds the token budget: run every chunk of
        whole names, merge the candidates."""
        sample = data_samples[i]
        phrases = list(sample.get("phrases") or [])
        if len(phrases) != len(sample.phrase_spans):
            raise ValueError(
                f"{sample.metainfo.get('img_path', f'sample {i}')}: the prompt is longer than "
                f"{text_encoder.max_tokens} tokens and not a list of class names to chunk"
            )
        one = {k: v[i : i + 1] for k, v in feats.items()}
        scores, boxes, labels = [], [], []
        for caption, spans, ids in chunk_phrases(
            phrases, text_encoder.count_tokens, text_encoder.max_tokens
        ):
            text = text_encoder([caption])
            out = self(one, [sample], text=text)
            logits = out["logits"][-1][0]
            tokens = positive_map(text.offsets[0], spans, logits.shape[-1], caption)
            s, q, lab = self._phrase_candidates(logits, tokens)
            scores.append(s)
            boxes.append(out["boxes"][-1][0][q])
            labels.append(torch.as_tensor(ids, device=lab.device)[lab])
        scores, boxes, labels = torch.cat(scores), torch.cat(boxes), torch.cat(labels)
        k = min(self.test_cfg["max_per_img"], len(scores))
        scores, order = scores.topk(k)
        sample.pred_instances = self._instances(
            scores, boxes[order], labels[order], sample.metainfo, rescale
        )

    def _phrase_candidates(self, logits: Tensor, tokens: Tensor):
        """logits (Q, T), tokens (P, T) bool -> the top ``max_per_img`` (score, query,
        phrase) of queries x phrases, a phrase's score the mean over its tokens."""
        weights = tokens.to(logits.dtype)
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1)
        scores = (logits.sigmoid() @ weights.T).flatten()  # (Q * P,)
        k = min(self.test_cfg["max_per_img"], scores.numel())
        scores, index = scores.topk(k)
        return scores, index // len(tokens), index % len(tokens)

    def _decode_free_text(self, sample, logits, boxes, text, b, rescale) -> None:
        """Free text: boxes whose best token beats ``box_thr``, named by their tokens above
        ``text_thr`` (the best token when none is)."""
        probs = logits.sigmoid()  # (Q, T)
        best = probs.max(-1).values
        words = torch.tensor([end > start for start, end in text.offsets[b]], device=probs.device)
        best_token = probs.masked_fill(~words, -1.0).argmax(-1)  # a token with characters
        keep = (best > self.test_cfg["box_thr"]).nonzero()[:, 0]
        keep = keep[best[keep].argsort(descending=True)][: self.test_cfg["max_per_img"]]
        names: list[str] = []
        labels = []
        for q in keep.tolist():
            selected = (probs[q] > self.test_cfg["text_thr"]) & words
            if not selected.any():
                selected = torch.zeros_like(selected)
                selected[best_token[q]] = True
            name = token_spans_to_phrase(text.captions[b], text.offsets[b], selected)
            if name not in names:
                names.append(name)
            labels.append(names.index(name))
        sample.phrases = names
        labels = torch.as_tensor(labels, dtype=torch.long, device=logits.device)
        sample.pred_instances = self._instances(
            best[keep], boxes[keep], labels, sample.metainfo, rescale
        )
