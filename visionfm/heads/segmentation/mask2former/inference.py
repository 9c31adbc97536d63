"""Mask2Former inference (Cheng et al., CVPR 2022): semantic, instance and panoptic results
from one set of query predictions of one image.

Inputs are ``cls_logits`` (Q, K + 1) (the last class: no object) and ``mask_logits``
(Q, H, W) already at the output resolution; classes 0..T-1 are things, T..K-1 stuff.

- semantic: ``argmax_k sum_q softmax(cls)_qk * sigmoid(mask)_q`` per pixel;
- instance (things only): the top ``max_per_image`` (query, class) pairs by class
  probability times the mask's mean foreground probability inside its binary mask
  (logit > 0); boxes are the binary masks' tight boxes;
- panoptic: queries whose best class is not "no object" and whose probability exceeds
  ``object_mask_thr`` compete for pixels (each pixel goes to the query with the highest
  ``probability * sigmoid(mask)``); a query keeps its won pixels with sigmoid >= 0.5 unless
  fewer than ``overlap_thr`` of its own mask's pixels were won; stuff queries of one class
  merge into one segment. Encoded ``label * PANOPTIC_LABEL_DIVISOR + instance``, -1 void.
"""

from __future__ import annotations

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR

__all__ = [
    "instance_inference",
    "masks_to_boxes",
    "panoptic_inference",
    "semantic_inference",
    "semantic_scores",
]


def masks_to_boxes(masks: Tensor) -> Tensor:
    """(N, H, W) bool -> (N, 4) float32 tight xyxy boxes (exclusive right / bottom edges);
    an empty mask gives zeros."""
    if masks.numel() == 0:
        return masks.new_zeros(masks.shape[0], 4, dtype=torch.float32)
    h, w = masks.shape[-2:]
    rows, cols = masks.any(2), masks.any(1)  # (N, H), (N, W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y1 = torch.where(rows, ys, h).amin(1)
    y2 = torch.where(rows, ys, -1).amax(1) + 1
    x1 = torch.where(cols, xs, w).amin(1)
    x2 = torch.where(cols, xs, -1).amax(1) + 1
    boxes = torch.stack((x1, y1, x2, y2), dim=1).float()
    return torch.where(rows.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def semantic_scores(cls_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """-> (K, H, W) class scores ``sum_q softmax(cls)_qk * sigmoid(mask)_q``."""
    probs = cls_logits.float().softmax(-1)[:, :-1]  # (Q, K)
    return torch.einsum("qk,qhw->khw", probs, mask_logits.float().sigmoid())


def semantic_inference(cls_logits: Tensor, mask_logits: Tensor) -> Tensor:
    """-> (H, W) long class map (see the module doc)."""
    return semantic_scores(cls_logits, mask_logits).argmax(0)


def instance_inference(
    cls_logits: Tensor,
    mask_logits: Tensor,
    num_things: int,
    max_per_image: int = 100,
    select_from_all: bool = False,
) -> InstanceData:
    """-> ``InstanceData`` with ``masks`` bool (N, H, W), ``labels`` (N,) in 0..T-1,
    ``scores`` (N,) and ``bboxes`` (N, 4) xyxy (see the module doc). ``select_from_all``: the
    top ``max_per_image`` pairs among all classes, the stuff ones then dropped (the paper's
    code: fewer instances when stuff scores high)."""
    num_classes = cls_logits.shape[-1] - 1 if select_from_all else num_things
    probs = cls_logits.float().softmax(-1)[:, :num_classes]  # (Q, T) or (Q, K)
    k = min(max_per_image, probs.numel())
    scores, index = probs.flatten().topk(k)
    labels, query = index % max(num_classes, 1), index // max(num_classes, 1)
    things = labels < num_things
    scores, labels, query = scores[things], labels[things], query[things]
    logits = mask_logits[query].float()  # (k, H, W)
    masks = logits > 0
    mask_scores = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    return InstanceData(
        masks=masks,
        labels=labels,
        scores=scores * mask_scores,
        bboxes=masks_to_boxes(masks),
    )


def panoptic_inference(
    cls_logits: Tensor,
    mask_logits: Tensor,
    num_things: int,
    object_mask_thr: float = 0.8,
    overlap_thr: float = 0.8,
) -> Tensor:
    """-> (H, W) long panoptic map (see the module doc)."""
    num_classes = cls_logits.shape[-1] - 1
    scores, labels = cls_logits.float().softmax(-1).max(-1)  # (Q,)
    keep = (labels != num_classes) & (scores > object_mask_thr)
    pan = torch.full(mask_logits.shape[-2:], -1, dtype=torch.long, device=mask_logits.device)
    if not keep.any():
        return pan
    scores, labels = scores[keep], labels[keep]
    probs = mask_logits[keep].float().sigmoid()  # (k, H, W)
    owner = (scores[:, None, None] * probs).argmax(0)  # (H, W): winning kept query
    instance = 0
    for j in range(len(labels)):
        label = int(labels[j])
        won = owner == j
        own = probs[j] >= 0.5
        region = won & own
        won_area, own_area, area = int(won.sum()), int(own.sum()), int(region.sum())
        if won_area == 0 or own_area == 0 or area == 0 or won_area / own_area < overlap_thr:
            continue
        if label < num_things:
            instance += 1
            pan[region] = label * PANOPTIC_LABEL_DIVISOR + instance
        else:  # stuff: one segment per class
            pan[region] = label * PANOPTIC_LABEL_DIVISOR
    return pan
