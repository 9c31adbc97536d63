"""visionfm.apis: inference from Python (images, folders, videos, webcams) and pipelines."""

from .inferencer import Inferencer
from .pose_pipeline import TopDownPipeline

__all__ = ["Inferencer", "TopDownPipeline"]
