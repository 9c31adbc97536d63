"""visionfm.evaluation: metrics, registered in ``METRICS`` (the registry imports this
package itself on lookup)."""

from .coco_metric import CocoMetric
from .depth_metric import DepthMetric
from .grounding_metric import PhraseGroundingMetric, RefExpMetric
from .iou_metric import IoUMetric
from .keypoint_metric import CocoKeypointMetric
from .panoptic_metric import PanopticMetric
from .point_metric import PointClsMetric, PointSegMetric
from .prediction_writer import PredictionWriter

__all__ = [
    "CocoKeypointMetric",
    "CocoMetric",
    "DepthMetric",
    "IoUMetric",
    "PanopticMetric",
    "PhraseGroundingMetric",
    "PointClsMetric",
    "PointSegMetric",
    "PredictionWriter",
    "RefExpMetric",
]
