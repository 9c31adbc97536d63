"""visionfm.models: task models (backbone -> neck -> heads) and their losses."""

from . import losses
from .detector import Detector

__all__ = ["Detector", "losses"]
