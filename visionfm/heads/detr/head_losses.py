"""The loss assembly of :class:`~visionfm.heads.detr.DETRHead` (:class:`DETRLosses`, a
mixin of its loss methods): Hungarian-matched set losses on every decoder layer (``d{i}.``
prefixes for the auxiliary ones), on the two-stage proposals (``enc_``) and on the denoising
queries (``dn_``, matched by construction), per Group DETR query group.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..losses import average_num_boxes
from .denoising import denoising_matches
from .losses import set_prediction_losses
from .matcher import match_groups

__all__ = ["DETRLosses"]


class DETRLosses:
    """The loss methods of :class:`~visionfm.heads.detr.DETRHead`; they read its
    ``matcher``, ``loss_weights``, ``classification``, ``no_object_weight``, ``focal_alpha`` /
    ``focal_gamma``, ``cls_loss``, ``denoising``, ``num_queries`` and
    ``class_agnostic_proposals``."""

    def _weighted(self, raw: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}{k}": v * self.loss_weights[k] for k, v in raw.items()}

    def _set_losses(
        self, logits, boxes, targets, num_boxes, prefix, indices=None, mask=None, groups=1
    ):
        """logits (B, Q, C), boxes (B, Q, 4): Hungarian matching (unless ``indices`` are
        given; per query group, ``match_groups``), then the weighted set losses; ``mask``: the
        classes that count (see ``focal_classification_loss``'s ``class_mask``)."""
        if indices is None:
            indices = match_groups(self.matcher, logits, boxes, targets, groups)
        no_object = self.no_object_weight if self.classification == "softmax" else None
        raw = set_prediction_losses(
            logits,
            boxes,
            targets,
            indices,
            num_boxes,
            self.focal_alpha,
            self.focal_gamma,
            mask,
            no_object_weight=no_object,
            iou_aware=self.cls_loss == "iou_aware",
        )
        return self._weighted(raw, prefix)

    def _dn_losses(self, out: dict, layer: int, targets, num_boxes, prefix) -> dict[str, Tensor]:
        """Denoising outputs of one layer: positives matched to their box by construction,
        negatives to "no object"; padding slots left out."""
        meta = out.get("dn_meta")
        if meta is None:  # no box in the batch: zeros that keep the embedding in the graph
            zero = self.denoising.label_embed.weight.sum() * 0.0
            return {f"{prefix}{k}": zero for k in self.loss_weights}
        valid, merged, indices = denoising_matches(targets, meta)
        logits = out["dn_logits"][layer][valid][None]  # (1, real denoising queries, C)
        boxes = out["dn_boxes"][layer][valid][None]
        mask = None
        if "text_mask" in out:  # each query's own prompt tokens
            mask = out["text_mask"][valid.nonzero()[:, 0]][None]  # (1, real queries, C)
        groups = meta["num_groups"]
        return self._set_losses(logits, boxes, [merged], num_boxes * groups, prefix, indices, mask)

    def loss_by_outputs(self, out: dict, targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The losses of :meth:`loss` from the outputs of :meth:`forward` and the targets."""
        device = out["logits"].device
        num_boxes = average_num_boxes(sum(len(t["labels"]) for t in targets), device)
        groups = out["logits"].shape[2] // self.num_queries  # Group DETR in training: > 1
        num_boxes = num_boxes * groups  # each group is matched to every target
        mask = out["text_mask"][:, None] if "text_mask" in out else None  # (B, 1, C)
        losses: dict[str, Tensor] = {}
        layers = out["logits"].shape[0]
        for i in range(layers):
            prefix = "" if i == layers - 1 else f"d{i}."
            losses.update(
                self._set_losses(
                    out["logits"][i],
                    out["boxes"][i],
                    targets,
                    num_boxes,
                    prefix,
                    mask=mask,
                    groups=groups,
                )
            )
            if self.denoising is not None:
                losses.update(self._dn_losses(out, i, targets, num_boxes, prefix + "dn_"))
        if "enc_logits" in out:
            enc_targets = targets
            if self.class_agnostic_proposals:  # one class, 0: "object"
                enc_targets = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
            losses.update(
                self._set_losses(
                    out["enc_logits"],
                    out["enc_boxes"],
                    enc_targets,
                    num_boxes,
                    "enc_",
                    mask=mask,
                    groups=groups,
                )
            )
        return losses
