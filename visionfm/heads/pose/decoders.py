"""ViTPose's two heatmap decoders (Xu et al., NeurIPS 2022, "ViTPose: Simple Vision
Transformer Baselines for Human Pose Estimation").

- :class:`ClassicDecoder`: transposed convolutions (4 x 4, stride 2, each followed by
  BatchNorm + ReLU; ViTPose: two of 256 channels) then a 1 x 1 convolution to K heatmaps.
  Stride-16 features -> stride-4 heatmaps.
- :class:`SimpleDecoder`: ReLU, bilinear upsampling by ``scale_factor`` (4), then a 3 x 3
  convolution to K heatmaps.

Both map ``(B, C, h, w)`` features to ``(B, K, h * s, w * s)`` heatmaps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from torch import Tensor

from visionfm.registry import MODELS

__all__ = ["ClassicDecoder", "SimpleDecoder"]


@MODELS.register_module()
class ClassicDecoder(nn.Module):
    """Deconvolution decoder (see module doc).

    Args:
        in_channels: C of the input feature map.
        out_channels: K, the number of keypoints.
        deconv_channels: width of each transposed convolution (their number sets the
            upsampling: 2 ** len); ``()`` for none.
        deconv_kernels: kernel of each (4, 3 or 2; padding keeps an exact 2x).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        deconv_channels: Sequence[int] = (256, 256),
        deconv_kernels: Sequence[int] = (4, 4),
    ) -> None:
        super().__init__()
        if len(deconv_channels) != len(deconv_kernels):
            raise ValueError(
                f"deconv_channels {tuple(deconv_channels)} and deconv_kernels "
                f"{tuple(deconv_kernels)} must have the same length"
            )
        layers: list[nn.Module] = []
        prev = in_channels
        for width, kernel in zip(deconv_channels, deconv_kernels):
            padding, output_padding = {4: (1, 0), 3: (1, 1), 2: (0, 0)}.get(kernel, (None, None))
            if padding is None:
                raise ValueError(f"deconv kernel must be 2, 3 or 4, got {kernel}")
            layers += [
                nn.ConvTranspose2d(
                    prev, width, kernel, 2, padding, output_padding=output_padding, bias=False
                ),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            prev = width
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(prev, out_channels, kernel_size=1)
        self.scale_factor = 2 ** len(deconv_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """Normal(0, 0.001) deconvs / final conv, zero final bias (as ViTPose / SimpleBaseline)."""
        for m in self.modules():
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, K, h * 2**n, w * 2**n)."""
        return self.final(self.deconv(x))


@MODELS.register_module()
class SimpleDecoder(nn.Module):
    """ReLU -> bilinear x ``scale_factor`` -> 3 x 3 conv (see module doc).

    Args:
        in_channels: C; out_channels: K; scale_factor: upsampling factor (ViTPose: 4).
    """

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int = 4) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.act = nn.ReLU()
        self.upsample = nn.Upsample(scale_factor=scale_factor, mode="bilinear", align_corners=False)
        self.final = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, K, h * s, w * s)."""
        return self.final(self.upsample(self.act(x)))
