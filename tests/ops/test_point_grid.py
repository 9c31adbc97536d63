"""Voxel grids on packed point clouds (visionfm.ops.point_grid): grid sampling, z-order /
Hilbert serialization and cluster pooling, against loops written here."""

import itertools

import numpy as np
import pytest
import torch

from visionfm.ops.point_batch import offsets_to_batch
from visionfm.ops.point_grid import grid_sample, scatter_pool, serialize

LENGTHS = [9, 40, 23]


def _packed(lengths=LENGTHS, seed=0):
    gen = torch.Generator().manual_seed(seed)
    coords = torch.rand(sum(lengths), 3, generator=gen, dtype=torch.float64) * 2 - 5
    return coords, torch.tensor(np.cumsum(lengths))


def _voxels_by_loop(coords, offsets, size):
    """{(cloud, voxel): [rows]} by a loop over clouds."""
    voxels, start = {}, 0
    for b, end in enumerate(offsets.tolist()):
        pts = coords[start:end].numpy()
        cells = np.floor(pts / size).astype(int)
        for row, cell in enumerate(cells - cells.min(0)):
            voxels.setdefault((b, *cell.tolist()), []).append(start + row)
        start = end
    return voxels


def _check_sample(sample, voxels, offsets_len):
    got = {}
    batch = offsets_to_batch(sample.offsets).tolist()
    assert len(batch) == len(sample.indices)
    for b, row, grid in zip(batch, sample.indices.tolist(), sample.grid_coords.tolist()):
        key = (b, *grid)
        assert row in voxels[key]  # the point lies in its voxel, of its cloud
        assert key not in got  # one point per voxel
        got[key] = row
    assert set(got) == set(voxels)  # every occupied voxel sampled
    for key, rows in voxels.items():  # inverse: every point to its voxel's sample
        assert sample.indices[sample.inverse[rows]].tolist() == [got[key]] * len(rows)
    assert len(sample.offsets) == offsets_len
    return got


