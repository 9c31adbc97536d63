"""Multi-scale projector of LW-DETR (Chen et al. 2024, "LW-DETR: A Transformer Replacement
to YOLO for Real-Time Detection") and RF-DETR (Robinson et al. 2025).

Several blocks' output maps of a plain ViT (one stride, e.g. ``block2 .. block11``) become
one map per scale factor ``s``, of stride ``in_stride / s``:

- every input map is resampled: ``s = 2``: deconv 2x2 (C -> C/2; for C > 512 with
  ``reduce_wide``, as LW-DETR: conv 1x1 + norm + ReLU to C/2 first, then deconv to C/4);
  ``s = 1``: as it is; ``s = 0.5``: conv 3x3 stride 2 + norm + ReLU (C -> C);
- the resampled maps are concatenated over channels and fused by a C2f block (YOLOv8):
  conv 1x1 to 2 halves of ``out_channels * expansion`` channels; ``num_blocks`` pairs of
  conv 3x3, each pair applied to the previous pair's output (the second half first);
  conv 1x1 of all halves concatenated to ``out_channels``; every conv followed by
  ``norm_layer`` and ``act_layer`` (LW-DETR: batch norm, RF-DETR: channels-first
  LayerNorm; SiLU);
- a channels-first LayerNorm (eps 1e-6) closes each level.

Outputs are keyed ``p{round(log2(stride))}`` (RF-DETR's names: patch 14, s = 1 -> ``p4``).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from visionfm.layers import LayerNorm2d, make_act, make_norm
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

__all__ = ["MultiScaleProjector", "convert_projector_checkpoint"]

Factory = Callable[..., nn.Module]


def conv_norm_act(
    cin: int, cout: int, kernel: int, stride: int, norm: Factory, act: Factory
) -> nn.Sequential:
    """conv (no bias, 'same' padding) -> norm -> act, children named ``conv`` / ``norm`` /
    ``act``: (B, cin, H, W) -> (B, cout, H / stride, W / stride)."""
    conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, norm=norm(cout), act=act()))


def _sampler(scale: float, dim: int, norm: Factory, reduce_wide: bool) -> tuple[nn.Module, int]:
    """The resampling of one input map for ``scale``, and its output channels."""
    if scale == 2.0 and reduce_wide and dim > 512:
        half = conv_norm_act(dim, dim // 2, 1, 1, norm, nn.ReLU)
        return nn.Sequential(half, nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2)), dim // 4
    if scale == 2.0:
        return nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, 2)), dim // 2
    if scale == 1.0:
        return nn.Sequential(), dim
    if scale == 0.5:
        return nn.Sequential(conv_norm_act(dim, dim, 3, 2, norm, nn.ReLU)), dim
    raise ValueError(
        f"scale factor {scale} is not supported by MultiScaleProjector: use 2, 1 or 0.5"
    )


class C2f(nn.Module):
    """CSP block with 2 convs (YOLOv8's C2f, no shortcut): (B, cin, H, W) -> (B, cout, H, W)."""

    def __init__(
        self, cin: int, cout: int, num_blocks: int, expansion: float, norm: Factory, act: Factory
    ) -> None:
        super().__init__()
        self.hidden = int(cout * expansion)
        self.conv1 = conv_norm_act(cin, 2 * self.hidden, 1, 1, norm, act)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                conv_norm_act(self.hidden, self.hidden, 3, 1, norm, act),
                conv_norm_act(self.hidden, self.hidden, 3, 1, norm, act),
            )
            for _ in range(num_blocks)
        )
        self.conv2 = conv_norm_act((2 + num_blocks) * self.hidden, cout, 1, 1, norm, act)

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.conv1(x).split(self.hidden, dim=1))  # 2 x (B, hidden, H, W)
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.conv2(torch.cat(parts, dim=1))


class ScaleProjector(nn.Module):
    """One output level: resample every input map, concatenate, C2f, LayerNorm."""

    def __init__(
        self,
        channels: Sequence[int],
        scale: float,
        out_channels: int,
        num_blocks: int,
        expansion: float,
        norm: Factory,
        act: Factory,
        reduce_wide: bool,
    ) -> None:
        super().__init__()
        samplers = [_sampler(scale, c, norm, reduce_wide) for c in channels]
        self.samplers = nn.ModuleList(s for s, _ in samplers)
        fused = sum(c for _, c in samplers)
        self.c2f = C2f(fused, out_channels, num_blocks, expansion, norm, act)
        self.norm = LayerNorm2d(out_channels, eps=1e-6)

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        """maps: (B, C_i, H, W) each -> (B, out_channels, H * scale, W * scale)."""
        x = torch.cat([sampler(m) for sampler, m in zip(self.samplers, maps)], dim=1)
        return self.norm(self.c2f(x))


