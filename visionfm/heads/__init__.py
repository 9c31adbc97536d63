"""visionfm.heads: task heads, registered in ``MODELS`` (the registry imports this package
itself on lookup)."""

from . import depth, detr, pose, segmentation

__all__ = ["depth", "detr", "pose", "segmentation"]
