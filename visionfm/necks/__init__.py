"""visionfm.necks: modules from backbone feature dicts to multi-scale feature dicts."""

from .channel_mapper import ChannelMapper
from .projector import MultiScaleProjector, convert_projector_checkpoint
from .simple_fpn import SimpleFeaturePyramid

__all__ = [
    "ChannelMapper",
    "MultiScaleProjector",
    "SimpleFeaturePyramid",
    "convert_projector_checkpoint",
]
