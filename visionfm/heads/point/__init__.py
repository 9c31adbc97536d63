"""Point-cloud heads: classification (:class:`PointClsHead`) and per-point segmentation
(:class:`PointSegHead`), on the features of a point backbone plus ``'offsets'`` (see
:mod:`visionfm.heads.point.base`)."""

from .base import PointHead
from .cls_head import PointClsHead
from .seg_head import PointSegHead

__all__ = ["PointClsHead", "PointHead", "PointSegHead"]
