"""Every shipped config loads, builds its model and its data pipelines."""

from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from visionfm.engine import load_config
from visionfm.registry import DATASETS, MODELS, TRANSFORMS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.py") if "_base_" not in p.parts)


def test_there_are_configs():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_builds(path):
    cfg = load_config(str(path))
    assert cfg.default_scope == "visionfm"
    with torch.device("meta"):  # real-scale models: check the structure without allocating
        model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    for split in ("train", "val", "test"):
        if cfg[f"{split}_dataloader"] is None:  # self-supervised pre-training: no val / test
            continue
        dataset = cfg[f"{split}_dataloader"].dataset
        for part in dataset.get("datasets", [dataset]):  # a ConcatDataset's parts
            for transform in part.pipeline:
                TRANSFORMS.build(transform)


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if "synthetic" in p.name], ids=lambda p: p.name
)
def test_synthetic_config_datasets_build(path, synthetic_root):
    cfg = load_config(str(path), {"data_root": str(synthetic_root) + "/"})
    for split in ("train", "val"):
        if cfg[f"{split}_dataloader"] is None:  # self-supervised pre-training: no val
            continue
        dataset = DATASETS.build(cfg[f"{split}_dataloader"].dataset)
        assert len(dataset) > 0
        inputs = dataset[0]["inputs"]
        if inputs.dim() == 2:  # a point cloud (N, 3 + C)
            assert inputs.dtype == torch.float32 and inputs.shape[1] >= 3
        else:
            assert inputs.dtype == torch.uint8
    evaluators = cfg.val_evaluator if isinstance(cfg.val_evaluator, list) else [cfg.val_evaluator]
    for evaluator in filter(None, evaluators):
        if "ann_file" in evaluator:  # metrics reading the ground truth from the samples have none
            assert evaluator.ann_file.startswith(str(synthetic_root))


DATASET_BASES = sorted((ROOT / "configs" / "_base_" / "datasets").glob("*.py"))


@pytest.mark.parametrize("path", DATASET_BASES, ids=lambda p: p.name)
def test_dataset_base_pipelines_build(path, synthetic_root):
    """Every dataset base's pipelines build, also those no shipped config inherits yet; a
    synthetic point base's datasets load a cloud."""
    cfg = Config.fromfile(str(path))
    if "synthetic" in path.name and "points/" in str(cfg.train_dataloader.dataset.data_root):
        cfg = load_config(str(path), {"data_root": str(synthetic_root) + "/"})
        for split in ("train", "val"):
            inputs = DATASETS.build(cfg[f"{split}_dataloader"].dataset)[0]["inputs"]
            assert inputs.dtype == torch.float32 and inputs.shape[1] >= 3
    for split in ("train", "val", "test"):
        loader = cfg.get(f"{split}_dataloader")
        if loader is None:
            continue
        for part in loader.dataset.get("datasets", [loader.dataset]):
            for transform in part.pipeline:
                TRANSFORMS.build(transform)
