"""visionfm.necks: modules from backbone feature dicts to multi-scale feature dicts."""

from .channel_mapper import ChannelMapper
from .simple_fpn import SimpleFeaturePyramid

__all__ = ["ChannelMapper", "SimpleFeaturePyramid"]
