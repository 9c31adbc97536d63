"""PointModel: fragment voting against a hand-computed average, votes, every original point
predicted, bad input named; it learns synthetic shapes (classification) and a synthetic
scene (segmentation)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_models import tiny_point_backbones
from torch import nn

from visionfm.data.data_sample import DataSample
from visionfm.data.synthetic.points import SCENE_CLASSES, SHAPES, make_scene_cloud, make_shape_cloud
from visionfm.data.transforms.points import CentreShift, PackPointInputs, PointGridSample
from visionfm.evaluation import PointSegMetric
from visionfm.models import PointModel
from visionfm.ops.point_batch import offsets_to_batch
from visionfm.registry import MODELS


class MeanBackbone(nn.Module):
    """Deterministic: each point's coordinates, and the mean of its cloud's."""

    out_channels = {"points": 3, "pooled": 3}

    def forward(self, points, offsets):
        batch = offsets_to_batch(offsets)
        xyz = points[:, :3]
        sums = torch.zeros(len(offsets), 3).index_add_(0, batch, xyz)
        return {"points": xyz, "pooled": sums / torch.bincount(batch)[:, None]}


def _seg_model(**test_cfg) -> PointModel:
    torch.manual_seed(0)
    head = MODELS.build(
        dict(type="PointSegHead", num_classes=4, in_channels=3, context_channels=3, hidden_dims=())
    )
    with torch.no_grad():
        head.fc_seg.weight.mul_(5)  # fragments' means move the scores enough to matter
    return PointModel(MeanBackbone(), head, test_cfg=test_cfg).eval()


def test_fragment_voting_equals_a_hand_computed_average():
    rng = np.random.default_rng(0)
    points = torch.from_numpy(rng.uniform(-1, 1, (40, 3)).astype(np.float32))
    fragments = [np.arange(0, 40, 2), np.arange(1, 40, 2), np.arange(0, 25), np.arange(20, 40)]
    sample = DataSample(metainfo=dict(fragments=fragments, file="room.ply"))
    model = _seg_model()
    (out,) = model(dict(points=points, offsets=torch.tensor([40])), [sample], mode="predict")

    total, count = torch.zeros(40, 4), torch.zeros(40)
    single = []
    for idx in fragments:  # each fragment alone, by hand
        part = points[idx]
        logits = model.head.fc_seg(torch.cat([part, part.mean(0).expand(len(idx), 3)], 1))
        total[idx] += logits.softmax(1)
        count[idx] += 1
        single.append(logits.argmax(1))
    expected = (total / count[:, None]).argmax(1)
    assert out.pred_segment.shape == (40,)
    assert torch.equal(out.pred_segment, expected)
    # the average is not what a single fragment says everywhere: the vote matters
    last = torch.full((40,), -1)  # each point as the last fragment holding it says
    for idx, pred in zip(fragments, single, strict=True):
        last[idx] = pred
    assert not torch.equal(last, expected)


def test_fragments_in_chunks_and_with_identity_votes_give_the_same():
    rng = np.random.default_rng(1)
    points = torch.from_numpy(rng.uniform(-1, 1, (30, 3)).astype(np.float32))
    fragments = [np.arange(0, 30, 3), np.arange(1, 30, 3), np.arange(2, 30, 3), np.arange(0, 30)]
    inputs = dict(points=points, offsets=torch.tensor([30]))

    def predict(**cfg):
        sample = DataSample(metainfo=dict(fragments=fragments))
        return _seg_model(**cfg)(inputs, [sample], mode="predict")[0].pred_segment

    ref = predict()
    assert torch.equal(predict(max_clouds=1), ref)
    assert torch.equal(predict(votes=3, vote_scale=(1, 1), vote_translate=0.0), ref)


def test_fragments_must_cover_the_cloud():
    sample = DataSample(metainfo=dict(fragments=[np.arange(5)], file="room.ply"))
    inputs = dict(points=torch.randn(8, 3), offsets=torch.tensor([8]))
    with pytest.raises(ValueError, match=r"room\.ply\): 3 of its points are in no fragment"):
        _seg_model()(inputs, [sample], mode="predict")


def _cls_model(num_classes: int = len(SHAPES), **test_cfg) -> PointModel:
    backbone = MODELS.build(tiny_point_backbones()["PointPatchTransformer"])
    return MODELS.build(
        dict(
            type="PointModel",
            backbone=backbone,
            head=dict(
                type="PointClsHead",
                num_classes=num_classes,
                in_channels=backbone.out_channels["pooled"],
                hidden_dims=(32,),
            ),
            test_cfg=test_cfg,
        )
    )


def test_votes_identity_equal_one_pass_and_scaled_votes_see_scaled_clouds():
    torch.manual_seed(0)
    model = _cls_model().eval()
    points = torch.cat([torch.randn(120, 3), torch.rand(120, 3)], 1)  # xyz + features
    inputs = dict(points=points, offsets=torch.tensor([50, 120]))
    one = model(inputs, mode="predict")
    model.test_cfg.update(votes=4, vote_scale=(1.0, 1.0), vote_translate=0.0)
    same = model(inputs, mode="predict")
    for a, b in zip(one, same, strict=True):
        torch.testing.assert_close(a.pred_score, b.pred_score)
    model.test_cfg.update(votes=2, vote_scale=(2.0, 2.0))  # every copy scaled by exactly 2
    twice = model(inputs, mode="predict")
    model.test_cfg.update(votes=1)
    scaled = torch.cat([points[:, :3] * 2, points[:, 3:]], 1)
    ref = model(dict(points=scaled, offsets=inputs["offsets"]), mode="predict")
    for a, b in zip(twice, ref, strict=True):
        torch.testing.assert_close(a.pred_score, b.pred_score)
    assert not torch.allclose(twice[0].pred_score, one[0].pred_score)


def test_bad_input_names_the_file():
    model = _cls_model()
    data = dict(
        inputs=[torch.randn(64, 3), torch.randn(64, 6)],
        data_samples=[DataSample(metainfo=dict(file=f"shape_{i}.txt")) for i in range(2)],
    )
    with pytest.raises(ValueError, match=r"shape_1\.txt\) has 6"):
        model.data_preprocessor(data)
    small = dict(inputs=[torch.randn(64, 3), torch.randn(5, 3)], data_samples=data["data_samples"])
    batch = model.data_preprocessor(small)
    for s in batch["data_samples"]:
        s.gt_label = torch.tensor(0)
    with pytest.raises(ValueError, match=r"cloud 1 has 5 points(.|\n)*shape_1\.txt"):
        model(**batch, mode="loss")
    with pytest.raises(ValueError, match="votes must be >= 1"):
        _cls_model(votes=0)
    with pytest.raises(Exception, match="no such setting"):
        _cls_model(vote=3)


def _shapes(seed: int, count: int, num_points: int = 256) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    clouds, labels = [], []
    for i in range(count):
        shape = make_shape_cloud(rng, i % len(SHAPES), num_points)
        clouds.append(torch.from_numpy(shape.coord))
        labels.append(shape.label)
    return clouds, labels


def _accuracy(model, clouds, labels) -> float:
    model.eval()
    batch = model.data_preprocessor(dict(inputs=clouds, data_samples=None))
    preds = model(batch["inputs"], mode="predict")
    return float(np.mean([int(p.pred_label) == y for p, y in zip(preds, labels, strict=True)]))


@pytest.mark.slow
def test_learns_synthetic_shapes():
    torch.manual_seed(0)
    model = _cls_model()
    train, train_y = _shapes(0, 96)
    val, val_y = _shapes(1, 48)
    before = _accuracy(model, val, val_y)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        model.train()
        pick = torch.randperm(len(train), generator=gen)[:16].tolist()
        samples = [DataSample(gt_label=torch.tensor(train_y[i])) for i in pick]
        batch = model.data_preprocessor(dict(inputs=[train[i] for i in pick], data_samples=samples))
        loss = model(**batch, mode="loss")["loss_cls"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _accuracy(model, val, val_y)
    print(f"synthetic shapes val accuracy {before:.3f} -> {after:.3f}")
    assert before < 0.3 and after >= 0.4  # chance: 1 / 6


@pytest.mark.slow
def test_learns_a_synthetic_scene():
    torch.manual_seed(0)
    k = len(SCENE_CLASSES)
    # 32 groups: per-point features interpolate from the nearest centres, 8 are too few for a room
    backbone = MODELS.build({**tiny_point_backbones()["PointPatchTransformer"], "num_groups": 32})
    model = PointModel(
        backbone,
        MODELS.build(
            dict(
                type="PointSegHead",
                num_classes=k,
                in_channels=32,
                context_channels=64,
                hidden_dims=(32,),
            )
        ),
    )

    def scene(seed: int, pipeline) -> dict:
        results = make_scene_cloud(np.random.default_rng(seed), 2048)
        for t in [CentreShift(apply_z=False), *pipeline, PackPointInputs()]:
            results = t(results)
        return results

    def miou(seed: int) -> float:
        model.eval()
        packed = scene(seed, [PointGridSample(grid_size=0.25, mode="test", fragments=True)])
        batch = model.data_preprocessor(
            dict(inputs=[packed["inputs"]], data_samples=[packed["data_samples"]])
        )
        (pred,) = model(**batch, mode="predict")
        metric = PointSegMetric(num_classes=k)
        metric.process({}, [pred.to_dict()])
        return metric.compute_metrics(metric.results)["mIoU"]

    before = miou(10)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(60):
        model.train()
        packed = scene(step % 4, [])  # 4 training rooms, one per step
        batch = model.data_preprocessor(
            dict(inputs=[packed["inputs"]], data_samples=[packed["data_samples"]])
        )
        loss = model(**batch, mode="loss")["loss_seg"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = miou(10)
    print(f"synthetic scene mIoU {before:.3f} -> {after:.3f}")
    assert after > before + 0.1


@pytest.mark.slow
def test_train_and_test_tools_on_synthetic_shapes(synthetic_root, tmp_path):
    """tools/train.py trains the synthetic classification config (shrunk) for an epoch and
    tools/test.py evaluates its checkpoint with PointClsMetric (fragment-free, 2 votes)."""
    root = Path(__file__).resolve().parents[2]
    config = "configs/point_cls/point-mae_synthetic-shapes.py"
    options = [
        f"data_root={synthetic_root}/",
        "num_points=256",
        "model.backbone.num_groups=8",
        "model.backbone.group_size=16",
        "model.backbone.embed_dim=32",
        "model.backbone.depth=1",
        "model.backbone.num_heads=2",
        "model.head.in_channels=64",
        "train_cfg.max_epochs=1",
        *(f"{split}_dataloader.{key}" for split in ("train", "val", "test") for key in (
            "num_workers=0", "persistent_workers=False")),
    ]  # fmt: skip

    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, *args],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    work = tmp_path / "work"
    out = run("tools/train.py", config, "--work-dir", str(work), "--cfg-options", *options)
    assert "cls/acc" in out
    ckpt = work / "epoch_1.pth"
    assert ckpt.is_file()
    out = run("tools/test.py", config, str(ckpt), "--work-dir", str(work), "--cfg-options",
              *options, "model.test_cfg.votes=2")  # fmt: skip
    assert re.search(r"cls/acc: [01]\.\d+\s+cls/mAcc: [01]\.\d+", out), out[-2000:]


def test_test_pipeline_keeps_the_original_cloud_and_its_labels():
    """PointGridSample(mode='test'): with fragments the cloud stays whole and the fragments
    (one point per voxel each) cover it; without, grid_inverse and the original labels come
    back for the metric."""
    coord = np.array(
        [[0.1, 0.1, 0.1], [0.9, 0.5, 0.2], [1.5, 0.5, 0.5], [2.2, 0.1, 0.1], [2.3, 0.9, 0.9],
         [2.5, 0.5, 0.5]], np.float32
    )  # fmt: skip
    results = dict(coord=coord, segment=np.array([0, 1, 2, 3, 4, 5]), file="room.ply")
    frag = PointGridSample(grid_size=1.0, mode="test", fragments=True)(dict(results))
    assert len(frag["coord"]) == 6 and "grid_inverse" not in frag
    voxels = np.floor(coord).astype(int)
    for idx in frag["fragments"]:  # one point in each of the 3 voxels
        assert len(idx) == 3 and len({tuple(v) for v in voxels[idx]}) == 3
    assert len(frag["fragments"]) == 3  # the fullest voxel holds 3 points
    assert set(np.concatenate(frag["fragments"]).tolist()) == set(range(6))
    packed = PackPointInputs()(frag)
    assert len(packed["data_samples"].metainfo["fragments"]) == 3
    assert packed["data_samples"].gt_segment.tolist() == [0, 1, 2, 3, 4, 5]

    one = PackPointInputs()(PointGridSample(grid_size=1.0, mode="test")(dict(results)))
    assert one["inputs"].shape == (3, 3)
    assert one["data_samples"].gt_segment.tolist() == [0, 1, 2, 3, 4, 5]  # the original labels
    assert one["data_samples"].metainfo["grid_inverse"].tolist() == [0, 0, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="fragments=True needs mode='test'"):
        PointGridSample(fragments=True)
