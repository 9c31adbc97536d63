"""Multi-scale deformable-attention pixel decoder of Mask2Former (Cheng et al., "Masked-
attention Mask Transformer for Universal Image Segmentation", CVPR 2022).

The coarsest ``num_encoder_levels`` input levels (e.g. strides 8, 16, 32) are projected to
``embed_dims`` (1x1 conv + GroupNorm), flattened with sine positions, a level embedding and
their padding masks into a :class:`~visionfm.layers.deformable.Memory`, and encoded by
the Deformable DETR encoder of the detection heads (``DetrEncoder`` of
``DetrEncoderLayer(self_attn=DeformableMemoryAttention(num_levels=num_encoder_levels))``).
Finer input levels (e.g. stride 4) are added FPN-style: a lateral 1x1 conv of the input,
plus the upsampled coarser output, then a 3x3 conv. A 1x1 conv on the finest output gives
the per-pixel embeddings that the queries' mask embeddings are dotted with. With no finer
level, the finest encoded level is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.data.batch import padding_mask
from visionfm.layers import (
    DeformableMemoryAttention,
    SinePositionalEncoding,
    flatten_levels,
    make_norm,
)
from visionfm.registry import MODELS

__all__ = ["MSDeformAttnPixelDecoder", "PixelDecoderOutput"]


@dataclass
class PixelDecoderOutput:
    """mask_features: (B, mask_dims, H_f, W_f) at the finest stride; levels: the encoded
    levels (B, C, H_l, W_l), coarsest first; padding: their (B, H_l, W_l) bool padding masks
    (True on padding); strides: their strides."""

    mask_features: Tensor
    levels: list[Tensor]
    padding: list[Tensor]
    strides: list[int]


def resize_padding(mask: Tensor, size) -> Tensor:
    """(B, H, W) bool -> (B, h, w) bool, nearest."""
    return F.interpolate(mask[:, None].float(), size=tuple(size))[:, 0].bool()


def _conv(
    cin: int, cout: int, kernel: int, norm, act: bool = False, bias: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)]
    layers += [norm(cout)] + ([nn.ReLU(inplace=True)] if act else [])
    nn.init.xavier_uniform_(layers[0].weight)
    if bias:
        nn.init.zeros_(layers[0].bias)
    return nn.Sequential(*layers)


@MODELS.register_module()
class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former's pixel decoder (see the module doc).

    Args:
        in_channels: ``{level: channels}`` of the input levels, finest first (e.g. the neck's
            ``out_channels``).
        strides: ``{level: stride}`` of the same levels.
        encoder: a ``DetrEncoder`` whose deformable attention has ``num_encoder_levels``
            levels and width ``embed_dims``.
        embed_dims: width C of the encoder and of every output level.
        mask_dims: channels of the per-pixel mask features.
        num_encoder_levels: how many of the coarsest inputs the encoder reads.
        positional_encoding: (B, H, W) padding mask -> (B, C, H, W); default normalised sine.
        norm_layer: of the convs (``'GN'``: 32 groups).
        input_bias: biased 1x1 input projections before their norm (the paper's code and
            Hugging Face's, needed for their weights); the default has none (the norm's
            shift makes a bias redundant).
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        strides: Mapping[str, int],
        encoder: nn.Module,
        embed_dims: int = 256,
        mask_dims: int = 256,
        num_encoder_levels: int = 3,
        positional_encoding: nn.Module | None = None,
        norm_layer: str | Callable[[int], nn.Module] = "GN",
        input_bias: bool = False,
    ) -> None:
        super().__init__()
        names = list(in_channels)
        if list(strides) != names or sorted(names, key=strides.get) != names:
            raise ValueError(
                f"in_channels {dict(in_channels)} and strides {dict(strides)} must name the "
                "same levels, finest first"
            )
        if not 1 <= num_encoder_levels <= len(names):
            raise ValueError(
                f"num_encoder_levels={num_encoder_levels} but {len(names)} input levels"
            )
        for m in encoder.modules():
            if isinstance(m, DeformableMemoryAttention) and (
                m.num_levels != num_encoder_levels or m.embed_dims != embed_dims
            ):
                raise ValueError(
                    f"the encoder's deformable attention has num_levels={m.num_levels}, "
                    f"embed_dims={m.embed_dims}; the pixel decoder needs "
                    f"{num_encoder_levels} and {embed_dims}"
                )
        norm = make_norm(norm_layer)
        self.encoder_names = names[-num_encoder_levels:][::-1]  # coarsest first
        self.fpn_names = names[:-num_encoder_levels][::-1]  # finer levels, coarse to fine
        self.strides = dict(strides)
        self.embed_dims, self.mask_dims = embed_dims, mask_dims
        self.input_proj = nn.ModuleList(
            _conv(in_channels[n], embed_dims, 1, norm, bias=input_bias) for n in self.encoder_names
        )
        self.level_embed = nn.Parameter(torch.empty(num_encoder_levels, embed_dims))
        self.positional_encoding = positional_encoding or SinePositionalEncoding(embed_dims // 2)
        self.encoder = encoder
        self.lateral_convs = nn.ModuleList(
            _conv(in_channels[n], embed_dims, 1, norm) for n in self.fpn_names
        )
        self.output_convs = nn.ModuleList(
            _conv(embed_dims, embed_dims, 3, norm, act=True) for _ in self.fpn_names
        )
        self.mask_feature = nn.Conv2d(embed_dims, mask_dims, 1)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.encoder.modules():
            if isinstance(m, DeformableMemoryAttention):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)
        nn.init.xavier_uniform_(self.mask_feature.weight)
        nn.init.zeros_(self.mask_feature.bias)

    def forward(
        self, feats: Mapping[str, Tensor], data_samples=None, padding: Tensor | None = None
    ) -> PixelDecoderOutput:
        """feats: ``{level: (B, C_l, H_l, W_l)}`` (at least the levels of ``in_channels``);
        data_samples give the padding (``img_shape`` / ``batch_input_shape``), or ``padding``
        (B, H, W) bool, True on padded pixels, does (an exported network's input)."""
        first = feats[self.encoder_names[0]]
        if padding is not None:
            pixels = padding
        elif data_samples is None:  # no metainfo: nothing is padding
            pixels = torch.zeros(first.shape[0], 1, 1, dtype=torch.bool, device=first.device)
        else:
            pixels = padding_mask(data_samples, device=first.device)  # (B, H, W)
        maps, masks = [], []
        for name, proj in zip(self.encoder_names, self.input_proj):
            mask = resize_padding(pixels, feats[name].shape[-2:])
            maps.append(proj(feats[name].masked_fill(mask[:, None], 0)))
            masks.append(mask)
        pos = [self.positional_encoding(m) for m in masks]
        memory = flatten_levels(maps, masks, pos, self.level_embed)
        encoded = self.encoder(memory)  # (B, S, C)
        sizes = [h * w for h, w in memory.level_shapes]
        levels = [
            x.transpose(1, 2).reshape(x.shape[0], -1, *m.shape[-2:])
            for x, m in zip(encoded.split(sizes, dim=1), maps)
        ]
        y = levels[-1]
        for name, lateral, output in zip(self.fpn_names, self.lateral_convs, self.output_convs):
            x = lateral(feats[name])
            y = output(x + F.interpolate(y, size=x.shape[-2:], mode="bilinear"))
        return PixelDecoderOutput(
            mask_features=self.mask_feature(y),
            levels=levels,
            padding=masks,
            strides=[self.strides[n] for n in self.encoder_names],
        )
