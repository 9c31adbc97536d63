"""Data transforms: callables on a ``results`` dict, registered in ``TRANSFORMS``.

Typical detection pipeline::

    train_pipeline = [
        dict(type='LoadImage'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='RandomChoiceResize', scales=[(1333, 640), (1333, 800)]),
        dict(type='RandomCrop', crop_size=(0.6, 0.6), crop_type='relative_range'),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackInputs'),
    ]
"""

from .compose import Compose
from .crop import RandomCrop
from .formatting import PackInputs
from .geometric import COCO_FLIP_PAIRS, RandomChoiceResize, RandomFlip, Resize
from .kb_crop import KBCrop
from .loading import LoadAnnotations, LoadImage, LoadPanopticAnnotations, decode_segmentation
from .photometric import PhotoMetricDistortion
from .points import (
    CentreShift,
    ElasticDistortion,
    NormalizeColor,
    NormalizeCoord,
    PackPointInputs,
    PointGridSample,
    PointRandomDropout,
    PointRandomFlip,
    PointRandomJitter,
    PointRandomRotate,
    PointRandomScale,
    SphereCrop,
)
from .topdown import (
    GetBBoxCenterScale,
    PackPoseInputs,
    RandomBBoxTransform,
    RandomHalfBody,
    TopDownAffine,
    TopDownRandomFlip,
)

__all__ = [
    "CentreShift",
    "ElasticDistortion",
    "NormalizeColor",
    "NormalizeCoord",
    "PackPointInputs",
    "PointGridSample",
    "PointRandomDropout",
    "PointRandomFlip",
    "PointRandomJitter",
    "PointRandomRotate",
    "PointRandomScale",
    "SphereCrop",
    "COCO_FLIP_PAIRS",
    "Compose",
    "GetBBoxCenterScale",
    "KBCrop",
    "LoadAnnotations",
    "LoadImage",
    "LoadPanopticAnnotations",
    "PackInputs",
    "PackPoseInputs",
    "PhotoMetricDistortion",
    "RandomBBoxTransform",
    "RandomChoiceResize",
    "RandomCrop",
    "RandomFlip",
    "RandomHalfBody",
    "Resize",
    "TopDownAffine",
    "TopDownRandomFlip",
    "decode_segmentation",
]
