"""visionfm.models: task models (backbone -> neck -> heads)."""

from .pose_estimator import TopDownPoseEstimator
from .segmentor import Segmentor
from .task_model import TaskModel

__all__ = ["Segmentor", "TaskModel", "TopDownPoseEstimator"]
