"""visionfm.models: task models (backbone -> neck -> heads) and their losses."""

from . import losses
from .detector import Detector
from .pose_estimator import TopDownPoseEstimator
from .segmentor import Segmentor

__all__ = ["Detector", "Segmentor", "TopDownPoseEstimator", "losses"]
