"""Chamfer distance (visionfm.ops.chamfer) against scipy's cKDTree and a plain loop, float64,
its gradients against the nearest-neighbour pull written out by hand, and bad input."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from visionfm.ops.chamfer import chamfer_distance, nearest_squared_distances


def _sets(b=3, n=37, m=23, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(b, n, 3, generator=gen, dtype=torch.float64)
    return a, torch.rand(b, m, 3, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("chunk_size", [1, 5, 2048])
def test_nearest_equals_kdtree(chunk_size):
    a, b = _sets()
    d_ab, idx_ab, d_ba, idx_ba = nearest_squared_distances(a, b, chunk_size)
    for i in range(len(a)):
        dist, idx = cKDTree(b[i].numpy()).query(a[i].numpy())
        np.testing.assert_allclose(d_ab[i].numpy(), dist**2, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(idx_ab[i].numpy(), idx)
        dist, idx = cKDTree(a[i].numpy()).query(b[i].numpy())
        np.testing.assert_allclose(d_ba[i].numpy(), dist**2, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(idx_ba[i].numpy(), idx)


def _loop_chamfer(a, b, norm):
    """Plain double loop over every pair, one set at a time."""
    ab, ba = [], []
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        sq = [[sum((p - q) ** 2 for p, q in zip(u, v, strict=True)) for v in y] for u in x]
        ab += [min(row) for row in sq]
        ba += [min(col) for col in zip(*sq, strict=True)]
    if norm == "l2":
        return np.mean(ab) + np.mean(ba)
    return (np.mean(np.sqrt(ab)) + np.mean(np.sqrt(ba))) / 2


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_chamfer_equals_loop(norm):
    a, b = _sets(b=2, n=19, m=11, seed=1)
    got = chamfer_distance(a, b, norm, chunk_size=4)
    assert abs(float(got) - _loop_chamfer(a, b, norm)) < 1e-12


def test_identical_sets_give_zero_and_hand_case():
    a, _ = _sets()
    assert float(chamfer_distance(a, a.flip(1))) == 0.0
    # a = {0, 2} on x, b = {1}: d_ab = [1, 1], d_ba = [1] -> l2 = 1 + 1 = 2, l1 = (1 + 1) / 2
    a = torch.tensor([[[0.0, 0, 0], [2, 0, 0]]], dtype=torch.float64)
    b = torch.tensor([[[1.0, 0, 0]]], dtype=torch.float64)
    assert float(chamfer_distance(a, b)) == 2.0 and float(chamfer_distance(a, b, "l1")) == 1.0


def test_gradients_pull_points_to_their_nearest():
    """d/da_i of mean(d_ab) + mean(d_ba) = 2 (a_i - b_nn(i)) / BN + sum over the b points
    whose nearest is a_i of 2 (a_i - b_j) / BM (means over the whole batch); the same for b."""
    a, b = _sets(b=2, n=13, m=9, seed=2)
    a.requires_grad_(True)
    b.requires_grad_(True)
    chamfer_distance(a, b, chunk_size=3).backward()
    _, idx_ab, _, idx_ba = nearest_squared_distances(a.detach(), b.detach())
    ga, gb = torch.zeros_like(a), torch.zeros_like(b)
    n, m = a.shape[1], b.shape[1]
    bn, bm = len(a) * n, len(a) * m
    for s in range(len(a)):
        for i in range(n):
            j = int(idx_ab[s, i])
            ga[s, i] += 2 * (a[s, i] - b[s, j]).detach() / bn
            gb[s, j] -= 2 * (a[s, i] - b[s, j]).detach() / bn
        for j in range(m):
            i = int(idx_ba[s, j])
            gb[s, j] += 2 * (b[s, j] - a[s, i]).detach() / bm
            ga[s, i] -= 2 * (b[s, j] - a[s, i]).detach() / bm
    torch.testing.assert_close(a.grad, ga, rtol=0, atol=1e-14)
    torch.testing.assert_close(b.grad, gb, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "match"),
    [
        ((2, 5, 2), (2, 5, 3), r"a must be \(B, N > 0, 3\), got \(2, 5, 2\)"),
        ((5, 3), (2, 5, 3), r"a must be \(B, N > 0, 3\)"),
        ((2, 5, 3), (2, 0, 3), r"b must be \(B, N > 0, 3\), got \(2, 0, 3\)"),
        ((2, 5, 3), (3, 5, 3), "different numbers of sets, 2 vs 3"),
    ],
)
def test_bad_shapes_are_refused(a_shape, b_shape, match):
    with pytest.raises(ValueError, match=match):
        chamfer_distance(torch.zeros(a_shape), torch.zeros(b_shape))
    with pytest.raises(ValueError, match="norm must be"):
        chamfer_distance(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), norm="l3")
