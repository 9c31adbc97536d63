"""Depth heads: the DPT decoder (reusable by other dense heads), ``DPTDepthHead`` (metric or
relative depth), the depth losses and the Hugging Face DPT checkpoint converter, registered
in ``MODELS``."""

from .dpt_convert import convert_dpt_checkpoint, dpt_model_from_hf
from .dpt_decoder import DPTDecoder, FusionBlock, Readout, Reassemble, ResidualConvUnit
from .head import DPTDepthHead
from .losses import (
    ScaleShiftInvariantLoss,
    SILogLoss,
    align_scale_shift,
    gradient_matching_loss,
    normalize_disparity,
)

__all__ = [
    "DPTDecoder",
    "DPTDepthHead",
    "FusionBlock",
    "Readout",
    "Reassemble",
    "ResidualConvUnit",
    "SILogLoss",
    "ScaleShiftInvariantLoss",
    "align_scale_shift",
    "convert_dpt_checkpoint",
    "dpt_model_from_hf",
    "gradient_matching_loss",
    "normalize_disparity",
]
