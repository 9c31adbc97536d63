"""Point-cloud files: every format round-trips through our writers and readers, hand-written
PLY files (ASCII and binary, independent of our writer) parse, the synthetic shapes are the
shapes they claim and deterministic, and bad input is refused naming the file."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from visionfm.data import points_io as pio
from visionfm.data.synthetic.points import (
    SCENE_CLASSES,
    SHAPES,
    TORUS_MINOR,
    make_scene_cloud,
    make_shape_cloud,
    sample_surface,
    write_point_datasets,
)


def _cloud(n=7, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((n, 3))
    return {
        "coord": rng.uniform(-2, 2, (n, 3)).astype(np.float32),
        "color": rng.integers(0, 256, (n, 3)).astype(np.float32),
        "normal": (normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32),
        "segment": rng.integers(-1, 5, n).astype(np.int64),
        "instance": rng.integers(-1, 3, n).astype(np.int64),
    }


def _assert_same(read: dict, expected: dict, fields, atol=0.0) -> None:
    for name in pio.FIELD_WIDTHS:
        if name not in fields:
            assert read[name] is None, name
            continue
        assert read[name].dtype == (np.int64 if name in ("segment", "instance") else np.float32)
        np.testing.assert_allclose(read[name], expected[name], atol=atol, rtol=0, err_msg=name)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, binary):
    cloud = _cloud()
    pio.write_ply(tmp_path / "a.ply", cloud, binary=binary)
    read = pio.read_points_file(tmp_path / "a.ply", num_classes=5)
    _assert_same(read, cloud, pio.FIELD_WIDTHS, atol=0 if binary else 5e-7)


@pytest.mark.parametrize("suffix", [".npy", ".txt"])
def test_array_round_trip(tmp_path, suffix):
    cloud, fields = _cloud(), ("coord", "color", "normal", "segment")
    pio.write_points_array(tmp_path / f"a{suffix}", cloud, fields)
    read = pio.read_points_file(tmp_path / f"a{suffix}", fields=fields, num_classes=5)
    _assert_same(read, cloud, fields, atol=5e-7)


def test_pointcept_round_trip(tmp_path):
    cloud = _cloud()
    pio.write_pointcept_scene(tmp_path / "scene0", cloud)
    np.save(tmp_path / "scene0" / "segment.npy", cloud["segment"][:, None].astype(np.int16))
    read = pio.read_points_file(tmp_path / "scene0", num_classes=5)  # S3DIS stores (N, 1)
    _assert_same(read, cloud, pio.FIELD_WIDTHS)
    (tmp_path / "scene0" / "segment.npy").rename(tmp_path / "scene0" / "segment200.npy")
    assert pio.read_pointcept_scene(tmp_path / "scene0")["segment"] is None
    read = pio.read_pointcept_scene(tmp_path / "scene0", segment_file="segment200.npy")
    np.testing.assert_array_equal(read["segment"], cloud["segment"])


def test_modelnet40_round_trip(tmp_path):
    clouds = [_cloud(5, seed) for seed in range(3)]
    pio.write_modelnet40(tmp_path, ["chair", "night_stand"], {"train": [(1, clouds[0]), (0, clouds[1])], "test": [(1, clouds[2])]})  # fmt: skip
    assert pio.read_modelnet40_names(tmp_path) == ["chair", "night_stand"]
    train = pio.read_modelnet40_split(tmp_path, "train")
    test = pio.read_modelnet40_split(tmp_path, "test")
    assert [(p.relative_to(tmp_path).as_posix(), label) for p, label in train + test] == [
        ("night_stand/night_stand_0001.txt", 1),
        ("chair/chair_0001.txt", 0),
        ("night_stand/night_stand_0002.txt", 1),
    ]
    assert (train[0][0]).read_text().splitlines()[0].count(",") == 5
    for (path, _), cloud in zip(train + test, clouds, strict=True):
        _assert_same(pio.read_modelnet40_shape(path), cloud, ("coord", "normal"), atol=5e-7)


def test_scanobjectnn_round_trip(tmp_path):
    points = np.random.default_rng(0).standard_normal((4, 9, 3)).astype(np.float32)
    pio.write_scanobjectnn_h5(tmp_path / "a.h5", points, np.array([0, 2, 1, 2]))
    read, labels = pio.read_scanobjectnn_h5(tmp_path / "a.h5", num_classes=3)
    np.testing.assert_array_equal(read, points)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 2, 1, 2]


# ---------------------------------------------------------------- hand-written PLY

_HEADER = """ply
format {fmt} 1.0
comment written by hand
element vertex 2
property float x
property float y
property float z
property uchar red
property uchar green
property uchar blue
property int label
element face 1
property list uchar int vertex_indices
end_header
"""


def test_hand_written_ply(tmp_path):
    ascii_body = "0.5 -1.25 2 255 0 7 3\n1e-3 4 -0.0 1 2 3 0\n3 0 1 1\n"
    (tmp_path / "a.ply").write_text(_HEADER.format(fmt="ascii") + ascii_body)
    rows = [(0.5, -1.25, 2.0, 255, 0, 7, 3), (1e-3, 4.0, -0.0, 1, 2, 3, 0)]
    body = b"".join(struct.pack("<fffBBBi", *row) for row in rows) + b"\x03" + bytes(12)
    (tmp_path / "b.ply").write_bytes(_HEADER.format(fmt="binary_little_endian").encode() + body)
    big = b"".join(struct.pack(">fffBBBi", *row) for row in rows)
    (tmp_path / "c.ply").write_bytes(_HEADER.format(fmt="binary_big_endian").encode() + big)
    for name in ("a.ply", "b.ply", "c.ply"):
        cloud = pio.read_ply(tmp_path / name, num_classes=4)
        np.testing.assert_allclose(cloud["coord"], [[0.5, -1.25, 2], [1e-3, 4, 0]], rtol=1e-7)
        np.testing.assert_array_equal(cloud["color"], [[255, 0, 7], [1, 2, 3]])
        np.testing.assert_array_equal(cloud["segment"], [3, 0])
        assert cloud["normal"] is None and cloud["instance"] is None


# ---------------------------------------------------------------- synthetic shapes


def _canonical(shape) -> np.ndarray:
    """The shape's points back in its canonical frame."""
    return (shape.coord.astype(np.float64) - shape.translation) @ shape.rotation / shape.scale


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_shapes_lie_on_their_surfaces():
    """Each canonical point satisfies its shape's surface equation, its normal is the
    outward unit normal there, and the parts are sampled in proportion to their areas."""
    rng, z = np.random.default_rng(0), np.array([0.0, 0.0, 1.0])
    for label, name in enumerate(SHAPES):
        shape = make_shape_cloud(rng, label, 2000, noise=0.0)
        p, n = _canonical(shape), shape.normal.astype(np.float64) @ shape.rotation
        assert shape.coord.shape == (2000, 3) and shape.coord.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5, err_msg=name)
        radial = np.linalg.norm(p[:, :2], axis=1)
        ring = np.concatenate([p[:, :2] / radial[:, None], np.zeros((len(p), 1))], axis=1)
        cap = np.sign(p[:, 2])[:, None] * z
        if name == "sphere":
            np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1, atol=1e-5)
            expected, part = p, None
        elif name == "cube":
            axis = np.abs(p).argmax(axis=1)
            np.testing.assert_allclose(np.abs(p).max(axis=1), 1, atol=1e-5)
            expected, part = np.eye(3)[axis] * np.sign(p[np.arange(len(p)), axis])[:, None], None
        elif name == "cylinder":  # side area 4 pi of 6 pi
            part = np.abs(np.abs(p[:, 2]) - 1) > 1e-4
            np.testing.assert_allclose(radial[part], 1, atol=1e-5)
            assert np.all(radial <= 1 + 1e-5)
            expected, area = np.where(part[:, None], ring, cap), 2 / 3
        elif name == "cone":  # lateral area pi sqrt(5), base pi
            part = np.abs(p[:, 2] + 1) > 1e-4
            np.testing.assert_allclose(radial[part], (1 - p[part, 2]) / 2, atol=1e-5)
            expected, area = np.where(part[:, None], _unit(2 * ring + z), -z), 5**0.5 / (5**0.5 + 1)
        elif name == "torus":
            np.testing.assert_allclose(np.hypot(radial - 1, p[:, 2]), TORUS_MINOR, atol=1e-5)
            expected, part = (p - ring) / TORUS_MINOR, None
        else:  # pyramid: four faces 2 x + z = 1 (and rotations), area sqrt(5) each; base 4
            part = np.abs(p[:, 2] + 1) > 1e-4
            np.testing.assert_allclose(np.abs(p[part, :2]).max(axis=1), (1 - p[part, 2]) / 2, atol=1e-5)  # fmt: skip
            axis = np.abs(p[:, :2]).argmax(axis=1)
            side = _unit(2 * np.eye(3)[axis] * np.sign(p[np.arange(len(p)), axis])[:, None] + z)
            expected, area = np.where(part[:, None], side, -z), 5**0.5 / (5**0.5 + 1)
        np.testing.assert_allclose(n, expected, atol=1e-4, err_msg=name)
        if part is not None:
            assert abs(part.mean() - area) < 0.05, (name, part.mean(), area)


