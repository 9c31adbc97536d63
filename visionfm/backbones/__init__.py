"""visionfm.backbones: 2D backbones returning ``dict[level, (B, C, H, W)]`` (see ``base.Backbone``)."""

from .base import Backbone
from .vit import VIT_PRESETS, ViT
from .weights import CheckpointError, LoadReport, read_checkpoint

__all__ = ["Backbone", "CheckpointError", "LoadReport", "VIT_PRESETS", "ViT", "read_checkpoint"]
