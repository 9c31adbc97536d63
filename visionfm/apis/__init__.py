"""visionfm.apis: inference from Python (images, folders, videos, webcams, point clouds) and
pipelines."""

from .inferencer import Inferencer
from .point_inferencer import PointInferencer
from .pose_pipeline import TopDownPipeline

__all__ = ["Inferencer", "PointInferencer", "TopDownPipeline"]
