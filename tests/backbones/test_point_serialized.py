"""Point Transformer V3: the hashed submanifold conv against dense ``conv3d``, RoPE against a
hand rotation (and its shift invariance), patch attention against plain softmax attention
(whole clouds, dividing and sliding last patches), pooling / unpooling on a hand case, packing,
order equivariance, checkpointing, layer ids, frozen stages, bad input and a learning check.

Tiny: widths 16-32, one block per stage, patches of 16-32, clouds of 40-300 points, float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from _helpers import randomize

from visionfm.backbones import PointTransformerV3
from visionfm.backbones.point_serialized_blocks import (
    Level,
    SerializedAttention,
    SerializedPooling,
    SerializedUnpooling,
    make_patches,
)
from visionfm.data.synthetic.points import make_scene_cloud
from visionfm.layers.point_pos import Rope3d, SubmanifoldConv3d, VoxelHash
from visionfm.ops.point_batch import offsets_to_batch
from visionfm.ops.point_grid import serialize
from visionfm.registry import MODELS

GRID = 0.05
TINY = dict(
    in_channels=6,
    grid_size=GRID,
    enc_depths=(1, 1, 1),
    enc_channels=(16, 32, 32),
    enc_num_heads=(2, 2, 2),
    enc_patch_size=(32, 32, 32),
    dec_depths=(1, 1),
    dec_channels=(16, 32),
    dec_num_heads=(2, 2),
    dec_patch_size=(32, 32),
    drop_path_rate=0.0,
)


def voxel_clouds(sizes=(90, 130, 40), seed: int = 0, channels: int = 3, side: int = 20):
    """Packed float64 (N, 3 + channels) clouds with one point per voxel of side GRID (voxels
    drawn without repeats in a side**3 cube), and their (B,) offsets."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for n in sizes:
        cells = torch.randperm(side**3, generator=gen)[:n]
        vox = torch.stack([cells // side**2, cells // side % side, cells % side], 1)
        xyz = vox.double() + torch.rand(n, 3, generator=gen, dtype=torch.float64) * 0.8 + 0.1
        feats = torch.randn(n, channels, generator=gen, dtype=torch.float64)
        parts.append(torch.cat([xyz * GRID, feats], 1))
    return torch.cat(parts), torch.tensor(sizes).cumsum(0)


def tiny(**kw) -> PointTransformerV3:
    model = randomize(PointTransformerV3(**{**TINY, **kw}))
    gen = torch.Generator().manual_seed(3)
    for name, b in model.named_buffers():  # batch-norm statistics away from 0 / 1
        if name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=gen, dtype=b.dtype) + 0.5)
        elif name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=gen, dtype=b.dtype) * 0.5)
    return model


