"""visionfm.apis: inference from Python and drawing of results."""

from .inferencer import Inferencer

__all__ = ["Inferencer"]
