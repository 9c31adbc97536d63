"""visionfm.heads: task heads, registered in ``MODELS`` (the registry imports this package
itself on lookup)."""

from . import detr

__all__ = ["detr"]
