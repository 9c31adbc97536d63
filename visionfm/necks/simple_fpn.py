"""Simple feature pyramid of ViTDet (Li et al. 2022, "Exploring Plain Vision Transformer
Backbones for Object Detection"): a multi-scale pyramid from one single-scale map.

For each scale factor ``s`` the input map (stride ``in_stride``) is resampled to stride
``in_stride / s`` by

- ``s = 4``: deconv 2x2 (C -> C/2), norm, activation, deconv 2x2 (C/2 -> C/4);
- ``s = 2``: deconv 2x2 (C -> C/2);
- ``s = 1``: nothing;
- ``s = 0.5``: max-pool 2x2;

then projected by conv 1x1 + norm and conv 3x3 + norm to ``out_channels``. The optional
top block max-pools (kernel 1, stride 2) the coarsest level once more (ViTDet's
``LastLevelMaxPool``, e.g. stride 64). Outputs are keyed ``f"p{log2(stride)}"``:
``p2`` .. ``p5`` (+ ``p6``) for a stride-16 input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from visionfm.backbones import level_name
from visionfm.layers import make_act, make_norm
from visionfm.registry import MODELS

__all__ = ["SimpleFeaturePyramid"]


def _resampler(scale: float, dim: int, norm_layer, act_layer) -> tuple[nn.Module, int]:
    """The resampling stage for one scale factor and its output channels."""
    if scale == 4.0:
        stage = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2),
            norm_layer(dim // 2),
            act_layer(),
            nn.ConvTranspose2d(dim // 2, dim // 4, kernel_size=2, stride=2),
        )
        return stage, dim // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(dim, dim // 2, kernel_size=2, stride=2), dim // 2
    if scale == 1.0:
        return nn.Identity(), dim
    if scale == 0.5:
        return nn.MaxPool2d(kernel_size=2, stride=2), dim
    raise ValueError(f"scale factor {scale} is not supported; use 4, 2, 1 or 0.5")


@MODELS.register_module()
class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid (see the module docstring).

    Args:
        in_channels: channels of the input map.
        out_channels: channels of every output level.
        scale_factors: resampling factors, e.g. (4, 2, 1, 0.5) for strides 4 .. 32 from 16.
        in_stride: stride of the input map (16 for patch-16 ViTs).
        in_key: which entry of the backbone's output dict to use; None takes the last one.
        top_block: add one more level by max-pooling the coarsest output with stride 2.
        norm_layer: factory ``dim -> module`` or name (``'LN2d'``, ``'GN'``, ...; see
            ``visionfm.layers``); None: no norm and biased convs.
        act_layer: activation inside the x4 upsampling stage.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        in_stride: int = 16,
        in_key: str | None = None,
        top_block: bool = False,
        norm_layer: str | Callable[[int], nn.Module] | None = "LN2d",
        act_layer: str | Callable[[], nn.Module] = "gelu",
    ) -> None:
        super().__init__()
        if not scale_factors:
            raise ValueError("scale_factors must name at least one scale")
        self.in_key = in_key
        self.top_block = top_block
        self._coarsest = min(range(len(scale_factors)), key=lambda i: scale_factors[i])
        norm = make_norm(norm_layer) if norm_layer is not None else None
        act = make_act(act_layer)
        with_bias = norm is None

        strides = []
        for s in scale_factors:
            stride = in_stride / s
            if stride != int(stride) or int(stride) & (int(stride) - 1):
                raise ValueError(
                    f"in_stride {in_stride} / scale {s} = {stride} is not a power of two; "
                    "level names p<i> need strides 2**i"
                )
            strides.append(int(stride))
        if top_block:
            strides.append(2 * max(strides))
        self._strides = {level_name(s): s for s in strides}
        if len(self._strides) != len(strides):
            raise ValueError(f"scale_factors {tuple(scale_factors)} repeat a level")
        self._channels = dict.fromkeys(self._strides, out_channels)

        self.stages = nn.ModuleList()
        for s in scale_factors:
            resample, dim = _resampler(float(s), in_channels, norm or nn.Identity, act)
            layers = [resample, nn.Conv2d(dim, out_channels, 1, bias=with_bias)]
            layers += [norm(out_channels)] if norm else []
            layers += [nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=with_bias)]
            layers += [norm(out_channels)] if norm else []
            self.stages.append(nn.Sequential(*layers))

    @property
    def out_channels(self) -> dict[str, int]:
        return dict(self._channels)

    @property
    def out_strides(self) -> dict[str, int]:
        return dict(self._strides)

    def forward(self, feats: Mapping[str, torch.Tensor] | torch.Tensor) -> dict[str, torch.Tensor]:
        """feats: backbone outputs ``{level: (B, C, h, w)}`` (or one map) at stride ``in_stride``.

        Returns ``{f"p{i}": (B, out_channels, ~h * s, ~w * s)}``, finest level first.
        """
        if isinstance(feats, Mapping):
            x = feats[self.in_key] if self.in_key is not None else list(feats.values())[-1]
        else:
            x = feats
        outs = [stage(x) for stage in self.stages]
        if self.top_block:
            coarsest = max(range(len(outs)), key=lambda i: -outs[i].shape[-1])
            outs.append(F.max_pool2d(outs[coarsest], kernel_size=1, stride=2))
        order = sorted(zip(self._strides, outs), key=lambda kv: self._strides[kv[0]])
        return dict(order)
