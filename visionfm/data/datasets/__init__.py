"""Datasets, registered in ``DATASETS``. Batches are collated with mmengine's
``pseudo_collate`` (the Runner's default: ``collate_fn=dict(type='pseudo_collate')``), which
keeps ``inputs`` and ``data_samples`` as per-image lists for ``DataPreprocessor`` to pad."""

from mmengine.dataset import pseudo_collate

from .bad_samples import SkipBadSamplesMixin
from .base import VisionDataset
from .coco import CocoDataset, CocoFormatError, default_palette, load_coco_json
from .coco_grounding import CocoGroundingDataset
from .coco_keypoints import CocoKeypointDataset
from .coco_panoptic import CocoPanopticDataset
from .depth_folder import DepthFolderDataset, KittiDepthDataset
from .grounding import ClassPrompt, GroundingFormatError
from .odvg import ODVGDataset
from .points import ModelNetDataset, PointSceneDataset, ScanObjectNNDataset
from .refcoco import RefCOCODataset
from .seg_folder import SegFolderDataset

collate = pseudo_collate

__all__ = [
    "ClassPrompt",
    "CocoDataset",
    "CocoFormatError",
    "CocoGroundingDataset",
    "CocoKeypointDataset",
    "CocoPanopticDataset",
    "DepthFolderDataset",
    "GroundingFormatError",
    "KittiDepthDataset",
    "ModelNetDataset",
    "ODVGDataset",
    "PointSceneDataset",
    "RefCOCODataset",
    "ScanObjectNNDataset",
    "SegFolderDataset",
    "SkipBadSamplesMixin",
    "VisionDataset",
    "collate",
    "default_palette",
    "load_coco_json",
]
