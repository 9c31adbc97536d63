"""Packed point-cloud ops (visionfm.ops.point_sampling, visionfm.ops.point_batch) against
plain numpy loops, one cloud at a time, on clouds of different sizes in one packed batch."""

import numpy as np
import pytest
import torch

from visionfm.ops.point_batch import (
    batch_to_offsets,
    offsets_to_batch,
    offsets_to_lengths,
    offsets_to_starts,
)
from visionfm.ops.point_sampling import (
    ball_query,
    farthest_point_sampling,
    knn,
    three_nn_interpolate,
)

LENGTHS = [7, 31, 12]


def _packed(lengths=LENGTHS, seed=0):
    gen = torch.Generator().manual_seed(seed)
    coords = torch.rand(sum(lengths), 3, generator=gen, dtype=torch.float64)
    return coords, torch.tensor(np.cumsum(lengths))


def _clouds(coords, offsets):
    starts = [0, *offsets.tolist()[:-1]]
    return [(s, coords[s:e].numpy()) for s, e in zip(starts, offsets.tolist())]


def _fps_loop(points, num, first):
    chosen, nearest = [first], np.full(len(points), np.inf)
    for _ in range(num - 1):
        nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(np.argmax(nearest)))
    return chosen


def test_offset_helpers_round_trip():
    offsets = torch.tensor([3, 4, 9])
    batch = offsets_to_batch(offsets)
    assert batch.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2]
    assert offsets_to_lengths(offsets).tolist() == [3, 1, 5]
    assert offsets_to_starts(offsets).tolist() == [0, 3, 4]
    assert batch_to_offsets(batch).tolist() == [3, 4, 9]
    with pytest.raises(ValueError, match="sorted"):
        batch_to_offsets(torch.tensor([0, 1, 0]))


@pytest.mark.parametrize("num_samples", [5, torch.tensor([7, 10, 1])])
def test_farthest_point_sampling_equals_loop(num_samples):
    coords, offsets = _packed()
    indices, new_offsets = farthest_point_sampling(coords, offsets, num_samples)
    nums = torch.as_tensor(num_samples).expand(3).tolist()
    assert new_offsets.tolist() == np.cumsum(nums).tolist()
    expected = [
        s + i for (s, pts), n in zip(_clouds(coords, offsets), nums) for i in _fps_loop(pts, n, 0)
    ]
    assert indices.tolist() == expected


def test_farthest_point_sampling_random_start():
    coords, offsets = _packed()
    gen = torch.Generator().manual_seed(3)
    indices, new_offsets = farthest_point_sampling(
        coords, offsets, 4, start="random", generator=gen
    )
    starts = [0, *new_offsets.tolist()[:-1]]
    assert indices[starts].tolist() != [0, 7, 38]  # not every cloud started at its first point
    for (s, pts), b in zip(_clouds(coords, offsets), starts):
        first = int(indices[b]) - s
        assert 0 <= first < len(pts)
        assert indices[b : b + 4].tolist() == [s + i for i in _fps_loop(pts, 4, first)]


def test_knn_equals_loop_and_stays_in_cloud():
    support, s_offsets = _packed()
    query, q_offsets = _packed([5, 9, 4], seed=1)
    index, dist = knn(query, q_offsets, support, s_offsets, k=6, chunk_size=4)  # several chunks
    for (qs, q), (ss, s) in zip(_clouds(query, q_offsets), _clouds(support, s_offsets)):
        d = np.sqrt(((q[:, None] - s[None]) ** 2).sum(-1))
        order = np.argsort(d, 1, kind="stable")[:, :6]
        np.testing.assert_array_equal(index[qs : qs + len(q)].numpy(), order + ss)
        np.testing.assert_allclose(
            dist[qs : qs + len(q)].numpy(), np.take_along_axis(d, order, 1), atol=1e-12
        )


