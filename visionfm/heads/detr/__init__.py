"""DETR-style detection: the head, its transformer parts, query selection, denoising, the
Hungarian matcher (all registered in ``MODELS``) and the set-prediction losses (``losses``)."""

from .denoising import CdnQueryGenerator
from .head import DETRHead
from .matcher import HungarianMatcher
from .transformer import (
    DetrDecoder,
    DetrDecoderLayer,
    DetrEncoder,
    DetrEncoderLayer,
    DetrFFN,
    DetrMultiheadAttention,
    GlobalMemoryAttention,
)

__all__ = [
    "CdnQueryGenerator",
    "DETRHead",
    "DetrDecoder",
    "DetrDecoderLayer",
    "DetrEncoder",
    "DetrEncoderLayer",
    "DetrFFN",
    "DetrMultiheadAttention",
    "GlobalMemoryAttention",
    "HungarianMatcher",
]
