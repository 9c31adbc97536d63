"""Segmentation heads: semantic (``SemanticSegHead`` and its decoders UperNet, SegFormer,
FCN, with the per-pixel losses of ``losses``) and universal (``mask2former``: semantic /
instance / panoptic), registered in ``MODELS``."""

from . import mask2former
from .base import ConvNormAct, SegClassifier, SemanticSegHead
from .fcn_head import FCNHead
from .segformer_head import SegFormerHead
from .upernet import UperNetHead

__all__ = [
    "ConvNormAct",
    "FCNHead",
    "SegClassifier",
    "SegFormerHead",
    "SemanticSegHead",
    "UperNetHead",
    "mask2former",
]
