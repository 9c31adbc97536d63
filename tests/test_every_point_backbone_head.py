"""Every registered point backbone with every point head, in a ``PointModel``.

The backbones come from the ``MODELS`` registry (the point backbones,
``visionfm/backbones/point_*.py``) with their tiny configs from
``_tiny_models.tiny_point_backbones()``; a registered one without a tiny config fails
``test_every_point_backbone_has_a_tiny_config``. Each combination trains one step on two
clouds of different sizes (finite loss, a finite gradient on every trainable backbone
parameter, some of them non-zero) and predicts at test time: classification with votes,
segmentation with fragment voting (every ORIGINAL point predicted) and through
``grid_inverse``.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from _tiny_models import tiny_point_backbones

from visionfm.backbones import Backbone
from visionfm.data.transforms.points import PackPointInputs, PointGridSample
from visionfm.heads.point import PointHead
from visionfm.registry import MODELS

NUM_CLASSES = 4
SIZES = (180, 257)  # points per cloud, different


def _point_backbones() -> set[str]:
    MODELS.import_from_location()
    return {
        name
        for name, obj in MODELS.module_dict.items()
        if inspect.isclass(obj)
        and issubclass(obj, Backbone)
        and obj.__module__.startswith("visionfm.backbones.point_")
    }


def _point_heads() -> set[str]:
    MODELS.import_from_location()
    return {
        name
        for name, obj in MODELS.module_dict.items()
        if inspect.isclass(obj) and issubclass(obj, PointHead) and obj is not PointHead
    }


def test_every_point_backbone_has_a_tiny_config():
    missing = _point_backbones() - set(tiny_point_backbones())
    assert not missing, (
        f"add a tiny config to tests/_tiny_models.py tiny_point_backbones(): {missing}"
    )


def _head(name: str, channels: dict[str, int]) -> dict:
    if name == "PointClsHead":
        return dict(
            type=name, num_classes=NUM_CLASSES, in_channels=channels["pooled"], hidden_dims=(32,)
        )
    if name == "PointSegHead":
        return dict(
            type=name,
            num_classes=NUM_CLASSES,
            in_channels=channels["points"],
            context_channels=channels["pooled"],
            hidden_dims=(32,),
        )
    raise KeyError(f"add a head config for {name} to {__file__}")


def test_every_point_head_has_a_config():
    for name in _point_heads():
        _head(name, {"points": 8, "pooled": 8})


def _samples(pipeline: list) -> list[dict]:
    """Two scenes-like clouds (coord + colour in -1..1), labels per cloud and per point."""
    rng = np.random.default_rng(0)
    out = []
    for i, n in enumerate(SIZES):
        coord = rng.uniform(0, 1, (n, 3)).astype(np.float32)
        results = dict(
            coord=coord,
            color=rng.uniform(0, 255, (n, 3)).astype(np.float32),
            segment=rng.integers(-1, NUM_CLASSES, n),
            label=i % NUM_CLASSES,
            file=f"cloud_{i}.ply",
        )
        for t in [*pipeline, PackPointInputs(features=("color",))]:
            results = t(results)
        out.append(results)
    return out


def _batch(model, pipeline: list) -> dict:
    samples = _samples(pipeline)
    data = dict(
        inputs=[s["inputs"] for s in samples], data_samples=[s["data_samples"] for s in samples]
    )
    return model.data_preprocessor(data)


@pytest.mark.parametrize("head_name", sorted(_point_heads()))
@pytest.mark.parametrize("backbone_name", sorted(tiny_point_backbones()))
def test_point_backbone_with_head(backbone_name, head_name):
    backbone = MODELS.build(tiny_point_backbones()[backbone_name])
    assert {"points", "pooled"} <= set(backbone.out_channels)
    model = MODELS.build(
        dict(
            type="PointModel",
            backbone=backbone,
            head=_head(head_name, backbone.out_channels),
            test_cfg=dict(votes=2),
        )
    )
    model.train()
    batch = _batch(model, [])
    losses = model(**batch, mode="loss")
    loss = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [(n, p.grad) for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for _, g in grads), [
        n for n, g in grads if g is None
    ]
    assert sum(float(g.abs().sum()) for _, g in grads) > 0

    model.eval()
    # fragment voting: every original point predicted
    batch = _batch(model, [PointGridSample(grid_size=0.2, mode="test", fragments=True)])
    assert all(len(s.metainfo["fragments"]) > 1 for s in batch["data_samples"])
    preds = model(**batch, mode="predict")
    for sample, n in zip(preds, SIZES, strict=True):
        if head_name == "PointSegHead":
            assert sample.pred_segment.shape == (n,)
            assert (
                0 <= int(sample.pred_segment.min()) and int(sample.pred_segment.max()) < NUM_CLASSES
            )
        else:
            assert sample.pred_score.shape == (NUM_CLASSES,)
            assert torch.allclose(sample.pred_score.sum(), torch.tensor(1.0))
            assert sample.pred_label == sample.pred_score.argmax()
    # one grid-sampled pass mapped back through grid_inverse
    batch = _batch(model, [PointGridSample(grid_size=0.2, mode="test")])
    assert sum(len(s.gt_segment) for s in batch["data_samples"]) == sum(SIZES)  # original labels
    preds = model(**batch, mode="predict")
    if head_name == "PointSegHead":
        assert [len(s.pred_segment) for s in preds] == list(SIZES)
