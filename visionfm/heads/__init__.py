"""visionfm.heads: task heads, registered in ``MODELS`` (the registry imports this package
itself on lookup), and the interface they share (``Head``, ``DenseHead``)."""

from . import depth, detr, grounding, point, pose, segmentation
from .base import DenseHead, Head

__all__ = ["DenseHead", "Head", "depth", "detr", "grounding", "point", "pose", "segmentation"]
