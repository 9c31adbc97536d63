"""Channel mapper: every input level projected to one width, plus optional coarser levels.

The input projection of Deformable DETR (Zhu et al., ICLR 2021) and DINO (Zhang et al., ICLR
2023): a 1x1 conv + GroupNorm per backbone level, and extra levels made by a 3x3 stride-2
conv + GroupNorm, the first from the coarsest *input* map, the next from the previous extra
level.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch.nn as nn
from torch import Tensor

from visionfm.backbones import level_name
from visionfm.layers import make_norm
from visionfm.registry import MODELS

__all__ = ["ChannelMapper"]


def _conv_norm(
    cin: int,
    cout: int,
    kernel: int,
    stride: int,
    norm: Callable[[int], nn.Module] | None,
    bias: bool,
) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=bias)
    nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, norm(cout)) if norm is not None else nn.Sequential(conv)


def _level_name(stride: int, index: int) -> str:
    return level_name(stride) if stride & (stride - 1) == 0 else f"extra{index}"


@MODELS.register_module()
class ChannelMapper(nn.Module):
    """Feature dict -> feature dict with ``out_channels`` channels on every level.

    Args:
        in_channels: ``{level: channels}`` of the levels to use (the backbone's / neck's
            ``out_channels``, or a subset), or a list: the LAST ``len(in_channels)`` levels of
            the input dict, in its order (finest first).
        strides: ``{level: stride}`` or a list aligned with ``in_channels``.
        out_channels: width of every output level.
        num_extra_levels: coarser levels appended, each at twice the previous stride, named
            ``p<log2(stride)>``.
        kernel_size: of the per-level projection (1 in DETR-style heads).
        norm_layer: factory ``dims -> module`` or name (``'GN'``: 32 groups; see
            ``visionfm.layers``); None: no norm, biased convs.
        conv_bias: biased convs also before a norm (the original DINO / Grounding DINO code:
            a per-channel bias does not cancel in GroupNorm's groups of several channels);
            None: only without a norm.

    Outputs keep the input level names (with a list ``in_channels`` they are named
    ``p<log2(stride)>`` by stride); ``out_channels`` / ``out_strides`` describe them.
    """

    def __init__(
        self,
        in_channels: Mapping[str, int] | Sequence[int],
        strides: Mapping[str, int] | Sequence[int],
        out_channels: int = 256,
        num_extra_levels: int = 0,
        kernel_size: int = 1,
        norm_layer: str | Callable[[int], nn.Module] | None = "GN",
        conv_bias: bool | None = None,
    ) -> None:
        super().__init__()
        if isinstance(in_channels, Mapping):
            self.in_keys: list[str] | None = list(in_channels)
            channels = list(in_channels.values())
            if isinstance(strides, Mapping):
                strides = [strides[k] for k in self.in_keys]
        else:
            self.in_keys, channels = None, list(in_channels)
        strides = list(strides.values()) if isinstance(strides, Mapping) else list(strides)
        if len(strides) != len(channels) or not channels:
            raise ValueError(
                f"in_channels ({len(channels)} levels) and strides ({len(strides)}) must name "
                "the same, non-empty, levels"
            )
        norm = make_norm(norm_layer) if norm_layer is not None else None
        bias = norm is None if conv_bias is None else conv_bias
        self.convs = nn.ModuleList(
            _conv_norm(c, out_channels, kernel_size, 1, norm, bias) for c in channels
        )
        self.extra_convs = nn.ModuleList(
            _conv_norm(channels[-1] if i == 0 else out_channels, out_channels, 3, 2, norm, bias)
            for i in range(num_extra_levels)
        )
        self._in_strides = strides
        self._extra_strides = [strides[-1] * 2 ** (i + 1) for i in range(num_extra_levels)]
        self._in_names = self.in_keys or [_level_name(s, i) for i, s in enumerate(strides)]
        self._extra_names = [
            _level_name(s, len(channels) + i) for i, s in enumerate(self._extra_strides)
        ]
        self._out_channels = out_channels

    def _names(self, feats: Mapping[str, Tensor]) -> list[str]:
        names = self.in_keys or list(feats)[-len(self.convs) :]
        missing = [n for n in names if n not in feats]
        if missing or len(names) != len(self.convs):
            raise KeyError(f"ChannelMapper expects levels {names}, got {list(feats)}")
        return names

    @property
    def out_channels(self) -> dict[str, int]:
        return dict.fromkeys(self._in_names + self._extra_names, self._out_channels)

    @property
    def out_strides(self) -> dict[str, int]:
        names = self._in_names + self._extra_names
        return dict(zip(names, self._in_strides + self._extra_strides))

    def forward(self, feats: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """feats: ``{level: (B, C_in, H, W)}`` -> ``{level: (B, out_channels, H_l, W_l)}``,
        the input levels then the extra ones (names as ``out_channels``)."""
        names = self._names(feats)
        out = {o: conv(feats[n]) for o, n, conv in zip(self._in_names, names, self.convs)}
        x = feats[names[-1]]
        for name, conv in zip(self._extra_names, self.extra_convs):
            x = conv(x)
            out[name] = x
        return out