def test_sample_surface_rejects_unknown_shape():
    with pytest.raises(ValueError, match="unknown shape 'donut'.*sphere"):
        sample_surface(np.random.default_rng(0), "donut", 3)


def test_partial_view_and_determinism():
    a = make_shape_cloud(np.random.default_rng(3), 0, 200, noise=0.0, partial=True)
    b = make_shape_cloud(np.random.default_rng(3), 0, 200, noise=0.0, partial=True)
    np.testing.assert_array_equal(a.coord, b.coord)
    full = make_shape_cloud(np.random.default_rng(3), 0, 200, noise=0.0)
    # unit normals over a hemisphere average to length 1/2, over the whole sphere to ~0
    assert 0.4 < np.linalg.norm(a.normal.mean(0)) < 0.6
    assert np.linalg.norm(full.normal.mean(0)) < 0.15
    c = make_shape_cloud(np.random.default_rng(4), 0, 200, noise=0.0, partial=True)
    assert not np.allclose(a.coord, c.coord)


def test_scene_labels_and_geometry():
    scene = make_scene_cloud(np.random.default_rng(0), 1000)
    pio.check_cloud(scene, "scene", num_classes=len(SCENE_CLASSES))
    seg = scene["segment"]
    assert len(seg) == 1000 and set(seg.tolist()) >= {0, 1} and seg.max() >= 2
    np.testing.assert_allclose(scene["coord"][seg == 0, 2], 0)
    assert np.all(scene["coord"][:, 2] >= -1e-5) and np.all(scene["instance"][seg < 2] == -1)
    assert np.all((scene["color"] >= 0) & (scene["color"] <= 255))
    for seed in range(5):  # objects stay inside the walls and apart from each other
        scene_k = make_scene_cloud(np.random.default_rng(seed), 2000)
        xy, inst = scene_k["coord"][:, :2], scene_k["instance"]
        walls = xy[scene_k["segment"] == 1]
        assert np.all((xy >= walls.min(0) - 1e-5) & (xy <= walls.max(0) + 1e-5))
        boxes = [(xy[inst == i].min(0), xy[inst == i].max(0)) for i in range(inst.max() + 1)]
        for i, (lo, hi) in enumerate(boxes):
            for lo2, hi2 in boxes[i + 1 :]:
                assert np.any((hi < lo2) | (hi2 < lo)), (seed, i)
    again = make_scene_cloud(np.random.default_rng(0), 1000)
    for key in scene:
        np.testing.assert_array_equal(scene[key], again[key])