def test_grid_sample_train_one_point_per_voxel():
    coords, offsets = _packed()
    voxels = _voxels_by_loop(coords, offsets, 0.5)
    sample = grid_sample(coords, offsets, 0.5, generator=torch.Generator().manual_seed(0))
    _check_sample(sample, voxels, 3)
    # random: another draw picks other points somewhere
    other = grid_sample(coords, offsets, 0.5, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(sample.indices, other.indices)


def test_grid_sample_test_fragments_cover_every_point():
    coords, offsets = _packed()
    voxels = _voxels_by_loop(coords, offsets, 0.5)
    fragments = grid_sample(coords, offsets, 0.5, mode="test")
    assert len(fragments) == max(len(rows) for rows in voxels.values())
    picked = [_check_sample(f, voxels, 3) for f in fragments]
    for key, rows in voxels.items():
        # fragment i takes the (i % count)-th point of the voxel, in input order
        assert [p[key] for p in picked] == [rows[i % len(rows)] for i in range(len(fragments))]
    assert {r for p in picked for r in p.values()} == set(range(len(coords)))


def test_grid_sample_bad_input():
    coords, offsets = _packed()
    with pytest.raises(ValueError, match="grid_size must be > 0"):
        grid_sample(coords, offsets, 0.0)
    with pytest.raises(ValueError, match="mode must be"):
        grid_sample(coords, offsets, 0.5, mode="val")
    coords[12, 0] = float("nan")
    with pytest.raises(ValueError, match="cloud 1 has a NaN / inf coordinate at packed row 12"):
        grid_sample(coords, offsets, 0.5)
    with pytest.raises(ValueError, match="too many to key"):
        grid_sample(*_packed(), 1e-12)


def _all_cells(depth):
    side = 1 << depth
    return torch.tensor(list(itertools.product(range(side), repeat=3)))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_z_order_equals_bit_interleaving(depth):
    grid = _all_cells(depth)
    codes = serialize(grid, torch.zeros(len(grid), dtype=torch.long), "z", depth).codes
    trans = serialize(grid, torch.zeros(len(grid), dtype=torch.long), "z-trans", depth).codes
    for (x, y, z), code, code_t in zip(grid.tolist(), codes.tolist(), trans.tolist()):
        bits = "".join(
            f"{x:0{depth}b}"[i] + f"{y:0{depth}b}"[i] + f"{z:0{depth}b}"[i] for i in range(depth)
        )
        assert code == int(bits, 2)
        bits_t = "".join(
            f"{y:0{depth}b}"[i] + f"{x:0{depth}b}"[i] + f"{z:0{depth}b}"[i] for i in range(depth)
        )
        assert code_t == int(bits_t, 2)


@pytest.mark.parametrize("order", ["hilbert", "hilbert-trans"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_hilbert_is_a_continuous_curve_through_every_cell(depth, order):
    """The defining property of the Hilbert curve: codes 0 .. 8**depth - 1 visit every cell
    once, starting at the origin, each step to a face neighbour (z-order jumps)."""
    grid = _all_cells(depth)
    codes = serialize(grid, torch.zeros(len(grid), dtype=torch.long), order, depth).codes
    assert sorted(codes.tolist()) == list(range(8**depth))
    path = grid[torch.argsort(codes)]
    assert path[0].tolist() == [0, 0, 0]
    assert (path.diff(dim=0).abs().sum(1) == 1).all()
    z = serialize(grid, torch.zeros(len(grid), dtype=torch.long), "z", depth).codes
    if depth > 1:
        assert not (grid[torch.argsort(z)].diff(dim=0).abs().sum(1) == 1).all()


@pytest.mark.parametrize("order", ["z", "z-trans", "hilbert", "hilbert-trans"])
def test_serialize_keeps_clouds_apart_and_inverts(order):
    gen = torch.Generator().manual_seed(0)
    grid = torch.randint(0, 8, (50, 3), generator=gen)
    batch = torch.tensor([0] * 10 + [1] * 25 + [2] * 15)
    out = serialize(grid, batch, order)
    assert (out.codes >> 12).tolist() == batch.tolist()  # default depth (7 + 1).bit_length() = 4
    assert (out.codes[out.order].diff() >= 0).all()
    assert batch[out.order].tolist() == batch.tolist()  # sorting never mixes clouds
    assert torch.equal(out.order[out.inverse], torch.arange(50))
    assert torch.equal(out.codes[out.order][out.inverse], out.codes)
    same = serialize(grid[:10], batch[:10], order, depth=4).codes
    assert torch.equal(out.codes[:10], same)


def test_serialize_bad_input():
    grid = torch.tensor([[0, 1, 2], [3, 0, 9]])
    batch = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="grid coordinate 9 does not fit depth 3"):
        serialize(grid, batch, "z", depth=3)
    with pytest.raises(ValueError, match="must be >= 0"):
        serialize(-grid, batch)
    with pytest.raises(ValueError, match=r"\(N, 3\) integers"):
        serialize(grid.double(), batch)
    with pytest.raises(ValueError, match="order must be one of"):
        serialize(grid, batch, "peano")
    with pytest.raises(ValueError, match="over int64's 63"):
        serialize(grid, batch, depth=21)


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_scatter_pool_equals_loop(reduce):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    cluster = torch.randint(0, 6, (30,), generator=gen) * 7 - 10  # sparse, negative labels too
    pooled, index = scatter_pool(feats, cluster, reduce)
    labels = sorted(set(cluster.tolist()))
    assert pooled.shape == (len(labels), 4)
    for row, label in enumerate(labels):
        members = feats[cluster == label].numpy()
        want = members.max(0) if reduce == "max" else members.mean(0)
        np.testing.assert_allclose(pooled[row].numpy(), want, atol=1e-12)
    assert [labels[i] for i in index.tolist()] == cluster.tolist()
    with pytest.raises(ValueError, match="reduce must be"):
        scatter_pool(feats, cluster, "sum")
    with pytest.raises(ValueError, match=r"cluster \(N,\)"):
        scatter_pool(feats, cluster[:-1])
