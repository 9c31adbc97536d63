"""The DPT decoder: Ranftl, Bochkovskiy and Koltun, "Vision Transformers for Dense
Prediction", ICCV 2021.

Four (or any number of) backbone levels, shallow to deep, become one fine feature map:

1. **Readout** (plain ViTs): each level's patch tokens are combined with the class token of
   the same block -- ``'ignore'`` it, ``'add'`` it, or ``'project'``: concatenate it to
   every patch token and apply Linear(2C -> C) + GELU.
2. **Reassemble**: a 1x1 conv to the level's width, then resampling by a factor: a
   transposed conv (k = stride = factor) for factors > 1, nothing for 1, a 3x3 conv with
   stride 1 / factor for factors < 1. For a ViT (every level at the patch stride) the
   default factors (4, 2, 1, 0.5) give strides 4, 8, 16, 32 at patch 16; for a hierarchical
   backbone (levels already at strides 4 .. 32) all factors are 1, so reassembling is just
   the projection. Then a 3x3 conv (no bias) maps every level to ``channels``.
3. **Fusion**, deepest level first: ``x = unit(x + skip_unit(level))`` (residual conv units),
   upsample x2 (bilinear), 1x1 conv. The deepest block has no skip. When an input side is
   not a multiple of the coarsest stride, the upsampled path is resized to the next level's
   size (Hugging Face resizes the level instead, which distorts it; both agree whenever the
   sizes match). The output has half the stride of the shallowest level.

The decoder has no task output, so a depth head (:class:`~.head.DPTDepthHead`) or a
segmentation head can sit on it. Parameter layout and arithmetic follow the published DPT
models, so Hugging Face ``DPTForDepthEstimation`` weights load (``dpt_convert``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.layers import make_act
from visionfm.registry import MODELS

__all__ = ["DPTDecoder", "FusionBlock", "Readout", "Reassemble", "ResidualConvUnit"]

READOUTS = ("ignore", "add", "project")


class Readout(nn.Module):
    """Merge the class token into the patch map: (B, C, H, W), (B, C) -> (B, C, H, W)."""

    def __init__(self, mode: str, channels: int, act_layer: Callable[[], nn.Module] = nn.GELU):
        super().__init__()
        if mode not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {mode!r}")
        self.mode = mode
        self.project = (
            nn.Sequential(nn.Linear(2 * channels, channels), act_layer())
            if mode == "project"
            else None
        )

    def forward(self, x: Tensor, cls_token: Tensor | None) -> Tensor:
        if self.mode == "ignore":
            return x
        if cls_token is None:
            raise ValueError(
                f"readout={self.mode!r} needs the class token of each block: build the ViT with "
                "class_token=True, return_class_token=True (or use readout='ignore')"
            )
        if self.mode == "add":
            return x + cls_token[:, :, None, None]
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        tokens = torch.cat((tokens, cls_token[:, None].expand(-1, h * w, -1)), dim=-1)
        return self.project(tokens).transpose(1, 2).reshape(b, c, h, w)


class Reassemble(nn.Module):
    """1x1 projection then resampling by ``factor``: (B, C_in, H, W) -> (B, C_out, H*f, W*f)."""

    def __init__(self, in_channels: int, out_channels: int, factor: float) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)
        if factor > 1:
            if factor != int(factor):
                raise ValueError(
                    f"an upsampling reassemble factor must be an integer, got {factor}"
                )
            k = int(factor)
            self.resample = nn.ConvTranspose2d(out_channels, out_channels, k, stride=k)
        elif factor == 1:
            self.resample = nn.Identity()
        else:
            stride = round(1 / factor)
            if factor <= 0 or abs(stride * factor - 1) > 1e-6:
                raise ValueError(f"a downsampling reassemble factor must be 1/n, got {factor}")
            self.resample = nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.resample(self.proj(x))


class ResidualConvUnit(nn.Module):
    """Pre-activation residual unit: ``x + conv(relu(conv(relu(x))))`` (3x3 convs, optional
    norm after each; convs have a bias only without norm). (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, norm_layer: Callable[[int], nn.Module] | None = None):
        super().__init__()
        bias = norm_layer is None
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=bias)
        self.norm1 = norm_layer(channels) if norm_layer else nn.Identity()
        self.norm2 = norm_layer(channels) if norm_layer else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm1(self.conv1(F.relu(x)))
        y = self.norm2(self.conv2(F.relu(y)))
        return x + y


class FusionBlock(nn.Module):
    """``x (B, C, h, w)`` [+ ``skip`` (B, C, h', w')] -> (B, C, 2h', 2w') (2h, 2w without a
    skip); see the module doc."""

    def __init__(
        self,
        channels: int,
        with_skip: bool,
        norm_layer: Callable[[int], nn.Module] | None = None,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels, norm_layer) if with_skip else None
        self.unit = ResidualConvUnit(channels, norm_layer)
        self.out_conv = nn.Conv2d(channels, channels, 1)
        self.align_corners = align_corners

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if self.skip_unit is not None:
            if skip is None:
                raise ValueError("this fusion block fuses a skip level; none was given")
            if skip.shape[-2:] != x.shape[-2:]:  # odd input sizes
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = x + self.skip_unit(skip)
        x = self.unit(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=self.align_corners)
        return self.out_conv(x)


def _as_list(value, n: int, name: str) -> list:
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (int, float)):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries for {n} input levels")
    return value