def test_written_datasets_read_back(tmp_path):
    kwargs = dict(num_train=7, num_val=6, num_points=64, num_scenes=(2, 1), scene_points=512)
    paths = write_point_datasets(tmp_path / "a", **kwargs)
    write_point_datasets(tmp_path / "b", **kwargs)
    assert pio.read_modelnet40_names(paths["modelnet"]) == list(SHAPES)
    train = pio.read_modelnet40_split(paths["modelnet"], "train")
    assert [label for _, label in train] == [0, 1, 2, 3, 4, 5, 0]
    shape = pio.read_modelnet40_shape(train[3][0])
    np.testing.assert_allclose(np.linalg.norm(shape["normal"], axis=1), 1, atol=1e-5)
    points, labels = pio.read_scanobjectnn_h5(paths["scanobjectnn"] / "test_objectdataset.h5", 6)
    assert points.shape == (6, 64, 3) and labels.tolist() == [1, 2, 3, 4, 5, 0]
    scene = pio.read_pointcept_scene(paths["scenes"] / "val" / "scene_0000", num_classes=8)
    ply = pio.read_ply(paths["scenes_ply"] / "val" / "scene_0000.ply", num_classes=8)
    _assert_same(ply, scene, pio.FIELD_WIDTHS)
    for path in sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*")):
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes(), path


# ---------------------------------------------------------------- bad input