# -- positional encodings --------------------------------------------------------------------
@pytest.mark.parametrize("k", [3, 5])
def test_submanifold_conv_equals_dense_conv3d_at_occupied_voxels(k):
    gen = torch.Generator().manual_seed(0)
    side, c_in, c_out = 7, 3, 4
    grids, batches = [], []
    for b, n in enumerate((60, 90)):  # two clouds over the same voxels: they must not mix
        cells = torch.randperm(side**3, generator=gen)[:n]
        grids.append(torch.stack([cells // side**2, cells // side % side, cells % side], 1))
        batches.append(torch.full((n,), b))
    grid, batch = torch.cat(grids), torch.cat(batches)
    feats = torch.randn(len(grid), c_in, generator=gen, dtype=torch.float64)
    conv = SubmanifoldConv3d(c_in, c_out, k).double()
    with torch.no_grad():
        conv.bias.normal_(generator=gen)
    out = conv(feats, VoxelHash(grid, batch, max_radius=k // 2))
    weight = conv.weight.reshape(k, k, k, c_in, c_out).permute(4, 3, 0, 1, 2)
    for b in range(2):
        rows = batch == b
        dense = feats.new_zeros(1, c_in, side, side, side)
        g = grid[rows]
        dense[0, :, g[:, 0], g[:, 1], g[:, 2]] = feats[rows].T
        ref = F.conv3d(dense, weight, conv.bias, padding=k // 2)[0]  # (C_out, side**3)
        torch.testing.assert_close(
            out[rows], ref[:, g[:, 0], g[:, 1], g[:, 2]].T, atol=1e-10, rtol=0
        )


def test_submanifold_conv_gradients_pass_gradcheck():
    gen = torch.Generator().manual_seed(1)
    grid = torch.randint(0, 4, (30, 3), generator=gen)  # some voxels shared
    voxels = VoxelHash(grid, torch.zeros(30, dtype=torch.long), 1)
    conv = SubmanifoldConv3d(2, 3, 3).double()
    feats = torch.randn(30, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = conv.weight.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f, w: torch.func.functional_call(conv, {"weight": w}, (f, voxels)), (feats, weight)
    )


def test_submanifold_conv_shares_a_voxels_mean():
    grid = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 0, 0]])
    feats = torch.tensor([[1.0], [3.0], [10.0]], dtype=torch.float64)
    conv = SubmanifoldConv3d(1, 1, 3, bias=False).double()
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[13] = 1.0  # centre
        conv.weight[22] = 0.5  # step (+1, 0, 0)
    out = conv(feats, VoxelHash(grid, torch.zeros(3, dtype=torch.long), 1))
    torch.testing.assert_close(out[:, 0], torch.tensor([2.0 + 5.0, 2.0 + 5.0, 10.0]).double())


def test_rope_equals_hand_rotation_and_is_shift_invariant():
    theta, d = 100.0, 14  # 2 frequencies per axis, channels 12, 13 left alone
    rope = Rope3d(d, theta)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, d, generator=gen, dtype=torch.float64)
    pos = torch.randint(0, 50, (5, 3), generator=gen)
    got = rope(x, *rope.angles(pos))
    expected = x.clone()
    for n in range(5):
        for axis in range(3):
            for i, freq in enumerate((1.0, theta**-0.5)):
                c = 4 * axis + 2 * i
                a = float(pos[n, axis]) * freq
                expected[n, c] = x[n, c] * math.cos(a) - x[n, c + 1] * math.sin(a)
                expected[n, c + 1] = x[n, c] * math.sin(a) + x[n, c + 1] * math.cos(a)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)

    attn = randomize(SerializedAttention(2 * d, 2, 16, rope=Rope3d(d, theta)))
    feats = torch.randn(40, 2 * d, generator=gen, dtype=torch.float64)
    grid = torch.randint(0, 30, (40, 3), generator=gen)
    patches = make_patches(torch.arange(40), torch.tensor([40]), 16)
    torch.testing.assert_close(
        attn(feats, patches, grid + torch.tensor([7, -3, 11])),
        attn(feats, patches, grid),
        atol=1e-10,
        rtol=0,
    )
    assert not torch.allclose(attn(feats, patches, grid * 2), attn(feats, patches, grid))


# -- patches and attention -------------------------------------------------------------------
def test_make_patches_hand_case():
    # cloud 0: 10 points, reversed order; cloud 1: 3 points (< P: one patch of 3)
    perm = torch.cat([torch.arange(9, -1, -1), torch.tensor([11, 10, 12])])
    patches = make_patches(perm, torch.tensor([10, 13]), 4)
    # groups by patch length, ascending: the 3-point cloud's patch first
    assert [g.tolist() for g in patches.groups] == [
        [[11, 10, 12]],
        [[9, 8, 7, 6], [5, 4, 3, 2], [3, 2, 1, 0]],  # the last one slid back
    ]
    flat = [11, 10, 12, 9, 8, 7, 6, 5, 4, 3, 2, 3, 2, 1, 0]  # outputs flattened, in order
    # every point reads its own slot: the first patch holding it, points 1, 0 the slid one's
    assert patches.gather.tolist() == [14, 13, 10, 9, 8, 7, 6, 5, 4, 3, 1, 0, 2]
    assert all(flat[slot] == point for point, slot in enumerate(patches.gather.tolist()))


def plain_attention(attn: SerializedAttention, x: torch.Tensor, rows: torch.Tensor):
    """Softmax attention of rows ``rows`` among themselves with ``attn``'s weights -> (n, C)."""
    h, c = attn.num_heads, x.shape[1]
    q, k, v = attn.qkv(x[rows]).view(len(rows), 3, h, c // h).permute(1, 2, 0, 3)
    w = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c // h), -1)
    return attn.proj((w @ v).transpose(0, 1).reshape(len(rows), c))


@pytest.mark.parametrize("patch", [128, 16])
def test_patch_attention_equals_plain_attention(patch):
    sizes = (48, 70, 64)  # P = 16: 48 and 64 divide, 70 slides its last patch back
    x, offsets = voxel_clouds(sizes, channels=0)
    batch = offsets_to_batch(offsets)
    grid = (x[:, :3] / GRID).floor().long()
    perm = serialize(grid, batch, "hilbert").order
    attn = randomize(SerializedAttention(16, 2, patch, attn_backend="sdpa"))
    feats = torch.randn(len(x), 16, generator=torch.Generator().manual_seed(1)).double()
    got = attn(feats, make_patches(perm, offsets, patch), grid)
    expected = torch.empty_like(got)
    start = 0
    for n in sizes:
        order = perm[start : start + n]
        p = min(patch, n)
        for i in range(0, n, p):  # plain loop over windows, the last one ending at n
            begin = min(i, n - p)
            window = order[begin : begin + p]
            out = plain_attention(attn, feats, window)
            keep = slice(i - begin, p)  # rows of this window not read from an earlier one
            expected[window[keep]] = out[keep]
        start += n
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)


def test_pooling_and_unpooling_hand_case():
    grid = torch.tensor([[0, 0, 0], [1, 1, 0], [2, 0, 0], [3, 1, 1], [0, 0, 0], [5, 0, 0]])
    batch = torch.tensor([0, 0, 0, 0, 1, 1])
    level = Level(grid, batch, torch.tensor([4, 6]), depth=3, orders=("z",))
    pool = SerializedPooling(2, 2, norm_layer=nn.Identity).double()
    with torch.no_grad():
        pool.proj.weight.copy_(torch.eye(2))
        pool.proj.bias.zero_()
    x = torch.tensor([[1, 8], [5, 2], [3, 3], [0, 9], [7, 7], [4, 1]], dtype=torch.float64)
    parent_x, parent, cluster = pool(x, level)
    assert cluster.tolist() == [0, 0, 1, 1, 2, 3]
    assert parent.grid.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0], [2, 0, 0]]
    assert parent.offsets.tolist() == [2, 4] and parent.depth == 2
    max_x = torch.tensor([[5, 8], [3, 9], [7, 7], [4, 1]], dtype=torch.float64)
    torch.testing.assert_close(parent_x, F.gelu(max_x))
    unpool = SerializedUnpooling(2, 2, 2, norm_layer=nn.Identity).double()
    with torch.no_grad():
        for lin in (unpool.proj[0], unpool.proj_skip[0]):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    back = unpool(max_x, x, cluster)
    torch.testing.assert_close(back, F.gelu(x) + F.gelu(max_x)[cluster])


