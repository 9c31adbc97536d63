"""visionfm.evaluation: metrics, registered in ``METRICS`` (the registry imports this
package itself on lookup)."""

from .coco_metric import CocoMetric

__all__ = ["CocoMetric"]
