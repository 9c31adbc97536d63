"""UperNet decode head (Xiao et al., "Unified Perceptual Parsing for Scene Understanding",
ECCV 2018): a pyramid pooling module (PSPNet, Zhao et al., CVPR 2017) on the coarsest level
and an FPN (Lin et al., CVPR 2017) top-down pathway over all levels, fused at the finest.

Pipeline, for levels ``l_0`` (finest) .. ``l_n`` (coarsest) of ``in_channels``::

    top      = bottleneck3x3(cat[x_n, up(pool_s(x_n)) for s in pool_scales])   -> C
    lat_i    = conv1x1(x_i)                                                    -> C, i < n
    lat_i   += up(lat_{i+1})                      (top-down, from coarse to fine; lat_n = top)
    out_i    = conv3x3(lat_i) for i < n;  out_n = top
    logits   = classifier(conv3x3(cat[up(out_i) to l_0's size]))               -> K

Every conv is conv + norm + ReLU; ``up`` is bilinear. Logits are at the finest level's
stride (4 for p2 .. p5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.registry import MODELS

from .base import ConvNormAct, NormSpec, SegClassifier, SemanticSegHead, resize_to

__all__ = ["PyramidPooling", "UperNetHead"]


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: (B, C_in, h, w) -> (B, C_in + len(pool_scales) * C, h, w).

    For each scale ``s``: adaptive average pooling to ``s x s`` bins, conv1x1 + norm + act to
    ``C`` channels, bilinear upsampling back to ``h x w``; concatenated after the input.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        norm_layer: NormSpec = "BN",
        act_layer: str | Callable[[], nn.Module] = "relu",
    ) -> None:
        super().__init__()
        self.pool_scales = tuple(int(s) for s in pool_scales)
        self.stages = nn.ModuleList(
            ConvNormAct(in_channels, channels, 1, norm_layer, act_layer) for _ in self.pool_scales
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = [
            resize_to(stage(F.adaptive_avg_pool2d(x, s)), x.shape[-2:])
            for s, stage in zip(self.pool_scales, self.stages)
        ]
        return torch.cat([x, *pooled], dim=1)


@MODELS.register_module()
class UperNetHead(SemanticSegHead):
    """UperNet: PPM on the coarsest level + FPN fusion (see the module doc).

    Args:
        num_classes: K.
        in_channels: ``{level: channels}`` of the inputs to use, FINEST FIRST (e.g. the
            neck's ``out_channels``: ``dict(p2=256, p3=256, p4=256, p5=256)``).
        channels: width C of every internal map (512 in the paper's ADE20K models).
        pool_scales: PPM bin counts on the coarsest level.
        dropout: before the classifier.
        norm_layer, act_layer: of every conv block ('BN' / 'SyncBN' / 'GN' / ...).
        kwargs: ``SemanticSegHead``'s (loss_ce, loss_dice, class_weight, ignore_index,
            auxiliary).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Mapping[str, int],
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        norm_layer: NormSpec = "BN",
        act_layer: str | Callable[[], nn.Module] = "relu",
        **kwargs,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        dims = self._use_levels(in_channels)

        def block(cin: int, cout: int, k: int) -> ConvNormAct:
            return ConvNormAct(cin, cout, k, norm_layer, act_layer)

        self.ppm = PyramidPooling(dims[-1], channels, pool_scales, norm_layer, act_layer)
        self.ppm_bottleneck = block(dims[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(block(c, channels, 1) for c in dims[:-1])
        self.fpn_convs = nn.ModuleList(block(channels, channels, 3) for _ in dims[:-1])
        self.fuse = block(len(dims) * channels, channels, 3)
        self.classifier = SegClassifier(channels, num_classes, dropout)

    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> Tensor:
        """feats ``{level: (B, C_l, H_l, W_l)}`` -> logits (B, K, H_0, W_0) at the finest
        level's size."""
        missing = [k for k in self.levels if k not in feats]
        if missing:
            raise KeyError(f"UperNetHead: feature levels {missing} not in the inputs {list(feats)}")
        xs = [feats[k] for k in self.levels]
        top = self.ppm_bottleneck(self.ppm(xs[-1]))
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, xs[:-1])] + [top]
        for i in range(len(laterals) - 2, -1, -1):  # top-down: coarse -> fine
            laterals[i] = laterals[i] + resize_to(laterals[i + 1], laterals[i].shape[-2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1])] + [top]
        size = outs[0].shape[-2:]
        fused = self.fuse(torch.cat([resize_to(o, size) for o in outs], dim=1))
        return self.classifier(fused)
