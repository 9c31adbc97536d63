"""Mask2Former inference as Hugging Face transformers' ``Mask2FormerImageProcessor`` does it
(``post_process_semantic_segmentation`` / ``_instance_`` / ``_panoptic_``), for one image.

The head's ``test_cfg=dict(postprocess='transformers')`` selects these; the default
(``'detectron2'``, :mod:`.inference`) follows the paper's code. Inputs are ``cls_logits``
(Q, K + 1) and ``mask_logits`` (Q, h, w) already resized to the network input of the image
(HF resizes to its fixed 384 x 384, the input size of its published processors, and reads no
padding); ``size`` is the output size (HF's ``target_sizes``). Where HF differs from the
paper's code:

- semantic: class-weighted mask probabilities are summed at input size, then the (K, h, w)
  scores are resized (the paper resizes the mask logits first);
- instance: the top Q (query, class) pairs over ALL classes (stuff too), masks binarised at
  input size then resized nearest; kept when non-empty and ``score >= score_thr``;
- panoptic: mask probabilities (not logits) are resized, weighted by the class score, and
  that weighted probability is what is thresholded at 0.5 for a query's own area; a segment
  is every pixel its query wins (not only those >= 0.5), kept when ``won / own > overlap_thr``
  (strictly); segments of stuff classes are fused (HF's ``label_ids_to_fuse``).

One departure: when a fused class's segment comes after other segments, transformers
(5.x ``compute_segments``) resumes its id counter from the fused segment's id, so the
segments after it reuse ids already given (two classes then share one id in its map); here
every segment keeps its own (``label * PANOPTIC_LABEL_DIVISOR + instance``). Without fused
classes the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR

from .inference import masks_to_boxes

__all__ = ["hf_instance_inference", "hf_panoptic_inference", "hf_semantic_inference"]


def _resize(maps: Tensor, size, mode: str = "bilinear") -> Tensor:
    """(N, h, w) -> (N, *size)."""
    kwargs = dict(align_corners=False) if mode == "bilinear" else {}
    return F.interpolate(maps[None], size=tuple(size), mode=mode, **kwargs)[0]


def hf_semantic_inference(cls_logits: Tensor, mask_logits: Tensor, size) -> Tensor:
    """-> (H, W) long class map at ``size`` (see the module doc)."""
    probs = cls_logits.softmax(-1)[:, :-1]  # (Q, K)
    scores = torch.einsum("qk,qhw->khw", probs, mask_logits.sigmoid())
    return _resize(scores, size).argmax(0)


def hf_instance_inference(
    cls_logits: Tensor, mask_logits: Tensor, size, score_thr: float = 0.5
) -> InstanceData:
    """-> ``InstanceData`` (``masks`` bool (N, H, W) at ``size``, ``labels``, ``scores``,
    ``bboxes`` xyxy), highest score first (see the module doc)."""
    num_queries, num_classes = cls_logits.shape[0], cls_logits.shape[1] - 1
    probs = cls_logits.softmax(-1)[:, :-1]
    scores, index = probs.flatten().topk(num_queries)
    labels, query = index % num_classes, index // num_classes
    logits = mask_logits[query]
    binary = (logits > 0).to(logits.dtype)  # (Q, h, w)
    mask_scores = (logits.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    scores = scores * mask_scores
    masks = _resize(binary, size, mode="nearest") > 0
    keep = masks.flatten(1).any(1) & (scores >= score_thr)
    masks, labels, scores = masks[keep], labels[keep], scores[keep]
    order = scores.argsort(descending=True)
    masks = masks[order]
    return InstanceData(
        masks=masks, labels=labels[order], scores=scores[order], bboxes=masks_to_boxes(masks)
    )


def hf_panoptic_inference(
    cls_logits: Tensor,
    mask_logits: Tensor,
    size,
    num_things: int,
    object_mask_thr: float = 0.5,
    overlap_thr: float = 0.8,
) -> Tensor:
    """-> (H, W) long panoptic map at ``size``: ``label * PANOPTIC_LABEL_DIVISOR + instance``
    (things numbered from 1, stuff 0), -1 void (see the module doc)."""
    num_classes = cls_logits.shape[-1] - 1
    scores, labels = cls_logits.softmax(-1).max(-1)  # (Q,)
    keep = (labels != num_classes) & (scores > object_mask_thr)
    pan = torch.full(tuple(size), -1, dtype=torch.long, device=mask_logits.device)
    if not keep.any():
        return pan
    scores, labels = scores[keep], labels[keep]
    weighted = _resize(mask_logits[keep].sigmoid(), size) * scores[:, None, None]  # (k, H, W)
    owner = weighted.argmax(0)
    instance = 0
    for j, label in enumerate(labels.tolist()):
        won = owner == j
        won_area, own_area = int(won.sum()), int((weighted[j] >= 0.5).sum())
        if won_area == 0 or own_area == 0 or not won_area / own_area > overlap_thr:
            continue
        if label < num_things:
            instance += 1
            pan[won] = label * PANOPTIC_LABEL_DIVISOR + instance
        else:  # stuff: one segment per class
            pan[won] = label * PANOPTIC_LABEL_DIVISOR
    return pan
