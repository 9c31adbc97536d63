"""visionfm.data: datasets, transforms, ``DataSample`` and the model-side ``DataPreprocessor``.

Importing this package registers everything in ``DATASETS`` / ``TRANSFORMS`` / ``MODELS``
(the registries import it themselves on lookup).
"""

from .batch import batch_input_shape, padding_mask, unlabelled_samples
from .data_sample import DataSample
from .datasets import CocoDataset, collate
from .point_batch import PointDataPreprocessor, pack_points
from .preprocessor import DataPreprocessor
from .transforms import (
    COCO_FLIP_PAIRS,
    Compose,
    LoadAnnotations,
    LoadImage,
    PackInputs,
    PhotoMetricDistortion,
    RandomChoiceResize,
    RandomCrop,
    RandomFlip,
    Resize,
)

__all__ = [
    "COCO_FLIP_PAIRS",
    "CocoDataset",
    "Compose",
    "DataPreprocessor",
    "DataSample",
    "LoadAnnotations",
    "LoadImage",
    "PackInputs",
    "PhotoMetricDistortion",
    "PointDataPreprocessor",
    "RandomChoiceResize",
    "RandomCrop",
    "RandomFlip",
    "Resize",
    "batch_input_shape",
    "collate",
    "pack_points",
    "padding_mask",
    "unlabelled_samples",
]
