"""visionfm.backbones: 2D backbones returning ``dict[level, (B, C, H, W)]`` (see ``base.Backbone``)."""

from .base import Backbone
from .pvt import PVT_PRESETS, PyramidVisionTransformerV2
from .swin import SWIN_PRESETS, SwinTransformer, SwinTransformerV2
from .timm_backbone import TimmBackbone
from .vit import VIT_PRESETS, ViT
from .weights import CheckpointError, LoadReport, read_checkpoint

__all__ = [
    "Backbone",
    "CheckpointError",
    "LoadReport",
    "PVT_PRESETS",
    "PyramidVisionTransformerV2",
    "SWIN_PRESETS",
    "SwinTransformer",
    "SwinTransformerV2",
    "TimmBackbone",
    "VIT_PRESETS",
    "ViT",
    "read_checkpoint",
]
