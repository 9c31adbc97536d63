"""Tiny point-cloud configs written as files (for the Inferencer, the demo and the tools), a
checkpoint of their random-weight model, and the synthetic point data they read."""

from __future__ import annotations

from pathlib import Path

import torch
from mmengine.config import Config

from visionfm.data.synthetic.points import SCENE_CLASSES, SHAPES, write_point_datasets
from visionfm.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = dict(
    type="PointPatchTransformer", num_groups=8, group_size=16, embed_dim=32, depth=1, num_heads=2
)
SEG_HEAD = dict(
    type="PointSegHead",
    num_classes=len(SCENE_CLASSES),
    in_channels=32,
    context_channels=64,
    hidden_dims=(32,),
)
CLS_HEAD = dict(type="PointClsHead", num_classes=len(SHAPES), in_channels=64, hidden_dims=(32,))


def write_point_data(root: Path) -> dict[str, Path]:
    """A few synthetic shapes (256 points) and two val scenes (2000 points) under ``root``."""
    return write_point_datasets(
        root, num_train=2, num_val=4, num_points=256, num_scenes=(1, 2), scene_points=2000
    )


def _loader(dataset: dict) -> dict:
    return dict(
        batch_size=2,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dataset,
    )


def write_config(path: Path, task: str, data: dict[str, Path]) -> Path:
    """A runnable config for ``task`` ('seg': scenes, colour input, grid-sampled at test
    time; 'cls': ModelNet40-layout shapes of 256 points) over ``data`` (write_point_data)."""
    if task == "seg":
        pipeline = [
            dict(type="CentreShift"),
            dict(type="PointGridSample", grid_size=0.1, mode="test"),
            dict(type="NormalizeColor"),
            dict(type="PackPointInputs", features=("color",)),
        ]
        dataset = dict(
            type="PointSceneDataset",
            data_root=str(data["scenes"]),
            split="val",
            num_classes=len(SCENE_CLASSES),
            metainfo=dict(classes=SCENE_CLASSES),
            pipeline=pipeline,
        )
        head, evaluator = SEG_HEAD, dict(type="PointSegMetric")
    else:
        pipeline = [dict(type="CentreShift"), dict(type="PackPointInputs")]
        dataset = dict(
            type="ModelNetDataset",
            data_root=str(data["modelnet"]),
            split="test",
            num_points=256,
            pipeline=pipeline,
        )
        head, evaluator = CLS_HEAD, dict(type="PointClsMetric")
    cfg = Config(
        dict(
            model=dict(type="PointModel", backbone=BACKBONE, head=head),
            test_dataloader=_loader(dataset),
            test_evaluator=evaluator,
            test_cfg=dict(type="TestLoop"),
        )
    )
    base = ROOT / "configs/_base_/default_runtime.py"
    path.write_text(f"_base_ = [{str(base)!r}]\n" + cfg.pretty_text)
    return path


def write_checkpoint(config: Path, path: Path, dataset_meta: dict | None = None) -> Path:
    """The config's model with seeded random weights, saved as a training checkpoint."""
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(config).model)
    meta = {"dataset_meta": dataset_meta} if dataset_meta else {}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    return path