def _write(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name, content, kwargs, match",
    [
        (
            "noxyz.ply",
            "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nend_header\n1 2\n",
            {},
            "need x, y, z",
        ),  # fmt: skip
        (
            "short.ply",
            "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n1 2 3\n",
            {},
            "expected 2 vertex rows",
        ),  # fmt: skip
        (
            "trunc.ply",
            "ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
            + "\0" * 12,
            {},
            "truncated PLY",
        ),  # fmt: skip
        ("nothing.ply", "hello\n", {}, "not a PLY file"),
        (
            "empty.ply",
            "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n",
            {},
            "empty point cloud",
        ),  # fmt: skip
        ("cols.txt", "1 2 3\n4 5\n", {}, "different column counts"),
        ("width.txt", "1 2 3 4\n", {}, "expected 3 columns"),
        ("nan.txt", "1 2 3\nnan 1 1\n", {}, "1 points have NaN / inf coord"),
        ("inf.txt", "1 2 3\n1 inf 1\n", {}, "NaN / inf coord"),
        ("empty.txt", "\n", {}, "empty point cloud"),
        (
            "range.txt",
            "1 2 3 4\n1 1 1 -2\n",
            dict(fields=("coord", "segment"), num_classes=5),
            "out of range, e.g. -2",
        ),  # fmt: skip
        (
            "range5.txt",
            "1 2 3 5\n",
            dict(fields=("coord", "segment"), num_classes=5),
            r"\[0, 5\)",
        ),  # fmt: skip
        ("frac.txt", "1 2 3 0.5\n", dict(fields=("coord", "segment")), "non-integer"),
        ("cloud.las", "x", {}, "unsupported point-cloud file"),
    ],
)
def test_bad_files_name_the_file(tmp_path, name, content, kwargs, match):
    path = _write(tmp_path / name, content)
    with pytest.raises(ValueError, match=match) as info:
        pio.read_points_file(path, **kwargs)
    assert str(path) in str(info.value)


def test_corrupt_npy_h5_and_ply_header_name_the_file(tmp_path):
    for name in ("a.npy", "a.h5"):
        (tmp_path / name).write_bytes(b"not an array")
    with pytest.raises(ValueError, match=f"{tmp_path / 'a.npy'}: cannot read as a .npy"):
        pio.read_points_file(tmp_path / "a.npy")
    with pytest.raises(OSError, match=f"{tmp_path / 'a.h5'}: cannot open as HDF5"):
        pio.read_scanobjectnn_h5(tmp_path / "a.h5")
    bad = _write(tmp_path / "a.ply", "ply\nformat ascii 1.0\nelement vertex many\nend_header\n")
    with pytest.raises(ValueError, match=f"{bad}: cannot parse PLY header line 'element vertex"):
        pio.read_ply(bad)
    bad = _write(tmp_path / "b.ply", "ply\nformat ascii 1.0\nelement vertex 0\nend_header")
    with pytest.raises(ValueError, match=f"{bad}: not a PLY file"):
        pio.read_ply(bad)


def test_bad_folders_and_h5_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        pio.read_points_file(tmp_path / "missing.ply")
    with pytest.raises(FileNotFoundError, match="needs coord.npy"):
        pio.read_pointcept_scene(tmp_path)
    np.save(tmp_path / "coord.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "segment.npy", np.zeros(3, np.int16))
    with pytest.raises(ValueError, match=f"{tmp_path}.*segment has 3 entries but coord has 4"):
        pio.read_pointcept_scene(tmp_path)
    with pytest.raises(FileNotFoundError, match="segment20.npy: segment file not found"):
        pio.read_pointcept_scene(tmp_path, segment_file="segment20.npy")
    with pytest.raises(ValueError, match="unknown fields"):
        pio.read_points_array(tmp_path / "coord.npy", fields=("xyz",))
    h5 = tmp_path / "a.h5"
    pio.write_scanobjectnn_h5(h5, np.zeros((2, 5, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=f"{h5}: labels must lie in \\[0, 3\\)"):
        pio.read_scanobjectnn_h5(h5, num_classes=3)
    pio.write_scanobjectnn_h5(h5, np.full((2, 5, 3), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match=f"{h5}: clouds \\[0, 1\\] have NaN"):
        pio.read_scanobjectnn_h5(h5)
    pio.write_scanobjectnn_h5(h5, np.zeros((2, 5, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="2 clouds in 'data' but 3 labels"):
        pio.read_scanobjectnn_h5(h5)


@pytest.mark.parametrize("binary", [True, False])
@settings(
    max_examples=150, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(cut=st.integers(0, 10_000), position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_fuzzed_ply_loads_or_names_the_file(tmp_path, binary, cut, position, byte):
    """A valid PLY truncated and with one byte replaced anywhere loads, or raises a
    ValueError naming the file; never an IndexError / struct error from inside the parser."""
    path = tmp_path / "fuzz.ply"
    pio.write_ply(path, _cloud(4), binary=binary)
    data = bytearray(path.read_bytes())
    data[position % len(data)] = byte
    path.write_bytes(bytes(data[: len(data) - cut % 40]))
    try:
        cloud = pio.read_ply(path)
    except ValueError as e:
        assert str(path) in str(e)
    else:
        assert cloud["coord"].shape[1] == 3 and np.isfinite(cloud["coord"]).all()
