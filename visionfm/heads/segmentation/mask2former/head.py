"""Mask2Former: one head for semantic, instance and panoptic segmentation (Cheng et al.,
"Masked-attention Mask Transformer for Universal Image Segmentation", CVPR 2022).

Pipeline: the pixel decoder (``MSDeformAttnPixelDecoder``) encodes the coarsest feature
levels with deformable attention and gives per-pixel mask features at the finest stride;
``num_queries`` learned queries run through the masked-attention decoder
(``MaskedAttentionDecoder``); after the initial queries and after every layer a shared
prediction head gives class logits over K classes + "no object" and mask logits (a query's
mask embedding dotted with the mask features).

Training: every prediction (the initial one and each layer's) is matched to the ground-truth
segments (``MaskHungarianMatcher``) and gets the losses of ``losses.py``; the last one's are
``loss_cls`` / ``loss_mask`` / ``loss_dice``, the earlier ones' are prefixed ``d{i}.``.
Ground truth is ``gt_instances`` (``masks`` + ``labels``, things AND stuff segments, crowd
segments left in ``ignored_instances``) or, for semantic-only data, ``gt_sem_seg`` (one
target per class present).

Inference (``test_cfg``: ``semantic_on``, ``instance_on``, ``panoptic_on``,
``object_mask_thr``, ``overlap_thr``, ``max_per_image``, ``score_thr`` (instances kept from
this score), ``postprocess``): with ``postprocess='visionfm'`` (the default) the last
layer's mask logits are mapped to the ORIGINAL image (``visionfm.ops.geometry.
dense_to_original`` undoes padding, resizing, flipping and cropping) and turned into
``pred_sem_seg``, ``pred_instances`` and ``pred_panoptic_seg`` (``inference.py``; instances:
the top ``max_per_image`` among the thing classes). ``'detectron2'`` follows the paper's code
exactly: logits resized to the padded input, cropped, resized to the original image (for a
semantic-only head the class scores are resized instead), instances the top
``max_per_image`` among ALL classes with the stuff ones then dropped. ``'transformers'``
resizes them to the image's network input and post-processes as Hugging Face's
``Mask2FormerImageProcessor`` does (``inference_hf.py``; ``max_per_image`` is then the
number of queries).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.data.batch import batch_input_shape
from visionfm.layers import MLP, SinePositionalEncoding
from visionfm.ops.geometry import dense_to_original
from visionfm.registry import MODELS, settings

from ...base import Head
from ...losses import average_num_boxes
from .inference import (
    instance_inference,
    panoptic_inference,
    semantic_inference,
    semantic_scores,
)
from .inference_hf import hf_instance_inference, hf_panoptic_inference, hf_semantic_inference
from .losses import mask2former_losses

__all__ = ["Mask2FormerHead"]


def _resize(maps: Tensor, size) -> Tensor:
    """(C, h, w) -> (C, *size), bilinear (``align_corners=False``)."""
    return F.interpolate(maps[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


_TEST_CFG = MappingProxyType(  # all the settings there are
    dict(
        semantic_on=True,
        instance_on=True,
        panoptic_on=True,
        object_mask_thr=0.8,
        overlap_thr=0.8,
        max_per_image=100,
        score_thr=0.0,
        postprocess="visionfm",
    )
)
_POSTPROCESS = ("visionfm", "detectron2", "transformers")


@MODELS.register_module()
class Mask2FormerHead(Head):
    """Mask2Former universal segmentation head (see the module doc).

    Args:
        num_things_classes: T thing classes (labels 0..T-1).
        num_stuff_classes: stuff classes (labels T..K-1); K = things + stuff.
        pixel_decoder: e.g. ``MSDeformAttnPixelDecoder``; its ``embed_dims`` must be the
            decoder's width C, its ``mask_dims`` the mask embedding size.
        transformer_decoder: a ``MaskedAttentionDecoder``.
        matcher: e.g. ``MaskHungarianMatcher``.
        num_queries: Q.
        num_points: points per mask for the mask losses (the paper: 12544).
        oversample_ratio, importance_sample_ratio: point selection of the mask losses.
        no_object_weight: cross-entropy weight of the "no object" class.
        loss_cls, loss_mask, loss_dice: loss weights.
        positional_encoding: (B, H, W) padding mask -> (B, C, H, W) of the decoder's keys;
            default normalised sine.
        level_embed_on: where the decoder's level embedding is added: ``'pos'`` (to the
            keys' positions only) or ``'feats'`` (to the level's features, so to keys and
            values: the paper's code and Hugging Face's, needed for their weights).
        mask_padding: keep the batch's padding out of the pixel decoder (zeroed inputs,
            positions over the valid region, padding masks) and out of the decoder's
            attention; False treats padding as image content, as the paper's code and Hugging
            Face's do (their outputs on padded batches).
        test_cfg: a dict setting some of the module doc's settings (defaults: all three
            outputs, thresholds 0.8, 100 instances).
    """

    predicts = ("pred_sem_seg", "pred_instances", "pred_panoptic_seg")
    class_layers = (r"cls_head\.",)

    def __init__(
        self,
        num_things_classes: int,
        num_stuff_classes: int,
        pixel_decoder: nn.Module,
        transformer_decoder: nn.Module,
        matcher: nn.Module,
        num_queries: int = 100,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        no_object_weight: float = 0.1,
        loss_cls: float = 2.0,
        loss_mask: float = 5.0,
        loss_dice: float = 5.0,
        positional_encoding: nn.Module | None = None,
        level_embed_on: str = "pos",
        mask_padding: bool = True,
        test_cfg: Mapping = _TEST_CFG,
    ) -> None:
        super().__init__()
        dims = transformer_decoder.embed_dims
        if level_embed_on not in ("pos", "feats"):
            raise ValueError(f"level_embed_on must be 'pos' or 'feats', got {level_embed_on!r}")
        if pixel_decoder.embed_dims != dims:
            raise ValueError(
                f"pixel_decoder.embed_dims={pixel_decoder.embed_dims} differs from the "
                f"transformer decoder's width {dims}"
            )
        self.num_things, self.num_stuff = num_things_classes, num_stuff_classes
        self.num_classes = num_things_classes + num_stuff_classes
        self.num_queries = num_queries
        self.level_embed_on = level_embed_on
        self.mask_padding = mask_padding
        self.point_cfg = dict(
            num_points=num_points,
            oversample_ratio=oversample_ratio,
            importance_sample_ratio=importance_sample_ratio,
        )
        self.loss_weights = dict(loss_cls=loss_cls, loss_mask=loss_mask, loss_dice=loss_dice)
        self.test_cfg = settings(test_cfg, _TEST_CFG, "test_cfg")
        if self.test_cfg["postprocess"] not in _POSTPROCESS:
            raise ValueError(
                f"test_cfg.postprocess must be one of {_POSTPROCESS}, got "
                f"{self.test_cfg['postprocess']!r}"
            )

        self.pixel_decoder = pixel_decoder
        self.transformer_decoder = transformer_decoder
        self.matcher = matcher
        num_levels = len(pixel_decoder.encoder_names)
        self.positional_encoding = positional_encoding or SinePositionalEncoding(dims // 2)
        self.level_embed = nn.Parameter(torch.zeros(num_levels, dims))
        self.query_feat = nn.Embedding(num_queries, dims)
        self.query_embed = nn.Embedding(num_queries, dims)
        self.decoder_norm = nn.LayerNorm(dims)
        self.cls_head = nn.Linear(dims, self.num_classes + 1)
        self.mask_head = MLP(dims, dims, pixel_decoder.mask_dims, 3)
        weight = torch.ones(self.num_classes + 1)
        weight[-1] = no_object_weight
        self.register_buffer("class_weight", weight, persistent=False)
        for p in self.transformer_decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.normal_(self.level_embed, std=0.02)

    @property
    def in_levels(self) -> tuple[str, ...]:
        """The pixel decoder's input levels."""
        return tuple(self.pixel_decoder.strides)

    # ------------------------------------------------------------------ forward
    def _predict(self, query: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, Q, C), mask_features (B, D, H, W) -> class logits (B, Q, K + 1), mask
        logits (B, Q, H, W)."""
        out = self.decoder_norm(query)
        embed = self.mask_head(out)  # (B, Q, D)
        return self.cls_head(out), torch.einsum("bqd,bdhw->bqhw", embed, mask_features)

    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> dict[str, Tensor]:
        """feats: ``{level: (B, C_l, H_l, W_l)}`` -> ``cls_logits`` (L + 1, B, Q, K + 1) and
        ``mask_logits`` (L + 1, B, Q, H, W) at the pixel decoder's finest stride: the initial
        prediction and one after each of the L decoder layers."""
        cls_logits, mask_logits = self.predictions(feats, data_samples)
        return dict(cls_logits=torch.stack(cls_logits), mask_logits=torch.stack(mask_logits))

    def predictions(
        self, feats, data_samples=None, padding: Tensor | None = None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """As :meth:`forward`, unstacked: L + 1 class logits and L + 1 mask logits.
        ``padding``: the (B, H, W) padding mask instead of the samples' (an exported
        network's input, ``visionfm.export``)."""
        if not self.mask_padding:
            data_samples, padding = None, None
        pix = self.pixel_decoder(feats, data_samples, padding)
        batch = pix.mask_features.shape[0]
        embeds = [e[None, :, None, None] for e in self.level_embed]  # each (1, C, 1, 1)
        pos = [self.positional_encoding(m).to(x.dtype) for m, x in zip(pix.padding, pix.levels)]
        levels = pix.levels
        if self.level_embed_on == "feats":
            levels = [x + e for x, e in zip(levels, embeds)]
        else:
            pos = [p + e for p, e in zip(pos, embeds)]
        query = self.query_feat.weight[None].expand(batch, -1, -1)
        query_pos = self.query_embed.weight[None].expand(batch, -1, -1)
        return self.transformer_decoder(
            query,
            query_pos,
            levels,
            pos,
            pix.padding,
            lambda q: self._predict(q, pix.mask_features),
        )

    # ------------------------------------------------------------------ losses
    def targets(self, data_samples, device=None) -> list[dict[str, Tensor]]:
        """Per image ``labels`` (N,) long and ``masks`` (N, H, W) bool over the padded batch
        extent (``batch_input_shape``), from ``gt_instances`` or else ``gt_sem_seg``."""
        h, w = batch_input_shape(data_samples)
        targets = []
        for i, sample in enumerate(data_samples):
            gt = sample.get("gt_instances")
            if gt is not None and "masks" in gt:
                labels, masks = gt.labels.long(), gt.masks.bool()
            elif "gt_sem_seg" in sample:
                sem = sample.gt_sem_seg.long()
                labels = sem.unique()
                labels = labels[(labels >= 0) & (labels < self.num_classes)]
                masks = sem[None] == labels[:, None, None]
            else:
                raise KeyError(
                    f"Mask2FormerHead: sample {i} ({sample.metainfo.get('img_path')}) has "
                    "neither gt_instances.masks nor gt_sem_seg"
                )
            if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f"Mask2FormerHead: sample {i} has labels {labels.unique().tolist()} outside "
                    f"0..{self.num_classes - 1}"
                )
            padded = masks.new_zeros(len(masks), h, w)
            padded[:, : min(h, masks.shape[-2]), : min(w, masks.shape[-1])] = masks[..., :h, :w]
            targets.append(dict(labels=labels.to(device), masks=padded.to(device)))
        return targets

    def loss(self, feats: Mapping[str, Tensor], data_samples) -> dict[str, Tensor]:
        """Weighted ``loss_cls`` / ``loss_mask`` / ``loss_dice`` of the last prediction and
        ``d{i}.loss_*`` of the earlier ones."""
        device = next(iter(feats.values())).device
        targets = self.targets(data_samples, device)
        all_cls, all_masks = self.predictions(feats, data_samples)
        num_masks = average_num_boxes(sum(len(t["labels"]) for t in targets), device)
        layers = len(all_cls)
        losses: dict[str, Tensor] = {}
        for i, (cls_logits, mask_logits) in enumerate(zip(all_cls, all_masks)):
            indices = self.matcher(cls_logits, mask_logits, targets)
            raw = mask2former_losses(
                cls_logits, mask_logits, targets, indices, num_masks, self.class_weight,
                **self.point_cfg,
            )  # fmt: skip
            prefix = "" if i == layers - 1 else f"d{i}."
            losses.update({f"{prefix}{k}": v * self.loss_weights[k] for k, v in raw.items()})
        return losses

    # ------------------------------------------------------------------ inference
    @staticmethod
    def to_output_size(
        mask_logits: Tensor,
        metainfo: Mapping,
        rescale: bool = True,
        input_shape: tuple[int, int] | None = None,
    ) -> Tensor:
        """(Q, h, w) logits over the padded input (of size ``input_shape``, else from the
        metainfo) -> (Q, H0, W0) over the original image (``rescale`` and ``ori_shape``
        known), else (Q, h_img, w_img) over the input image. Original pixels cropped away
        take the nearest prediction (``dense_to_original(..., fill=None)``)."""
        return dense_to_original(
            mask_logits.float(), metainfo, input_shape=input_shape, rescale=rescale, fill=None
        )

    @torch.no_grad()
    def predict(self, feats: Mapping[str, Tensor], data_samples, rescale: bool = True):
        """Fill each sample's ``pred_sem_seg`` (H, W) long, ``pred_instances`` (``masks``
        (N, H, W) bool, ``labels``, ``scores``, ``bboxes`` xyxy) and ``pred_panoptic_seg``
        (H, W) long, as enabled in ``test_cfg``, at the original image size when
        ``rescale``."""
        all_cls, all_masks = self.predictions(feats, data_samples)
        return self.predict_by_outputs(all_cls[-1], all_masks[-1], data_samples, rescale)

    def predict_by_outputs(
        self, batch_cls: Tensor, batch_masks: Tensor, data_samples, rescale: bool = True
    ) -> list:
        """The last prediction's class logits ``batch_cls`` (B, Q, K + 1) and mask logits
        ``batch_masks`` (B, Q, h, w) (from the head, or an exported network,
        ``visionfm.export``) -> the samples with the fields of :meth:`predict`."""
        cfg = self.test_cfg
        mode, shape = cfg["postprocess"], batch_input_shape(data_samples)
        for cls_logits, mask_logits, sample in zip(batch_cls, batch_masks, data_samples):
            if mode == "transformers":
                self._predict_hf(cls_logits, mask_logits, sample, rescale, shape)
                continue
            semantic_only = not (cfg["instance_on"] or cfg["panoptic_on"])
            if mode == "detectron2" and semantic_only and cfg["semantic_on"]:
                # the paper's semantic-only models resize the class scores, not the logits
                scores = semantic_scores(cls_logits, _resize(mask_logits, shape))
                scores = self._detectron2_resize(scores, sample.metainfo, rescale, shape, False)
                sample.pred_sem_seg = scores.argmax(0)
                continue
            if mode == "detectron2":
                masks = self._detectron2_resize(mask_logits, sample.metainfo, rescale, shape)
            else:
                masks = self.to_output_size(mask_logits, sample.metainfo, rescale, shape)
            if cfg["semantic_on"]:
                sample.pred_sem_seg = semantic_inference(cls_logits, masks)
            if cfg["instance_on"]:
                instances = instance_inference(
                    cls_logits, masks, self.num_things, cfg["max_per_image"],
                    select_from_all=mode == "detectron2",
                )  # fmt: skip
                sample.pred_instances = instances[instances.scores >= cfg["score_thr"]]
            if cfg["panoptic_on"]:
                sample.pred_panoptic_seg = panoptic_inference(
                    cls_logits, masks, self.num_things, cfg["object_mask_thr"], cfg["overlap_thr"]
                )
        return list(data_samples)

    @staticmethod
    def _detectron2_resize(
        maps: Tensor, metainfo: Mapping, rescale: bool, shape, to_input: bool = True
    ) -> Tensor:
        """(C, h, w) maps over the padded input of size ``shape`` -> the original image as the
        paper's code does it (no flips or crops undone): resized to the input (unless
        ``to_input`` is False: they are at input size already), cropped to ``img_shape``,
        resized to ``ori_shape`` when ``rescale``."""
        img_h, img_w = metainfo.get("img_shape", shape)[:2]
        maps = (_resize(maps, shape) if to_input else maps)[:, :img_h, :img_w]
        if rescale and "ori_shape" in metainfo:
            maps = _resize(maps, metainfo["ori_shape"][:2])
        return maps

    def _predict_hf(
        self, cls_logits: Tensor, mask_logits: Tensor, sample, rescale: bool, shape
    ) -> None:
        """``predict`` for one sample as transformers' image processor does it: cls_logits
        (Q, K + 1), mask_logits (Q, h, w) over the padded input of size ``shape``."""
        cfg, meta = self.test_cfg, sample.metainfo
        img_h, img_w = meta.get("img_shape", shape)[:2]
        size = meta["ori_shape"][:2] if rescale and "ori_shape" in meta else (img_h, img_w)
        masks = _resize(mask_logits, shape)[:, :img_h, :img_w]  # the image's network input
        if cfg["semantic_on"]:
            sample.pred_sem_seg = hf_semantic_inference(cls_logits, masks, size)
        if cfg["instance_on"]:
            sample.pred_instances = hf_instance_inference(cls_logits, masks, size, cfg["score_thr"])
        if cfg["panoptic_on"]:
            sample.pred_panoptic_seg = hf_panoptic_inference(
                cls_logits, masks, size, self.num_things, cfg["object_mask_thr"],
                cfg["overlap_thr"],
            )  # fmt: skip
