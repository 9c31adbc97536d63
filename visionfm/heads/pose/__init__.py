"""Human pose: ViTPose heatmap decoders, the top-down heatmap head, a RoI pose head for
multi-task models, the UDP / DARK heatmap codec and ViTPose checkpoint conversion (heads
registered in ``MODELS``)."""

from .codec import UDPHeatmapCodec, flip_heatmaps
from .decoders import ClassicDecoder, SimpleDecoder
from .head import TopDownHeatmapHead
from .roi_head import RoIPoseHead
from .vitpose_convert import load_vitpose_checkpoint

__all__ = [
    "ClassicDecoder",
    "RoIPoseHead",
    "SimpleDecoder",
    "TopDownHeatmapHead",
    "UDPHeatmapCodec",
    "flip_heatmaps",
    "load_vitpose_checkpoint",
]
