"""PointMAE: masks of the right size and shape, the decoder reads only the visible groups'
points, the Chamfer loss falls on synthetic shapes, predictions for drawing, and fine-tuning
a PointModel from the pre-training checkpoint through load_from's loader.

Tiny: width 32, 1-2 blocks, 16 groups of 16 points, clouds of 128-200 points.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionfm.data.synthetic.points import make_shape_cloud
from visionfm.engine import checkpoint as engine_checkpoint
from visionfm.models import PointMAE, PointModel
from visionfm.models.point_mae import block_mask, random_mask
from visionfm.ops.chamfer import chamfer_distance
from visionfm.registry import MODELS

G, K, DIM = 16, 16, 32
BACKBONE = dict(
    type="PointPatchTransformer", num_groups=G, group_size=K, embed_dim=DIM, depth=2,
    num_heads=2, class_token=False,
)  # fmt: skip


def tiny_mae(**kw) -> PointMAE:
    cfg = dict(type="PointMAE", backbone=BACKBONE, decoder_depth=1, decoder_num_heads=2)
    return MODELS.build({**cfg, **kw})


def shapes(rng, n: int, points: int = 160):
    coords = [make_shape_cloud(rng, i % 6, points).coord for i in range(n)]
    return dict(
        points=torch.from_numpy(np.concatenate(coords)), offsets=torch.full((n,), points).cumsum(0)
    )


@pytest.mark.parametrize(("ratio", "masked"), [(0.6, 9), (0.5, 8), (0.9, 14)])
def test_masks_hide_int_ratio_groups(ratio, masked):
    mask = random_mask(50, G, ratio, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and (mask.sum(1) == masked).all()
    assert mask.float().mean(0).min() > 0.2  # every position gets masked sometimes
    centres = torch.randn(4, G, 3, generator=torch.Generator().manual_seed(1))
    block = block_mask(centres, ratio, generator=torch.Generator().manual_seed(2))
    assert (block.sum(1) == masked).all()
    for b in range(4):  # a block: every masked centre is nearer some centre than any visible
        dist = torch.cdist(centres[b], centres[b])
        assert any(dist[c, block[b]].max() <= dist[c, ~block[b]].min() for c in range(G))


@pytest.mark.parametrize("ratio", [0.0, 0.05, 1.0])
def test_mask_ratio_that_leaves_nothing_is_refused(ratio):
    with pytest.raises(ValueError, match=f"mask_ratio={ratio} masks"):
        tiny_mae(mask_ratio=ratio)


def test_decoder_reads_only_visible_points_and_centres():
    """Moving the masked groups' points (not their centres) changes no prediction, moving a
    visible group's does; the target is exactly the masked groups."""
    model = tiny_mae().double().eval()
    inputs = shapes(np.random.default_rng(0), 3)
    groups, centres = model.backbone.group(inputs["points"].double(), inputs["offsets"])
    mask = random_mask(3, G, 0.6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = model.reconstruct(groups, centres, mask)
        moved = groups.clone()
        moved[mask] = torch.randn_like(moved[mask])
        torch.testing.assert_close(model.reconstruct(moved, centres, mask), pred, rtol=0, atol=0)
        moved = groups.clone()
        moved[~mask] += 0.1
        assert (model.reconstruct(moved, centres, mask) - pred).abs().max() > 1e-4
    assert pred.shape == (3, 9, K, 3)
    torch.manual_seed(0)
    out = model(dict(points=inputs["points"].double(), offsets=inputs["offsets"]))
    torch.testing.assert_close(out["target"], groups[out["mask"]].view(3, 9, K, 3))


def test_loss_falls_on_synthetic_shapes():
    """40 AdamW steps of 8 clouds (a few seconds on 2 CPU cores): the held-out Chamfer-L2 of
    the masked groups falls from ~2.3 (random init) to ~0.086, below 0.6 x that of the
    collapsed guess, every group a single point at its centre (~0.167): the decoder predicts
    group shapes, not just their scale."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = tiny_mae(drop_path_rate=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    held_out = shapes(np.random.default_rng(99), 12)

    def held_out_losses() -> tuple[float, float]:
        torch.manual_seed(1)  # the same masks every time
        with torch.no_grad():
            out = model(held_out)
        target = out["target"].flatten(0, 1)
        collapsed = chamfer_distance(torch.zeros_like(target[:, :1]), target)
        return float(chamfer_distance(out["pred"].flatten(0, 1), target)), float(collapsed)

    before, _ = held_out_losses()
    for _ in range(40):
        loss = model(shapes(rng, 8), mode="loss")["loss_chamfer"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, collapsed = held_out_losses()
    assert after < 0.6 * collapsed and after < 0.2 * before, (before, after, collapsed)


def test_predict_writes_reconstruction_in_cloud_coordinates():
    model = tiny_mae(mask_type="block").eval()
    inputs = shapes(np.random.default_rng(1), 2)
    torch.manual_seed(0)
    samples = model(inputs, mode="predict")
    torch.manual_seed(0)
    out = model(inputs)
    assert samples[0].pred_points.shape == (9 * K, 3) and samples[1].visible_points.shape == (
        7 * K,
        3,
    )
    masked_centres = out["centres"][1][out["mask"][1]]
    expect = (out["pred"][1] + masked_centres[:, None]).reshape(-1, 3)
    torch.testing.assert_close(samples[1].pred_points, expect)
    cloud = inputs["points"][160:]  # every visible point is a point of the cloud
    dist = torch.cdist(
        samples[1].visible_points, cloud, compute_mode="donot_use_mm_for_euclid_dist"
    )
    assert dist.min(1).values.max() < 1e-5


def test_backbone_must_group_and_mask():
    with pytest.raises(TypeError, match="must be a PointPatchTransformer"):
        PointMAE(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="mask_type must be"):
        tiny_mae(mask_type="grid")


def test_finetune_from_pretraining_checkpoint(tmp_path, monkeypatch):
    """The runner's load_from path (our loader + load_checkpoint_to_model): a PointModel
    gets the encoder's weights exactly, logs the decoder keys it leaves and the head / class
    token it keeps its own."""
    mae = tiny_mae()
    with torch.no_grad():
        for p in mae.parameters():
            p.add_(torch.randn_like(p))  # away from any init
    path = tmp_path / "pretrain.pth"
    torch.save(dict(meta=dict(epoch=1, iter=10), state_dict=mae.state_dict()), path)
    model = MODELS.build(
        dict(
            type="PointModel",
            backbone={**BACKBONE, "class_token": True},
            head=dict(type="PointClsHead", num_classes=6, in_channels=2 * DIM),
        )
    )
    assert isinstance(model, PointModel)
    logged = []
    monkeypatch.setattr(engine_checkpoint, "print_log", lambda msg, *a, **k: logged.append(msg))
    ckpt = engine_checkpoint.load_from_local_weights_only(str(path))
    engine_checkpoint.load_checkpoint_to_model(model, ckpt)
    own = model.backbone.state_dict()
    for name, value in mae.backbone.state_dict().items():
        torch.testing.assert_close(own[name], value, rtol=0, atol=0)
    report = " ".join(logged)
    assert "loaded partially" in report and "unexpected decoder.0." in report
    assert "backbone.cls_token" in report and "head.fc_cls.weight" in report


@pytest.mark.slow
def test_pretrain_then_finetune_configs_through_the_tools(synthetic_root, tmp_path):
    """tools/train.py pre-trains the synthetic config (shrunk) for an epoch, then fine-tunes
    the classifier with load_from= its checkpoint at lr 0: the fine-tuned checkpoint's
    encoder parameters are the pre-trained ones, and the log names the decoder keys left."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    small = [
        f"data_root={synthetic_root}/", "num_points=256", "model.backbone.num_groups=8",
        "model.backbone.group_size=16", "model.backbone.embed_dim=32", "model.backbone.depth=1",
        "model.backbone.num_heads=2", "train_cfg.max_epochs=1",
        "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
    ]  # fmt: skip

    def run(config: str, work: Path, *options: str) -> str:
        proc = subprocess.run(
            [sys.executable, "tools/train.py", f"configs/point_mae/{config}", "--work-dir",
             str(work), "--cfg-options", *small, *options],
            cwd=root, capture_output=True, text=True, timeout=300,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    run("point-mae_synthetic-shapes_pretrain.py", tmp_path / "pre", "model.decoder_num_heads=2")
    pretrained = tmp_path / "pre" / "epoch_1.pth"
    out = run(
        "point-mae_synthetic-shapes_finetune.py", tmp_path / "fine", f"load_from={pretrained}",
        "model.head.in_channels=64", "optim_wrapper.optimizer.lr=0.0",
        *(f"val_dataloader.{k}" for k in ("num_workers=0", "persistent_workers=False")),
    )  # fmt: skip
    assert "loaded partially" in out and "unexpected decoder.0." in out and "cls/acc" in out
    before = torch.load(pretrained, weights_only=False)["state_dict"]
    after = torch.load(tmp_path / "fine" / "epoch_1.pth", weights_only=False)["state_dict"]
    encoder = [k for k in before if k.startswith("backbone.") and "running_" not in k]
    assert len(encoder) > 20 and "backbone.cls_token" in after
    for key in encoder:
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(after[key], before[key], rtol=0, atol=0, msg=key)
