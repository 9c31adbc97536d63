"""Gaussian heatmap codec with unbiased data processing (UDP) and DARK sub-pixel decoding.

Papers: Huang et al., CVPR 2020, "The Devil is in the Details: Delving into Unbiased Data
Processing for Human Pose Estimation" (UDP); Zhang et al., CVPR 2020, "Distribution-Aware
Coordinate Representation for Human Pose Estimation" (DARK).

Coordinate systems. Keypoints come in the network input's continuous pixel coordinates
(``DataSample``: pixel ``j`` covers ``[j, j + 1)``, its centre is ``j + 0.5``). Heatmaps of
size ``(h, w)`` cover an input of size ``(H, W)``. UDP measures both in pixel-index units (a
pixel centre is an integer) and scales by ``(size - 1)``::

    k = (x - 0.5) * (w - 1) / (W - 1)          input x  ->  heatmap column k
    x = k * (W - 1) / (w - 1) + 0.5            heatmap column k  ->  input x

so the first and the last pixel centres of input and heatmap coincide. Mirroring the input
(``x -> W - x``) then mirrors the heatmap exactly (``k -> w - 1 - k``): flip testing needs no
half-pixel shift, which is the bias UDP removes (with ``size`` scaling the flipped heatmap is
off by ``(W / w - 1) / 2`` input pixels).

Decoding: the integer argmax of each heatmap is refined by DARK's second-order Taylor
expansion of the log-heatmap (after a Gaussian blur that smooths the network's output): with
gradient ``g`` and Hessian ``H`` of ``log(heatmap)`` at the argmax (central differences),
the maximum of the quadratic model is at ``argmax - H^-1 g``. For a Gaussian target this is
exact (its log is quadratic). We pick DARK over UDP's offset maps because it needs no extra
output channels and works on any Gaussian-trained heatmap (ViTPose's published heads
included). Where the Hessian is not negative definite (flat or border maxima), the integer
argmax is kept; offsets are clipped to one heatmap pixel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["UDPHeatmapCodec", "flip_heatmaps"]


def flip_heatmaps(heatmaps: Tensor, flip_pairs: Sequence[Sequence[int]]) -> Tensor:
    """Heatmaps predicted on a mirrored input -> heatmaps of the original input.

    heatmaps: (B, K, h, w). Mirrors the columns and swaps the channels of each left/right
    pair in ``flip_pairs`` (0-based (i, j) index pairs). Exact under UDP (see module doc).
    """
    k = heatmaps.shape[1]
    order = list(range(k))
    for a, b in flip_pairs:
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"flip pair ({a}, {b}) is out of range for {k} keypoints")
        order[a], order[b] = b, a
    return heatmaps.flip(-1)[:, order]


def _gaussian_kernel(size: int, sigma: float, device, dtype) -> Tensor:
    """(size,) normalised 1-d Gaussian."""
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


class UDPHeatmapCodec:
    """Keypoints <-> Gaussian heatmaps in UDP coordinates (see the module doc).

    Args:
        sigma: Gaussian standard deviation in heatmap pixels (ViTPose: 2 on 64 x 48 maps).
        blur_kernel: odd size of the Gaussian blur applied before the Taylor refinement
            (it averages out noise; on a noise-free Gaussian it only costs accuracy near the
            borders). None: ``2 * ceil(sigma) + 1`` (5 for sigma 2: on noisy maps the mean
            error is lowest there; DARK used 11); 0 or 1: no blur.
        refine: DARK sub-pixel refinement; False: the integer argmax.
    """

    def __init__(self, sigma: float = 2.0, blur_kernel: int | None = None, refine: bool = True):
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        if blur_kernel is None:
            blur_kernel = 2 * math.ceil(sigma) + 1
        if blur_kernel > 1 and blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd (or 0 for none), got {blur_kernel}")
        self.sigma = float(sigma)
        self.blur_kernel = int(blur_kernel)
        self.refine = refine

    def __repr__(self) -> str:
        return (
            f"UDPHeatmapCodec(sigma={self.sigma}, blur_kernel={self.blur_kernel}, "
            f"refine={self.refine})"
        )

    # -- coordinate maps ------------------------------------------------------------------
    @staticmethod
    def _scale(input_hw: Sequence[int], heatmap_hw: Sequence[int]) -> tuple[float, float]:
        """(sx, sy): heatmap pixel-index units per input pixel-index unit."""
        (ih, iw), (hh, hw) = input_hw[:2], heatmap_hw[:2]
        if min(ih, iw, hh, hw) < 2:
            raise ValueError(f"input {input_hw} and heatmap {heatmap_hw} sizes must be >= 2")
        return (hw - 1) / (iw - 1), (hh - 1) / (ih - 1)

    def to_heatmap(self, xy: Tensor, input_hw, heatmap_hw) -> Tensor:
        """(..., 2) continuous input pixels -> (..., 2) heatmap pixel indices."""
        sx, sy = self._scale(input_hw, heatmap_hw)
        return (xy - 0.5) * xy.new_tensor([sx, sy])

    def to_input(self, uv: Tensor, input_hw, heatmap_hw) -> Tensor:
        """(..., 2) heatmap pixel indices -> (..., 2) continuous input pixels."""
        sx, sy = self._scale(input_hw, heatmap_hw)
        return uv / uv.new_tensor([sx, sy]) + 0.5

    # -- encoding -------------------------------------------------------------------------
    def encode(
        self, keypoints: Tensor, input_hw: Sequence[int], heatmap_hw: Sequence[int]
    ) -> tuple[Tensor, Tensor]:
        """Gaussian targets and their weights.

        Args:
            keypoints: (N, K, 3) ``[x, y, v]`` in continuous input pixels; v > 0 = labelled.
            input_hw: (H, W) of the network input; heatmap_hw: (h, w) of the heatmaps.

        Returns:
            heatmaps (N, K, h, w) with peak 1 at each keypoint, weights (N, K): 1 for a
            labelled keypoint whose Gaussian reaches the heatmap (centre at most 3 sigma
            outside it), else 0 (and an all-zero map).
        """
        h, w = heatmap_hw[:2]
        uv = self.to_heatmap(keypoints[..., :2].double(), input_hw, heatmap_hw)  # (N, K, 2)
        margin = 3 * self.sigma
        inside = (
            (uv[..., 0] >= -margin)
            & (uv[..., 0] <= w - 1 + margin)
            & (uv[..., 1] >= -margin)
            & (uv[..., 1] <= h - 1 + margin)
        )
        weights = ((keypoints[..., 2] > 0) & inside).to(keypoints.dtype)
        xs = torch.arange(w, device=keypoints.device, dtype=torch.float64)
        ys = torch.arange(h, device=keypoints.device, dtype=torch.float64)
        gx = torch.exp(-((xs - uv[..., 0:1]) ** 2) / (2 * self.sigma**2))  # (N, K, w)
        gy = torch.exp(-((ys - uv[..., 1:2]) ** 2) / (2 * self.sigma**2))  # (N, K, h)
        heatmaps = gy[..., :, None] * gx[..., None, :]  # (N, K, h, w)
        heatmaps = heatmaps.to(keypoints.dtype) * weights[..., None, None]
        return heatmaps, weights

    # -- decoding -------------------------------------------------------------------------
    def _blur(self, heatmaps: Tensor) -> Tensor:
        """(N, K, h, w) -> same, separable Gaussian blur (zero padding)."""
        k = self.blur_kernel
        if k <= 1:
            return heatmaps
        sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8  # OpenCV's default sigma for a k-tap kernel
        g = _gaussian_kernel(k, sigma, heatmaps.device, heatmaps.dtype)
        n, c, h, w = heatmaps.shape
        x = heatmaps.reshape(n * c, 1, h, w)
        x = F.conv2d(x, g.view(1, 1, 1, k), padding=(0, k // 2))
        x = F.conv2d(x, g.view(1, 1, k, 1), padding=(k // 2, 0))
        return x.reshape(n, c, h, w)

    def _taylor(self, heatmaps: Tensor, uv: Tensor) -> Tensor:
        """DARK offsets (N, K, 2) at the integer maxima ``uv`` (N, K, 2) long."""
        n, k, h, w = heatmaps.shape
        logmap = self._blur(heatmaps).clamp_min(1e-10).log()
        logmap = F.pad(logmap, (1, 1, 1, 1), mode="replicate").reshape(n * k, -1)  # (NK, hw')
        x, y = uv[..., 0].reshape(-1) + 1, uv[..., 1].reshape(-1) + 1  # padded indices
        stride = w + 2

        def at(dx: int, dy: int) -> Tensor:
            index = ((y + dy) * stride + (x + dx))[:, None]
            return logmap.gather(1, index)[:, 0]  # (NK,)

        centre = at(0, 0)
        dx = 0.5 * (at(1, 0) - at(-1, 0))
        dy = 0.5 * (at(0, 1) - at(0, -1))
        dxx = at(1, 0) - 2 * centre + at(-1, 0)
        dyy = at(0, 1) - 2 * centre + at(0, -1)
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy**2
        ok = (det > 1e-12) & (dxx < 0)  # negative definite: a proper maximum
        det = torch.where(ok, det, torch.ones_like(det))
        off_x = -(dyy * dx - dxy * dy) / det
        off_y = -(dxx * dy - dxy * dx) / det
        offsets = torch.stack((off_x, off_y), -1) * ok[:, None]
        # a maximum on the border has a one-sided (replicated) neighbourhood: no refinement
        border = (x == 1) | (x == w) | (y == 1) | (y == h)
        offsets = offsets.masked_fill(border[:, None], 0.0)
        return offsets.clamp(-1.0, 1.0).reshape(n, k, 2)

    def decode(self, heatmaps: Tensor, input_hw: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Heatmaps -> keypoints.

        Args:
            heatmaps: (N, K, h, w) predicted maps.
            input_hw: (H, W) of the network input the maps cover.

        Returns:
            keypoints (N, K, 2) in continuous input pixels and scores (N, K): each map's
            maximum value.
        """
        n, k, h, w = heatmaps.shape
        scores, index = heatmaps.reshape(n, k, -1).max(-1)  # (N, K)
        uv = torch.stack((index % w, torch.div(index, w, rounding_mode="floor")), -1)  # (N, K, 2)
        coords = uv.to(heatmaps.dtype)
        if self.refine and h >= 3 and w >= 3:
            coords = coords + self._taylor(heatmaps.detach(), uv).to(heatmaps.dtype)
        return self.to_input(coords, input_hw, (h, w)), scores
