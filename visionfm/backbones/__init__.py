"""visionfm.backbones: 2D backbones returning ``dict[level, (B, C, H, W)]`` (see ``base.Backbone``)."""

from .base import Backbone, level_name
from .point_patch import POINT_PATCH_PRESETS, PointPatchTransformer
from .point_serialized import PTV3_PRESETS, PointTransformerV3
from .pvt import PVT_PRESETS, PyramidVisionTransformerV2
from .swin import SWIN_PRESETS, SwinTransformer, SwinTransformerV2
from .timm_backbone import TimmBackbone
from .vit import VIT_PRESETS, ViT

__all__ = [
    "Backbone",
    "POINT_PATCH_PRESETS",
    "PTV3_PRESETS",
    "PVT_PRESETS",
    "PointPatchTransformer",
    "PointTransformerV3",
    "PyramidVisionTransformerV2",
    "SWIN_PRESETS",
    "SwinTransformer",
    "SwinTransformerV2",
    "TimmBackbone",
    "VIT_PRESETS",
    "ViT",
    "level_name",
]
