"""One-to-one matching of DETR predictions to ground truth by the Hungarian algorithm.

DETR (Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020) trains on a
bipartite matching between queries and ground-truth boxes. The matching cost used here is
that of Deformable DETR (Zhu et al., ICLR 2021) and DINO (Zhang et al., ICLR 2023): a focal
classification cost (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017), the L1
distance of normalised cxcywh boxes, and the negative generalized IoU.

For a query with class probability ``p = sigmoid(logit)`` of the target's class::

    pos = alpha * (1 - p) ** gamma * -log(p)          # focal loss if the class were positive
    neg = (1 - alpha) * p ** gamma * -log(1 - p)      # focal loss if it were negative
    cost = cost_class * (pos - neg) + cost_bbox * L1 + cost_giou * (-GIoU)

DETR's own softmax classification (``classification='softmax'``, logits with a last "no
object" column) costs ``-softmax(logits)[target]`` instead of ``pos - neg``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from visionfm.ops.boxes import box_cxcywh_to_xyxy, generalized_box_iou
from visionfm.registry import MODELS

__all__ = ["HungarianMatcher", "match_groups"]


@MODELS.register_module()
class HungarianMatcher(nn.Module):
    """Assigns each ground-truth box of an image to one query, minimising the total cost.

    Args:
        cost_class: weight of the focal classification cost.
        cost_bbox: weight of the L1 distance between normalised cxcywh boxes.
        cost_giou: weight of the negative generalized IoU (computed on xyxy).
        focal_alpha: focal cost's weight of the positive term (the negative one gets
            ``1 - alpha``).
        focal_gamma: focal cost's focusing exponent.
        classification: ``'sigmoid'`` (the focal cost) or ``'softmax'`` (DETR's
            ``-softmax[target]``; logits (..., C + 1) with "no object" last).

    With Q queries and N targets in an image, ``min(Q, N)`` pairs are returned (all targets
    when Q >= N, as DETR models are configured). Matching needs no gradient and runs on the
    CPU (scipy); the cost matrix is built on the inputs' device.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        classification: str = "sigmoid",
    ) -> None:
        super().__init__()
        if classification not in ("sigmoid", "softmax"):
            raise ValueError(
                f"classification must be 'sigmoid' or 'softmax', got {classification!r}"
            )
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: all cost weights are 0, nothing to match on")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.classification = classification

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, "
            f"cost_giou={self.cost_giou}, focal_alpha={self.focal_alpha}, "
            f"focal_gamma={self.focal_gamma}, classification={self.classification!r}"
        )

    @torch.no_grad()
    def cost_matrix(
        self,
        logits: Tensor,
        boxes: Tensor,
        tgt_labels: Tensor,
        tgt_boxes: Tensor,
        tgt_class_map: Tensor | None = None,
    ) -> Tensor:
        """Matching cost of one image.

        Args:
            logits: (Q, C) classification logits (C + 1 with softmax).
            boxes: (Q, 4) predicted boxes, normalised cxcywh.
            tgt_labels: (N,) target classes in 0..C-1.
            tgt_boxes: (N, 4) target boxes, normalised cxcywh.
            tgt_class_map: (N, C) 0 / 1 classes of each target instead of ``tgt_labels``
                (grounding: the tokens of its phrase): the class cost is the mean of the
                focal costs over them.

        Returns:
            (Q, N) cost, float32.
        """
        logits = logits.float()
        boxes, tgt_boxes = boxes.float(), tgt_boxes.to(boxes.device, torch.float32)
        if self.classification == "softmax":
            if tgt_class_map is not None:
                raise ValueError("a class_map target needs classification='sigmoid'")
            cost = -logits.softmax(-1)[:, tgt_labels.to(logits.device)]  # (Q, N)
            return self._add_box_costs(self.cost_class * cost, boxes, tgt_boxes)
        if tgt_class_map is None:
            logits = logits[:, tgt_labels.to(logits.device)]  # (Q, N): target class logit
        prob = logits.sigmoid()
        alpha, gamma = self.focal_alpha, self.focal_gamma
        # -log(p) = softplus(-x) and -log(1 - p) = softplus(x): finite for any logit.
        pos = alpha * (1 - prob) ** gamma * F.softplus(-logits)
        neg = (1 - alpha) * prob**gamma * F.softplus(logits)
        cost = pos - neg  # (Q, N), or (Q, C) with a class map
        if tgt_class_map is not None:
            weights = tgt_class_map.to(cost).T  # (C, N)
            cost = cost @ (weights / weights.sum(0, keepdim=True).clamp(min=1))
        return self._add_box_costs(self.cost_class * cost, boxes, tgt_boxes)

    def _add_box_costs(self, cost: Tensor, boxes: Tensor, tgt_boxes: Tensor) -> Tensor:
        """(Q, N) class cost + the weighted L1 and -GIoU costs of (Q, 4) / (N, 4) cxcywh."""
        cost = cost + self.cost_bbox * torch.cdist(boxes, tgt_boxes, p=1)
        giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(tgt_boxes))
        return cost - self.cost_giou * giou

    @torch.no_grad()
    def forward(
        self, pred_logits: Tensor, pred_boxes: Tensor, targets: list[dict[str, Tensor]]
    ) -> list[tuple[Tensor, Tensor]]:
        """Match every image of the batch.

        Args:
            pred_logits: (B, Q, C) classification logits (sigmoid, no background class; softmax: C + 1, "no object" last).
            pred_boxes: (B, Q, 4) predicted boxes, normalised cxcywh.
            targets: B dicts with ``labels`` (N_i,) long in 0..C-1 and ``boxes`` (N_i, 4)
                normalised cxcywh, optionally ``class_map`` (N_i, C) (see
                :meth:`cost_matrix`); N_i may be 0.

        Returns:
            B pairs ``(pred_idx, tgt_idx)`` of int64 tensors of length ``min(Q, N_i)`` on
            ``pred_logits``' device: query ``pred_idx[k]`` is matched to target
            ``tgt_idx[k]``; ``pred_idx`` is sorted ascending.
        """
        if pred_logits.shape[:2] != pred_boxes.shape[:2] or len(targets) != len(pred_logits):
            raise ValueError(
                f"pred_logits {tuple(pred_logits.shape)}, pred_boxes "
                f"{tuple(pred_boxes.shape)} and {len(targets)} targets do not agree on (B, Q)"
            )
        device = pred_logits.device
        indices = []
        for i, target in enumerate(targets):
            labels, boxes = target["labels"], target["boxes"]
            if len(labels) == 0:
                empty = torch.zeros(0, dtype=torch.int64, device=device)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(
                pred_logits[i], pred_boxes[i], labels, boxes, target.get("class_map")
            ).cpu()
            if not torch.isfinite(cost).all():
                raise ValueError(
                    f"HungarianMatcher: the cost matrix of image {i} in the batch is not "
                    f"finite (NaN / inf in pred_logits, pred_boxes or target boxes)"
                )
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append(
                (
                    torch.as_tensor(rows, dtype=torch.int64, device=device),
                    torch.as_tensor(cols, dtype=torch.int64, device=device),
                )
            )
        return indices


def match_groups(
    matcher: nn.Module,
    pred_logits: Tensor,
    pred_boxes: Tensor,
    targets: list[dict[str, Tensor]],
    num_groups: int,
) -> list[tuple[Tensor, Tensor]]:
    """Group DETR's one-to-many matching: the Q queries are ``num_groups`` consecutive groups
    of Q / num_groups, each matched one-to-one to every target by ``matcher`` on its own.

    Returns, as the matcher does, B pairs ``(pred_idx, tgt_idx)`` (indices into all Q
    queries, ascending): each target appears once per group.
    """
    if num_groups == 1:
        return matcher(pred_logits, pred_boxes, targets)
    size = pred_logits.shape[1] // num_groups
    per_group = [
        matcher(
            pred_logits[:, g * size : (g + 1) * size],
            pred_boxes[:, g * size : (g + 1) * size],
            targets,
        )
        for g in range(num_groups)
    ]
    return [
        (
            torch.cat([group[i][0] + g * size for g, group in enumerate(per_group)]),
            torch.cat([group[i][1] for group in per_group]),
        )
        for i in range(len(targets))
    ]