# -- the backbone ----------------------------------------------------------------------------
@pytest.mark.parametrize("pos_embed", ["sparse_conv", "rope", None])
def test_packed_batch_equals_each_cloud_alone(pos_embed):
    model = tiny(pos_embed=pos_embed)
    x, offsets = voxel_clouds()  # cloud 2 (40 points) is a single patch at deeper levels
    with torch.no_grad():
        out = model(x, offsets)
        start = 0
        for b, end in enumerate(offsets.tolist()):
            alone = model(x[start:end], torch.tensor([end - start]))
            torch.testing.assert_close(
                out["points"][start:end], alone["points"], atol=1e-10, rtol=0
            )
            torch.testing.assert_close(out["pooled"][b], alone["pooled"][0], atol=1e-10, rtol=0)
            start = end
    assert out["points"].shape == (len(x), 16) and out["pooled"].shape == (3, 32)


def test_outputs_follow_the_input_order():
    model = tiny()
    x, offsets = voxel_clouds((120, 80))
    gen = torch.Generator().manual_seed(5)
    perm = torch.cat([torch.randperm(120, generator=gen), 120 + torch.randperm(80, generator=gen)])
    with torch.no_grad():
        out, shuffled = model(x, offsets), model(x[perm], offsets)
    torch.testing.assert_close(shuffled["points"], out["points"][perm], atol=1e-10, rtol=0)
    torch.testing.assert_close(shuffled["pooled"], out["pooled"], atol=1e-10, rtol=0)


