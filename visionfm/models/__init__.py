"""visionfm.models: task models (backbone -> neck -> heads)."""

from .point_mae import PointMAE
from .point_model import PointModel
from .pose_estimator import TopDownPoseEstimator
from .segmentor import Segmentor
from .task_model import TaskModel

__all__ = ["PointMAE", "PointModel", "Segmentor", "TaskModel", "TopDownPoseEstimator"]
