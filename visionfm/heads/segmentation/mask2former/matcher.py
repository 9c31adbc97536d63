"""Hungarian matching of mask predictions to ground-truth segments, with the costs of
Mask2Former (Cheng et al., CVPR 2022): the negative softmax probability of the target's
class, the binary cross-entropy and the Dice loss of the mask, both on ``num_points``
uniformly drawn points shared by all predictions and targets of an image.

For query q with logits ``x_q`` at the points (P,) and target t with values ``y_t`` in
{0, 1}::

    cost_class = -softmax(class logits)_q[label_t]
    cost_mask  = mean_p BCE(x_qp, y_tp)
    cost_dice  = 1 - (2 sum_p s_qp y_tp + 1) / (sum_p s_qp + sum_p y_tp + 1),  s = sigmoid(x)
    cost       = w_class cost_class + w_mask cost_mask + w_dice cost_dice
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from visionfm.ops.point_sample import point_sample
from visionfm.registry import MODELS

__all__ = ["MaskHungarianMatcher", "pairwise_bce", "pairwise_dice"]


def pairwise_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """(Q, P) logits, (N, P) targets in [0, 1] -> (Q, N) BCE averaged over the points."""
    pos = F.softplus(-logits)  # -log sigmoid(x): the loss where the target is 1
    neg = F.softplus(logits)  # -log (1 - sigmoid(x)): where it is 0
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: Tensor, targets: Tensor) -> Tensor:
    """(Q, P) logits, (N, P) targets in [0, 1] -> (Q, N) Dice loss (smoothed by 1)."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


@MODELS.register_module()
class MaskHungarianMatcher(nn.Module):
    """One-to-one matching of queries to segments minimising the cost of the module doc.

    Args:
        cost_class, cost_mask, cost_dice: weights of the three costs.
        num_points: points drawn uniformly per image (the paper: 112 * 112 = 12544).
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        num_points: int = 12544,
    ) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("MaskHungarianMatcher: all cost weights are 0, nothing to match on")
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}"
        )

    @torch.no_grad()
    def cost_matrix(
        self,
        cls_logits: Tensor,
        mask_logits: Tensor,
        tgt_labels: Tensor,
        tgt_masks: Tensor,
        points: Tensor,
    ) -> Tensor:
        """Cost of one image.

        Args:
            cls_logits: (Q, K + 1) class logits (last = no object).
            mask_logits: (Q, H, W) mask logits.
            tgt_labels: (N,) long in 0..K-1; tgt_masks: (N, H', W') masks (any resolution:
                points are relative to each map's extent).
            points: (P, 2) ``(x, y)`` in [0, 1].

        Returns:
            (Q, N) float32 cost.
        """
        prob = cls_logits.float().softmax(-1)[:, tgt_labels]  # (Q, N)
        pts = points[None].to(mask_logits.device, torch.float32)
        out = point_sample(mask_logits.float()[None], pts)[0]  # (Q, P)
        tgt = point_sample(tgt_masks.float()[None].to(pts.device), pts)[0]  # (N, P)
        return (
            -self.cost_class * prob
            + self.cost_mask * pairwise_bce(out, tgt)
            + self.cost_dice * pairwise_dice(out, tgt)
        )

    @torch.no_grad()
    def forward(
        self,
        cls_logits: Tensor,
        mask_logits: Tensor,
        targets: list[dict[str, Tensor]],
        generator: torch.Generator | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Match every image of the batch.

        Args:
            cls_logits: (B, Q, K + 1); mask_logits: (B, Q, H, W).
            targets: B dicts with ``labels`` (N_i,) and ``masks`` (N_i, H', W'); N_i may be 0.
            generator: for the point draw (default: torch's global generator).

        Returns:
            B pairs ``(pred_idx, tgt_idx)`` of int64 tensors of length ``min(Q, N_i)``,
            ``pred_idx`` sorted ascending, on ``cls_logits``' device.
        """
        device = cls_logits.device
        indices = []
        for i, target in enumerate(targets):
            labels, masks = target["labels"], target["masks"]
            if len(labels) == 0:
                empty = torch.zeros(0, dtype=torch.int64, device=device)
                indices.append((empty, empty.clone()))
                continue
            points = torch.rand(self.num_points, 2, generator=generator).to(device)
            cost = self.cost_matrix(cls_logits[i], mask_logits[i], labels, masks, points).cpu()
            if not torch.isfinite(cost).all():
                raise ValueError(
                    f"MaskHungarianMatcher: the cost matrix of image {i} in the batch is not "
                    "finite (NaN / inf in the class or mask logits)"
                )
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append(
                (
                    torch.as_tensor(rows, dtype=torch.int64, device=device),
                    torch.as_tensor(cols, dtype=torch.int64, device=device),
                )
            )
        return indices
