"""Text-prompted detection (Grounding DINO): the head and its parts, all in ``MODELS``."""

from .classifier import ContrastiveClassifier
from .decoder import GroundingDecoderLayer
from .encoder import GroundingEncoder, GroundingEncoderLayer, TextEnhancerLayer
from .fusion import ImageTextFusion
from .head import GroundingDINOHead

__all__ = [
    "ContrastiveClassifier",
    "GroundingDINOHead",
    "GroundingDecoderLayer",
    "GroundingEncoder",
    "GroundingEncoderLayer",
    "ImageTextFusion",
    "TextEnhancerLayer",
]