def test_ball_query_equals_loop_with_nearest_padding():
    support, s_offsets = _packed()
    query, q_offsets = _packed([5, 9, 4], seed=1)
    query[0] = 10.0  # far from its cloud: no neighbour in the ball
    radius, k = 0.35, 5
    index, dist = ball_query(query, q_offsets, support, s_offsets, radius, k)
    for (qs, q), (ss, s) in zip(_clouds(query, q_offsets), _clouds(support, s_offsets)):
        for row, point in enumerate(q):
            d = np.sqrt(((s - point) ** 2).sum(1))
            inside = [i for i in np.argsort(d, kind="stable") if d[i] <= radius][:k]
            if not inside:
                expected = [-1] * k
            else:
                expected = [ss + i for i in inside] + [ss + inside[0]] * (k - len(inside))
            assert index[qs + row].tolist() == expected
            got = dist[qs + row].numpy()
            want = [d[i - ss] if i >= 0 else np.inf for i in expected]
            np.testing.assert_allclose(got, want, atol=1e-12)
    assert index[0].tolist() == [-1] * k


def test_three_nn_interpolate_equals_loop():
    source, s_offsets = _packed()
    target, t_offsets = _packed([4, 6, 3], seed=2)
    feats = torch.randn(
        source.shape[0], 5, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    out = three_nn_interpolate(feats, source, s_offsets, target, t_offsets)
    for (ts, t), (ss, s) in zip(_clouds(target, t_offsets), _clouds(source, s_offsets)):
        for row, point in enumerate(t):
            d = np.sqrt(((s - point) ** 2).sum(1))
            near = np.argsort(d, kind="stable")[:3]
            w = 1 / (d[near] + 1e-8)
            want = (feats[ss + near].numpy() * (w / w.sum())[:, None]).sum(0)
            np.testing.assert_allclose(out[ts + row].numpy(), want, atol=1e-12)
    # a target point on a source point takes (almost) only that point's features
    out = three_nn_interpolate(feats, source, s_offsets, source, s_offsets)
    np.testing.assert_allclose(out.numpy(), feats.numpy(), atol=1e-5)


def test_bad_packing_is_refused():
    coords, offsets = _packed()
    with pytest.raises(ValueError, match="cloud 1 is empty"):
        farthest_point_sampling(coords, torch.tensor([7, 7, 50]), 2)
    with pytest.raises(ValueError, match="cloud 2 is empty or offsets decrease"):
        knn(coords, torch.tensor([7, 38, 30]), coords, offsets, 2)
    with pytest.raises(ValueError, match=r"offsets\[-1\] = 49 but there are 50 points"):
        farthest_point_sampling(coords, torch.tensor([7, 38, 49]), 2)
    with pytest.raises(TypeError, match="integer"):
        farthest_point_sampling(coords, offsets.double(), 2)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        farthest_point_sampling(coords[:, :2], offsets, 2)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_coordinates_name_the_cloud(value):
    coords, offsets = _packed()
    coords[40, 1] = value  # row 40 is in cloud 2 (rows 38..49)
    with pytest.raises(ValueError, match="cloud 2 has a NaN / inf coordinate at packed row 40"):
        farthest_point_sampling(coords, offsets, 2)
    with pytest.raises(ValueError, match="support: cloud 2"):
        knn(coords[:7], torch.tensor([2, 5, 7]), coords, offsets, 2)


def test_too_few_points_are_refused():
    coords, offsets = _packed()
    with pytest.raises(ValueError, match="cloud 0 has 7 points but 8 samples"):
        farthest_point_sampling(coords, offsets, 8)
    with pytest.raises(ValueError, match="support cloud 0 has 7 points, fewer than k = 9"):
        knn(coords, offsets, coords, offsets, 9)
    with pytest.raises(ValueError, match="query has 3 clouds but support has 1"):
        knn(coords, offsets, coords, torch.tensor([50]), 2)
    # ball_query pads instead: 7 points in cloud 0, k = 9
    index, _ = ball_query(coords, offsets, coords, offsets, radius=10.0, k=9)
    assert (index[:7, 7:] == index[:7, :1]).all()


def test_int32_offsets_as_pointcept_gives_the_same():
    coords, offsets = _packed()
    for a, b in zip(
        farthest_point_sampling(coords, offsets, 5),
        farthest_point_sampling(coords, offsets.int(), 5),
    ):
        assert torch.equal(a, b)
    assert torch.equal(
        knn(coords, offsets, coords, offsets, 3)[0],
        knn(coords, offsets.int(), coords, offsets.int(), 3)[0],
    )
    coords[40, 0] = float("nan")
    with pytest.raises(ValueError, match="cloud 2"):
        knn(coords, offsets.int(), coords, offsets.int(), 3)
