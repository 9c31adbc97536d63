"""visionfm.apis: inference from Python and drawing of results."""

from .inferencer import Inferencer
from .pose_pipeline import TopDownPipeline

__all__ = ["Inferencer", "TopDownPipeline"]
