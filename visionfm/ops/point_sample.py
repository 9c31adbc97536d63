"""Point sampling of dense maps, as PointRend (Kirillov et al., "PointRend: Image
Segmentation as Rendering", CVPR 2020) uses it and Mask2Former (Cheng et al., CVPR 2022)
trains its mask losses with it: losses and matching costs on a few thousand points per mask
instead of every pixel.

Points are ``(x, y)`` in [0, 1] relative to the map's extent (0 = left / top edge, 1 = right /
bottom edge), read by bilinear interpolation between pixel centres (``grid_sample`` with
``align_corners=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["point_sample", "uncertain_points"]


def point_sample(maps: Tensor, points: Tensor) -> Tensor:
    """Bilinear values of ``maps`` at ``points``.

    Args:
        maps: (N, C, H, W) float.
        points: (N, P, 2) ``(x, y)`` in [0, 1]; outside the map the border pixels repeat.

    Returns:
        (N, C, P).
    """
    grid = (2 * points - 1).unsqueeze(2).to(maps.dtype)  # (N, P, 1, 2) in [-1, 1]
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(3)


@torch.no_grad()
def uncertain_points(
    logits: Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PointRend's training points: mostly where the mask is uncertain, some uniform.

    ``oversample_ratio * num_points`` uniform candidates are drawn per mask; the
    ``importance_sample_ratio * num_points`` most uncertain of them (logit closest to 0:
    uncertainty ``-|logit|``) are kept and the rest of the ``num_points`` are drawn
    uniformly.

    Args:
        logits: (N, 1, H, W) mask logits.
        num_points: P points per mask.

    Returns:
        (N, P, 2) ``(x, y)`` in [0, 1].
    """
    if oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
        raise ValueError(
            f"need oversample_ratio >= 1 and 0 <= importance_sample_ratio <= 1, got "
            f"{oversample_ratio}, {importance_sample_ratio}"
        )
    n = logits.shape[0]
    kwargs = dict(device=logits.device, dtype=logits.dtype, generator=generator)
    num_candidates = int(num_points * oversample_ratio)
    candidates = torch.rand(n, num_candidates, 2, **kwargs)
    uncertainty = -point_sample(logits, candidates)[:, 0].abs()  # (N, candidates)
    num_uncertain = int(importance_sample_ratio * num_points)
    top = uncertainty.topk(num_uncertain, dim=1).indices  # (N, num_uncertain)
    chosen = candidates.gather(1, top[..., None].expand(-1, -1, 2))
    uniform = torch.rand(n, num_points - num_uncertain, 2, **kwargs)
    return torch.cat((chosen, uniform), dim=1)