def test_cls_mode_gives_both_outputs_from_the_same_encoder():
    full, cls = tiny(), tiny(cls_mode=True)
    cls.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("dec.")})
    x, offsets = voxel_clouds((120, 80))
    with torch.no_grad():
        a, b = full(x, offsets), cls(x, offsets)
    torch.testing.assert_close(a["pooled"], b["pooled"])
    assert b["points"].shape == (200, 32) and cls.out_channels == {"points": 32, "pooled": 32}


def test_grad_checkpointing_gives_the_same_gradients():
    x, offsets = voxel_clouds((120, 80))
    grads = []
    for cp in (False, True):
        model = tiny(grad_checkpointing=cp, shuffle_orders=False).train()
        model(x, offsets)["points"].square().sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, msg=name)


def test_layer_ids_follow_execution_order_and_frozen_stages():
    model = PointTransformerV3(**TINY)
    ids = model.layer_ids()
    assert model.num_layers == 5
    assert ids["stem.conv.weight"] == 0
    assert ids["enc.0.blocks.0.attn.qkv.weight"] == 1
    assert ids["enc.1.pool.proj.weight"] == ids["enc.1.blocks.0.mlp.fc1.weight"] == 2
    assert ids["enc.2.blocks.0.norm1.weight"] == 3
    assert ids["dec.1.unpool.proj.0.weight"] == ids["dec.1.blocks.0.cpe.conv.weight"] == 4
    assert ids["dec.0.blocks.0.mlp.fc2.bias"] == 5
    assert set(ids.values()) == set(range(6))

    frozen = PointTransformerV3(**TINY, frozen_stages=1).train()
    for name, p in frozen.named_parameters():
        assert p.requires_grad == (not name.startswith(("stem.", "enc.0."))), name
    assert not frozen.stem.norm.training and frozen.enc[1].pool.norm.training


def test_bad_input_is_refused_with_the_fix():
    model = tiny()
    x, offsets = voxel_clouds((50, 60))
    with pytest.raises(ValueError, match="in_channels=6"):
        model(x[:, :5], offsets)
    bad = x.clone()
    bad[70, 1] = float("nan")
    with pytest.raises(ValueError, match="cloud 1 has a NaN"):
        model(bad, offsets)
    with pytest.raises(ValueError, match="cloud 1 is empty"):
        model(x, torch.tensor([50, 50, 110]))
    with pytest.raises(ValueError, match="one stage fewer"):
        PointTransformerV3(**{**TINY, "dec_depths": (1, 1, 1)})
    with pytest.raises(ValueError, match="pos_embed"):
        PointTransformerV3(**TINY, pos_embed="sine")


def test_preset_is_pointcepts_ptv3_base():
    model = MODELS.build(dict(type="ptv3_base", in_channels=6))
    # Pointcept reports 46.2M parameters for PTv3 (ScanNet, colour + normal in)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 46.2
    assert model.out_channels == {"points": 64, "pooled": 512}


def test_learns_floor_wall_object_on_a_synthetic_scene():
    torch.manual_seed(0)
    scene = make_scene_cloud(np.random.default_rng(0), 600)
    coord = torch.from_numpy(scene["coord"]).float()
    points = torch.cat([coord, torch.from_numpy(scene["color"]).float()], 1)
    offsets = torch.tensor([len(points)])
    target = torch.from_numpy(scene["segment"]).long().clamp(max=2)  # floor, wall, object
    model = PointTransformerV3(**{**TINY, "grid_size": 0.1})
    head = nn.Linear(16, 3)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=3e-3)

    def accuracy() -> float:
        with torch.no_grad():
            model.eval()
            acc = (head(model(points, offsets)["points"]).argmax(1) == target).float().mean()
            model.train()
        return float(acc)

    before = accuracy()
    for _ in range(60):
        loss = F.cross_entropy(head(model(points, offsets)["points"]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    assert after > 0.9 and after > before + 0.2, (before, after)