def _norm(norm_layer: str | Callable[[int], nn.Module] | None):
    if norm_layer is None or callable(norm_layer):
        return norm_layer
    if str(norm_layer).upper() == "BN":
        return nn.BatchNorm2d
    raise ValueError(
        f"norm_layer must be None, 'BN' or a factory dim -> module, got {norm_layer!r}"
    )


@MODELS.register_module()
class DPTDecoder(nn.Module):
    """Reassemble + fusion (see the module doc): feature dict -> (B, channels, H_0/2, W_0/2)
    where (H_0, W_0) is the size of the shallowest level after reassembling.

    Args:
        in_channels: ``{level: C}`` of the inputs, shallow to deep (e.g. a backbone's
            ``out_channels``), or a list for the last levels of the feature dict.
        in_strides: ``{level: stride}`` / list aligned with ``in_channels``.
        neck_channels: width of each level after reassembling (one int for all); DPT-Base
            (96, 192, 384, 768), DPT-Large (256, 512, 1024, 1024).
        channels: fusion width (DPT: 256); the output's channels.
        reassemble_factors: resampling factor per level. None: (4, 2, 1, 0.5, ...) when every
            level has the same stride (a plain ViT), else 1 (a pyramid).
        readout: class-token handling for ViT levels: 'ignore', 'add', 'project' (DPT).
            'add' / 'project' need ``f"{level}_cls"`` (B, C) tokens in the feature dict
            (``ViT(return_class_token=True)``).
        act_layer: activation of the readout projection.
        norm_layer: norm in the residual conv units: None (DPT) or 'BN' or a factory.
        align_corners: of the x2 bilinear upsampling in the fusion blocks (DPT: True).

    Consecutive levels must double in stride after reassembling (each fusion upsamples by
    2); this is checked here, at construction.
    """

    def __init__(
        self,
        in_channels: Mapping[str, int] | Sequence[int],
        in_strides: Mapping[str, int] | Sequence[int],
        neck_channels: int | Sequence[int] = (96, 192, 384, 768),
        channels: int = 256,
        reassemble_factors: Sequence[float] | None = None,
        readout: str = "ignore",
        act_layer: str | Callable[[], nn.Module] = "gelu",
        norm_layer: str | Callable[[int], nn.Module] | None = None,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        n = len(in_channels)
        if n < 1:
            raise ValueError("DPTDecoder needs at least one input level")
        self.keys = list(in_channels) if isinstance(in_channels, Mapping) else None
        in_ch = _as_list(in_channels, n, "in_channels")
        strides = [float(s) for s in _as_list(in_strides, n, "in_strides")]
        neck = [int(c) for c in _as_list(neck_channels, n, "neck_channels")]
        if reassemble_factors is None:
            single = len(set(strides)) == 1
            reassemble_factors = [2.0 ** (2 - i) if single else 1.0 for i in range(n)]
        factors = [float(f) for f in _as_list(reassemble_factors, n, "reassemble_factors")]
        effective = [s / f for s, f in zip(strides, factors)]
        for a, b in zip(effective, effective[1:]):
            if abs(b - 2 * a) > 1e-6 * b:
                raise ValueError(
                    f"DPTDecoder: levels at strides {strides} with reassemble_factors {factors} "
                    f"give strides {effective}; each level must have twice the stride of the "
                    "previous one (set reassemble_factors)"
                )
        self.channels = channels
        self.out_stride = effective[0] / 2
        act = make_act(act_layer)
        self.readouts = nn.ModuleList(Readout(readout, c, act) for c in in_ch)
        self.reassembles = nn.ModuleList(
            Reassemble(c, o, f) for c, o, f in zip(in_ch, neck, factors)
        )
        self.level_convs = nn.ModuleList(
            nn.Conv2d(o, channels, 3, padding=1, bias=False) for o in neck
        )
        norm = _norm(norm_layer)
        # fusions[0] takes the deepest level alone; fusions[i] fuses level n-1-i in
        self.fusions = nn.ModuleList(
            FusionBlock(channels, with_skip=i > 0, norm_layer=norm, align_corners=align_corners)
            for i in range(n)
        )

    def select(self, feats: Mapping[str, Tensor]) -> list[tuple[Tensor, Tensor | None]]:
        """The input levels, shallow to deep, each with its class token (or None)."""
        if self.keys is not None:
            missing = [k for k in self.keys if k not in feats]
            if missing:
                raise KeyError(
                    f"DPTDecoder: levels {missing} are not in the features {list(feats)}"
                )
            keys = self.keys
        else:
            maps = [k for k in feats if not k.endswith("_cls")]
            if len(maps) < len(self.reassembles):
                raise KeyError(f"DPTDecoder: expects {len(self.reassembles)} levels, got {maps}")
            keys = maps[-len(self.reassembles) :]
        return [(feats[k], feats.get(f"{k}_cls")) for k in keys]

    def forward(self, feats: Mapping[str, Tensor]) -> Tensor:
        """feats: ``{level: (B, C_l, H_l, W_l)}`` [+ ``{level}_cls``: (B, C_l)] ->
        (B, channels, h, w) at stride ``out_stride``."""
        levels = []
        for (x, cls_token), readout, reassemble, conv in zip(
            self.select(feats), self.readouts, self.reassembles, self.level_convs
        ):
            levels.append(conv(reassemble(readout(x, cls_token))))  # (B, channels, h_l, w_l)
        out = self.fusions[0](levels[-1])
        for fusion, skip in zip(self.fusions[1:], reversed(levels[:-1])):
            out = fusion(out, skip)
        return out
