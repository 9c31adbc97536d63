"""Datasets, registered in ``DATASETS``. Batches are collated with mmengine's
``pseudo_collate`` (the Runner's default: ``collate_fn=dict(type='pseudo_collate')``), which
keeps ``inputs`` and ``data_samples`` as per-image lists for ``DataPreprocessor`` to pad."""

from mmengine.dataset import pseudo_collate

from .bad_samples import SkipBadSamplesMixin
from .base import VisionDataset
from .coco import CocoDataset, CocoFormatError, default_palette, load_coco_json
from .coco_keypoints import CocoKeypointDataset
from .coco_panoptic import CocoPanopticDataset
from .depth_folder import DepthFolderDataset, KittiDepthDataset
from .seg_folder import SegFolderDataset

collate = pseudo_collate

__all__ = [
    "CocoDataset",
    "CocoFormatError",
    "CocoKeypointDataset",
    "CocoPanopticDataset",
    "DepthFolderDataset",
    "KittiDepthDataset",
    "SegFolderDataset",
    "SkipBadSamplesMixin",
    "VisionDataset",
    "collate",
    "default_palette",
    "load_coco_json",
]
