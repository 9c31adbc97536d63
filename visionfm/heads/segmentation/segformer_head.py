"""SegFormer's all-MLP decoder (Xie et al., "SegFormer: Simple and Efficient Design for
Semantic Segmentation with Transformers", NeurIPS 2021).

Every input level is projected to ``C`` channels by a per-pixel linear layer (a 1x1 conv),
upsampled (bilinear) to the finest level's size, the maps are concatenated and fused by a
1x1 conv + norm + ReLU, and a 1x1 classifier gives the logits::

    logits = classifier(fuse(cat[up(linear_l(x_l)) for l in levels]))   (B, K, H_0, W_0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from visionfm.registry import MODELS

from .base import ConvNormAct, NormSpec, SegClassifier, SemanticSegHead, resize_to

__all__ = ["SegFormerHead"]


@MODELS.register_module()
class SegFormerHead(SemanticSegHead):
    """SegFormer all-MLP decoder (see the module doc).

    Args:
        num_classes: K.
        in_channels: ``{level: channels}`` of the inputs, finest first (e.g. a hierarchical
            backbone's ``out_channels`` at strides 4 .. 32, or a neck's).
        channels: embedding width C (256 for MiT-B0/B1, 768 for the larger ones).
        dropout: before the classifier.
        norm_layer, act_layer: of the fusion conv.
        kwargs: ``SemanticSegHead``'s (loss_ce, loss_dice, class_weight, ignore_index,
            auxiliary).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Mapping[str, int],
        channels: int = 256,
        dropout: float = 0.1,
        norm_layer: NormSpec = "BN",
        act_layer: str | Callable[[], nn.Module] = "relu",
        **kwargs,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        self._use_levels(in_channels)
        self.linears = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels.values())
        self.fuse = ConvNormAct(len(self.levels) * channels, channels, 1, norm_layer, act_layer)
        self.classifier = SegClassifier(channels, num_classes, dropout)

    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> Tensor:
        """feats ``{level: (B, C_l, H_l, W_l)}`` -> logits (B, K, H_0, W_0) at the first
        (finest) level's size."""
        missing = [k for k in self.levels if k not in feats]
        if missing:
            raise KeyError(
                f"SegFormerHead: feature levels {missing} not in the inputs {list(feats)}"
            )
        size = feats[self.levels[0]].shape[-2:]
        maps = [resize_to(lin(feats[k]), size) for lin, k in zip(self.linears, self.levels)]
        return self.classifier(self.fuse(torch.cat(maps, dim=1)))
