"""Datasets, registered in ``DATASETS``. Batches are collated with mmengine's
``pseudo_collate`` (the Runner's default: ``collate_fn=dict(type='pseudo_collate')``), which
keeps ``inputs`` and ``data_samples`` as per-image lists for ``DataPreprocessor`` to pad."""

from mmengine.dataset import pseudo_collate

from .coco import CocoDataset, default_palette, load_coco_json

collate = pseudo_collate

__all__ = ["CocoDataset", "collate", "default_palette", "load_coco_json"]