@MODELS.register_module()
class MultiScaleProjector(nn.Module):
    """Feature dict of one stride -> one level per scale factor (see the module docstring).

    Args:
        in_channels: ``{level: channels}`` of the maps fused (e.g. the ViT's ``out_channels``),
            in the order they are concatenated.
        strides: ``{level: stride}`` of those maps (all the same).
        out_channels: width of every output level (LW-DETR / RF-DETR's ``d_model``).
        scale_factors: one output level per factor, in this order (2, 1 or 0.5).
        num_blocks: conv pairs in the C2f block (``c2f_num_blocks``).
        expansion: C2f hidden width / ``out_channels`` (``hidden_expansion``).
        norm_layer: after every conv (``'BN'``: LW-DETR; ``'LN2d_1e-5'``: HF RF-DETR, whose
            original code has eps 1e-6); a name of ``visionfm.layers.make_norm`` or a factory.
        act_layer: of the C2f convs (the resampling convs use ReLU, as the references).
        reduce_wide: halve inputs wider than 512 channels before a 2x deconv (LW-DETR; the
            RF-DETR code has it disabled).
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        strides: Mapping[str, int],
        out_channels: int = 256,
        scale_factors: Sequence[float] = (1.0,),
        num_blocks: int = 3,
        expansion: float = 0.5,
        norm_layer: str | Factory = "LN2d",
        act_layer: str | Factory = "silu",
        reduce_wide: bool = True,
    ) -> None:
        super().__init__()
        self.in_keys = list(in_channels)
        in_strides = {strides[k] for k in self.in_keys}
        if len(in_strides) != 1 or not self.in_keys:
            raise ValueError(
                f"MultiScaleProjector fuses maps of one stride; got strides "
                f"{ {k: strides[k] for k in self.in_keys} }: pick levels of one stride as "
                "in_channels (the ViT blocks' outputs)"
            )
        self.in_stride = in_strides.pop()
        self.scale_factors = [float(s) for s in scale_factors]
        self._strides = [self.in_stride / s for s in self.scale_factors]
        self._names = [f"p{round(math.log2(s))}" for s in self._strides]
        if len(set(self._names)) != len(self._names):
            raise ValueError(f"scale_factors {scale_factors} repeat an output level {self._names}")
        self._out_channels = out_channels
        norm, act = make_norm(norm_layer), make_act(act_layer)
        self.scales = nn.ModuleList(
            ScaleProjector(list(in_channels.values()), s, out_channels, num_blocks, expansion,
                           norm, act, reduce_wide)
            for s in self.scale_factors
        )  # fmt: skip

    @property
    def out_channels(self) -> dict[str, int]:
        return dict.fromkeys(self._names, self._out_channels)

    @property
    def out_strides(self) -> dict[str, int | float]:
        """Stride per level: an int where it is whole (``in_stride / scale``)."""
        return {n: int(s) if s == int(s) else s for n, s in zip(self._names, self._strides)}

    def forward(self, feats: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """feats: ``{level: (B, C_l, H, W)}`` (at least ``in_channels``' levels) ->
        ``{p<k>: (B, out_channels, H * s, W * s)}`` per scale factor ``s``."""
        missing = [k for k in self.in_keys if k not in feats]
        if missing:
            raise KeyError(f"MultiScaleProjector expects levels {self.in_keys}, got {list(feats)}")
        maps = [feats[k] for k in self.in_keys]
        return {name: scale(maps) for name, scale in zip(self._names, self.scales)}


# -- weight conversion -------------------------------------------------------------------
# Hugging Face (LwDetrMultiScaleProjector / RfDetrScaleProjector) and the original LW-DETR /
# RF-DETR repos' MultiScaleProjector -> ours, applied in order.
_RENAMES = [
    (r"^scale_layers\.(\d+)\.", r"scales.\1."),  # HF LW-DETR
    (r"^(projector_layer|layer_norm)\.", r"scales.0.\1."),  # HF RF-DETR: one level
    (r"\.sampling_layers\.(\d+)\.layers\.", r".samplers.\1."),
    (r"\.projector_layer\.", ".c2f."),
    (r"\.bottlenecks\.(\d+)\.conv1\.", r".blocks.\1.0."),
    (r"\.bottlenecks\.(\d+)\.conv2\.", r".blocks.\1.1."),
    (r"\.layer_norm\.", ".norm."),
    (r"^stages_sampling\.(\d+)\.(\d+)\.", r"scales.\1.samplers.\2."),  # original repos
    (r"^stages\.(\d+)\.0\.", r"scales.\1.c2f."),
    (r"^stages\.(\d+)\.1\.", r"scales.\1.norm."),
    (r"\.c2f\.cv1\.", ".c2f.conv1."),
    (r"\.c2f\.cv2\.", ".c2f.conv2."),
    (r"\.c2f\.m\.(\d+)\.cv1\.", r".c2f.blocks.\1.0."),
    (r"\.c2f\.m\.(\d+)\.cv2\.", r".c2f.blocks.\1.1."),
    (r"\.bn\.", ".norm."),
]
_OURS = re.compile(  # what our names look like: samplers, C2f convs and norms, closing norm
    r"^scales\.\d+\.(samplers\.\d+\.\d+\.|c2f\.(conv[12]|blocks\.\d+\.[01])\.(conv|norm)\.|norm\.)"
)


def convert_projector_checkpoint(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Projector tensors, prefix removed, -> :class:`MultiScaleProjector` names.

    Reads Hugging Face's LW-DETR (``scale_layers.{i}.sampling_layers / projector_layer /
    layer_norm``) and RF-DETR (``projector_layer``, ``layer_norm``: one level) layouts and the
    original repos' (``stages_sampling.{i}.{j}``, ``stages.{i}.0`` C2f ``cv1 / cv2 / m.{b}``
    with ``bn``, ``stages.{i}.1`` LayerNorm). Raises :class:`CheckpointError` naming the keys
    it does not know.
    """
    out, unknown = {}, []
    for name, tensor in state.items():
        new = name
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if _OURS.match(new):
            out[new] = tensor
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} projector keys are not in a known LW-DETR / RF-DETR projector "
            f"layout, e.g. {unknown[:3]}; expected Hugging Face 'scale_layers.*' / "
            "'projector_layer.*' or the original 'stages_sampling.*' / 'stages.*' names"
        )
    return out
