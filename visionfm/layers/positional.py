"""Positional encodings: sine codes (DETR-style heads) and learned grids (ViTs).

- :class:`SinePositionalEncoding`: the 2D sine encoding of feature-map positions of DETR
  (Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020), computed from
  the padding mask so that positions are measured inside the valid image only.
- :func:`sine_encoding`: the same encoding of normalised coordinates, one block per
  coordinate, used for box-conditioned queries (DAB-DETR, Liu et al. ICLR 2022; DINO, Zhang et
  al. ICLR 2023) and for the two-stage proposals of Deformable DETR (Zhu et al. ICLR 2021).

Both put the y block before the x block, so a query's position code lines up with the
memory's.

- :func:`resize_pos_embed`: a learned grid of absolute position embeddings resized to
  another grid (any input size for a ViT); :func:`grid_from_length` the square grid of a
  token count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import statically_known_true

from visionfm.registry import MODELS

__all__ = ["SinePositionalEncoding", "grid_from_length", "resize_pos_embed", "sine_encoding"]


def _frequencies(num_feats: int, temperature: float, device: torch.device) -> Tensor:
    """(num_feats,) divisors ``temperature ** (2 * (i // 2) / num_feats)``."""
    i = torch.arange(num_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / num_feats)


def _interleave(angles: Tensor) -> Tensor:
    """(..., F) angles -> (..., F) ``[sin a0, cos a1, sin a2, cos a3, ...]``."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_encoding(
    coords: Tensor, num_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi
) -> Tensor:
    """Sine code of normalised coordinates.

    Args:
        coords: (..., D) values in [0, 1]; D = 2 ``(x, y)`` or 4 ``(cx, cy, w, h)``; or D = 1
            (a text token's position, Grounding DINO).
        num_feats: channels per coordinate (even).

    Returns:
        (..., D * num_feats), blocks ordered ``y, x`` then (for D = 4) ``w, h``.
    """
    freqs = _frequencies(num_feats, temperature, coords.device)
    code = _interleave(coords.float()[..., None] * scale / freqs)  # (..., D, num_feats)
    order = [1, 0, *range(2, coords.shape[-1])] if coords.shape[-1] > 1 else [0]
    return code[..., order, :].flatten(-2).to(coords.dtype)


@MODELS.register_module()
class SinePositionalEncoding(nn.Module):
    """2D sine encoding of the valid pixels of a padded feature map.

    Row / column indices count valid positions only (cumulative sums of the inverted padding
    mask), so an image's encoding does not depend on how much padding the batch adds.

    Args:
        num_feats: channels per axis; the output has ``2 * num_feats`` (= embed dims).
        temperature: frequency base (DETR: 10000; DINO: 20).
        normalize: divide indices by the valid extent and multiply by ``scale``.
        scale: range of normalised positions.
        offset: added to the 1-based index before normalising (Deformable DETR: -0.5, the
            pixel centre; DETR / DINO: 0).
        eps: keeps the division finite on fully padded rows / columns.
    """

    def __init__(
        self,
        num_feats: int = 128,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: float = 2 * math.pi,
        offset: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if num_feats % 2:
            raise ValueError(f"num_feats must be even, got {num_feats}")
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.offset = offset
        self.eps = eps

    def extra_repr(self) -> str:
        return (
            f"num_feats={self.num_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, offset={self.offset}"
        )

    def forward(self, mask: Tensor) -> Tensor:
        """mask: (B, H, W) bool, True on padding -> (B, 2 * num_feats, H, W) float32."""
        valid = (~mask).float()
        y = valid.cumsum(1)  # (B, H, W): 1-based row index among valid rows
        x = valid.cumsum(2)
        if self.normalize:
            y = (y + self.offset) / (y[:, -1:, :] + self.eps) * self.scale
            x = (x + self.offset) / (x[:, :, -1:] + self.eps) * self.scale
        freqs = _frequencies(self.num_feats, self.temperature, mask.device)
        pos_y = _interleave(y[..., None] / freqs)  # (B, H, W, num_feats)
        pos_x = _interleave(x[..., None] / freqs)
        return torch.cat((pos_y, pos_x), dim=-1).permute(0, 3, 1, 2)


def known_same_size(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """``a == b`` for concrete sizes; False for symbolic ones (``torch.export``), without the
    guard a comparison would add, so that an exported program resizes for any grid (an
    identity at the table's own size unless ``offset``)."""
    return statically_known_true(a[0] == b[0]) and statically_known_true(a[1] == b[1])


def resize_pos_embed(
    pos: torch.Tensor,
    size: tuple[int, int],
    antialias: bool = False,
    offset: float = 0.0,
    mode: str = "bicubic",
) -> torch.Tensor:
    """Bicubic (or ``mode``) resize of a grid of absolute position embeddings.

    Args:
        pos: (1, h, w, C) embeddings of the grid they were trained on.
        size: target grid (H, W).
        antialias: PyTorch's antialiased bicubic (PIL-style kernel; what timm uses).
            False gives the plain bicubic kernel (Hugging Face, ViTDet, mmpretrain).
        offset: the original DINOv2 repo's ``interpolate_offset`` (0.1 there): resample with
            scale factor ``(H + offset) / h`` instead of the exact target size.
        mode: ``'bicubic'`` (timm, HF ViT / DINOv2) or ``'bilinear'`` (HF DPT).

    Returns:
        (1, H, W, C), in ``pos``'s dtype (computed in float32).
    """
    h, w = pos.shape[1:3]
    if known_same_size((h, w), size):
        return pos
    grid = pos.permute(0, 3, 1, 2).float()  # (1, C, h, w)
    if offset:
        scale = ((size[0] + offset) / h, (size[1] + offset) / w)
        grid = F.interpolate(grid, scale_factor=scale, mode=mode, antialias=antialias)
    else:
        grid = F.interpolate(grid, size=tuple(size), mode=mode, antialias=antialias)
    return grid.to(pos.dtype).permute(0, 2, 3, 1)


def grid_from_length(length: int) -> tuple[int, int] | None:
    """(n, n) if ``length`` is a perfect square n * n, else None."""
    n = math.isqrt(length)
    return (n, n) if n * n == length else None
