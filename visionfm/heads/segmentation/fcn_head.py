"""A plain fully-convolutional head (Long et al., "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015): ``num_convs`` conv + norm + ReLU blocks and a 1x1 classifier on
one feature level (or several, resized to the first one's size and concatenated). Used as
UperNet's auxiliary head (deep supervision on a middle level) and as the simplest semantic
head."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from visionfm.registry import MODELS

from .base import ConvNormAct, NormSpec, SegClassifier, SemanticSegHead, resize_to

__all__ = ["FCNHead"]


@MODELS.register_module()
class FCNHead(SemanticSegHead):
    """conv blocks + classifier: (B, C_in, h, w) -> logits (B, K, h, w).

    Args:
        num_classes: K.
        in_channels: ``{level: channels}``, usually one level (``dict(p4=256)``); several
            levels are resized (bilinear) to the first one's size and concatenated.
        channels: width of the conv blocks.
        num_convs: conv blocks (0: the classifier reads the input directly).
        kernel_size: of the conv blocks (1 makes the head per-pixel).
        dropout, norm_layer, act_layer: as ``UperNetHead``.
        kwargs: ``SemanticSegHead``'s (loss_ce, loss_dice, class_weight, ignore_index,
            auxiliary; as an auxiliary head, e.g. ``loss_ce=0.4``).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Mapping[str, int],
        channels: int = 256,
        num_convs: int = 1,
        kernel_size: int = 3,
        dropout: float = 0.1,
        norm_layer: NormSpec = "BN",
        act_layer: str | Callable[[], nn.Module] = "relu",
        **kwargs,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        self._use_levels(in_channels)
        dim = sum(in_channels.values())
        convs = []
        for _ in range(num_convs):
            convs.append(ConvNormAct(dim, channels, kernel_size, norm_layer, act_layer))
            dim = channels
        self.convs = nn.Sequential(*convs)
        self.classifier = SegClassifier(dim, num_classes, dropout)

    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> Tensor:
        """feats ``{level: (B, C_l, h_l, w_l)}`` -> logits (B, K, h, w) at the first chosen
        level's size."""
        missing = [k for k in self.levels if k not in feats]
        if missing:
            raise KeyError(f"FCNHead: feature levels {missing} not in the inputs {list(feats)}")
        size = feats[self.levels[0]].shape[-2:]
        x = torch.cat([resize_to(feats[k], size) for k in self.levels], dim=1)
        return self.classifier(self.convs(x))
