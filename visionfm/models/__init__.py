"""visionfm.models: task models (backbone -> neck -> heads)."""

from .detector import Detector
from .pose_estimator import TopDownPoseEstimator
from .segmentor import Segmentor

__all__ = ["Detector", "Segmentor", "TopDownPoseEstimator"]
