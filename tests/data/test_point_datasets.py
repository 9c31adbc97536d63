"""Point-cloud datasets read what the synthetic writer wrote, each point transform matches a
hand computation and keeps normals / labels with their points, the packed batch has the
right offsets, and bad files or batches are refused naming the file / sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionfm.data import DataSample, PointDataPreprocessor, pack_points
from visionfm.data import points_io as pio
from visionfm.data.datasets import ModelNetDataset, PointSceneDataset, ScanObjectNNDataset
from visionfm.data.synthetic.points import SCENE_CLASSES, SHAPES, write_point_datasets
from visionfm.data.transforms import points as T
from visionfm.registry import DATASETS, TRANSFORMS

PACK = dict(type="PackPointInputs")


@pytest.fixture(scope="module")
def point_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("points")
    paths = write_point_datasets(
        root, num_train=7, num_val=3, num_points=300, num_scenes=(2, 1), scene_points=900
    )
    return paths


def _cloud(n=6, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((n, 3))
    return {
        "coord": rng.uniform(-2, 2, (n, 3)).astype(np.float32),
        "color": rng.integers(0, 256, (n, 3)).astype(np.float32),
        "normal": (normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32),
        "segment": np.arange(n, dtype=np.int64),
        "instance": np.arange(n, dtype=np.int64) + 100,
    }


# ---------------------------------------------------------------- datasets


@pytest.mark.parametrize("sampling", ["fps", "random"])
def test_modelnet_reads_labels_and_counts(point_root, sampling):
    ds = DATASETS.build(
        dict(
            type="ModelNetDataset",
            data_root=str(point_root["modelnet"]),
            split="train",
            num_points=128,
            sampling=sampling,
            pipeline=[dict(PACK, features=("normal",))],
        )
    )
    assert len(ds) == 7 and ds.metainfo["classes"] == SHAPES
    for i in range(len(ds)):
        out = ds[i]
        assert out["inputs"].shape == (128, 6) and out["inputs"].dtype == torch.float32
        assert int(out["data_samples"].gt_label) == i % len(SHAPES)  # labels cycle
        meta = out["data_samples"].metainfo
        assert meta["num_points"] == 128 and meta["file"].endswith(".txt")
        full = pio.read_modelnet40_shape(meta["file"])
        # every kept row is a row of the file (coords and normals together)
        rows = {tuple(r) for r in np.concatenate([full["coord"], full["normal"]], 1)}
        assert all(tuple(r) in rows for r in out["inputs"].numpy())
        assert len(np.unique(out["inputs"].numpy(), axis=0)) == 128  # no repeats when cut


def test_modelnet_fps_is_farthest_and_pads_by_repeat(point_root):
    ds = ModelNetDataset(str(point_root["modelnet"]), "test", num_points=1000, pipeline=[PACK])
    out = ds[0]["inputs"].numpy()  # the file has 300 points: all kept, 700 repeats
    full = pio.read_modelnet40_shape(ds.get_data_info(0)["file"])["coord"]
    assert out.shape == (1000, 3)
    np.testing.assert_array_equal(out[:300], full)
    assert {tuple(r) for r in out[300:]} <= {tuple(r) for r in full}
    ds = ModelNetDataset(str(point_root["modelnet"]), "test", num_points=2, pipeline=[PACK])
    two = ds[0]["inputs"].numpy()
    far = np.argmax(np.linalg.norm(full - full[0], axis=1))  # FPS from the first point
    np.testing.assert_array_equal(two, full[[0, far]])


def test_scanobjectnn_reads_h5(point_root):
    h5 = point_root["scanobjectnn"] / "test_objectdataset.h5"
    points, labels = pio.read_scanobjectnn_h5(h5)
    ds = ScanObjectNNDataset(str(h5), num_classes=len(SHAPES), pipeline=[PACK])
    assert len(ds) == 3
    for i in range(3):
        out = ds[i]
        np.testing.assert_array_equal(out["inputs"].numpy(), points[i])
        assert int(out["data_samples"].gt_label) == labels[i] == (7 + i) % len(SHAPES)
        assert out["data_samples"].metainfo["file"] == f"{h5}:{i}"


@pytest.mark.parametrize("layout", ["scenes", "scenes_ply"])
def test_scene_dataset_reads_segments(point_root, layout):
    ds = PointSceneDataset(
        str(point_root[layout]),
        "train",
        num_classes=len(SCENE_CLASSES),
        pipeline=[dict(type="NormalizeColor"), dict(PACK, features=("color", "normal"))],
    )
    assert len(ds) == 2
    out = ds[1]
    sample = out["data_samples"]
    expected = pio.read_pointcept_scene(point_root["scenes"] / "train" / "scene_0001")
    assert out["inputs"].shape == (900, 9) and sample.metainfo["scene"] == "scene_0001"
    np.testing.assert_array_equal(sample.gt_segment.numpy(), expected["segment"])
    np.testing.assert_allclose(out["inputs"][:, :3].numpy(), expected["coord"], atol=1e-6)
    np.testing.assert_allclose(out["inputs"][:, 3:6].numpy(), expected["color"] / 127.5 - 1)


def test_scene_dataset_reads_several_splits_in_order(point_root):
    """``split`` as a list (S3DIS's training areas) reads each split's scenes in turn."""
    one = PointSceneDataset(str(point_root["scenes"]), "train", pipeline=[PACK])
    both = PointSceneDataset(str(point_root["scenes"]), ("train", "val"), pipeline=[PACK])
    val = PointSceneDataset(str(point_root["scenes"]), "val", pipeline=[PACK])
    files = [both.get_data_info(i)["file"] for i in range(len(both))]
    assert files == [d.get_data_info(i)["file"] for d in (one, val) for i in range(len(d))]
    assert len(both) == len(one) + len(val) > len(one)


def test_bad_files_named(point_root, tmp_path):
    # a missing ModelNet shape
    root = tmp_path / "modelnet"
    pio.write_modelnet40(root, ["a"], {"train": [(0, _cloud()), (0, _cloud(seed=1))]})
    (root / "a" / "a_0002.txt").unlink()
    ds = ModelNetDataset(str(root), "train", num_points=4, pipeline=[PACK])
    with pytest.raises(FileNotFoundError, match="a_0002.txt"):
        ds[1]
    skipping = ModelNetDataset(str(root), "train", num_points=4, pipeline=[PACK], on_error="skip")
    assert skipping[1]["data_samples"].metainfo["file"].endswith("a_0001.txt")
    assert skipping.num_skipped_samples == 1
    # NaN coordinates and out-of-range labels in a scene
    split = tmp_path / "scenes" / "train"
    nan, wrong = _cloud(), _cloud()
    nan["coord"][2, 1] = np.nan
    wrong["segment"][3] = 9
    pio.write_pointcept_scene(split / "nan", nan)
    pio.write_pointcept_scene(split / "wrong", wrong)
    ds = PointSceneDataset(str(tmp_path / "scenes"), num_classes=6, pipeline=[PACK])
    with pytest.raises(ValueError, match="nan.*NaN|NaN.*nan"):
        ds[0]
    with pytest.raises(ValueError, match="wrong"):
        ds[1]
    # out-of-range labels in a ScanObjectNN file
    h5 = tmp_path / "bad.h5"
    pio.write_scanobjectnn_h5(h5, np.zeros((2, 4, 3)), np.array([0, 15]))
    with pytest.raises(ValueError, match="bad.h5"):
        ScanObjectNNDataset(str(h5), num_classes=15)
    with pytest.raises(OSError, match="missing.h5"):
        ScanObjectNNDataset(str(tmp_path / "missing.h5"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        PointSceneDataset(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------- transforms


def test_rotate_90_degrees_moves_points_and_normals():
    np.random.seed(0)
    results = {"coord": np.array([[1.0, 0, 0], [0, 2, 3]]), "normal": np.array([[1.0, 0, 0]] * 2)}
    out = T.PointRandomRotate(axis="z", angle=(90, 90))(results)
    np.testing.assert_allclose(out["coord"], [[0, 1, 0], [-2, 0, 3]], atol=1e-12)
    np.testing.assert_allclose(out["normal"], [[0, 1, 0], [0, 1, 0]], atol=1e-12)
    out = T.PointRandomRotate(axis="x", angle=(90, 90), centre=(0, 0, 1))(
        {"coord": np.array([[0.0, 0, 2]])}
    )
    np.testing.assert_allclose(out["coord"], [[0, -1, 1]], atol=1e-12)  # y -> z, z -> -y


def test_flip_scale_jitter_centre():
    c = _cloud()
    flipped = T.PointRandomFlip(axis="y", prob=1.0)({k: v.copy() for k, v in c.items()})
    np.testing.assert_array_equal(flipped["coord"][:, 1], -c["coord"][:, 1])
    np.testing.assert_array_equal(flipped["normal"][:, 1], -c["normal"][:, 1])
    np.testing.assert_array_equal(flipped["coord"][:, [0, 2]], c["coord"][:, [0, 2]])
    kept = T.PointRandomFlip(prob=0.0)({k: v.copy() for k, v in c.items()})
    np.testing.assert_array_equal(kept["coord"], c["coord"])

    scaled = T.PointRandomScale(scale=(2.0, 2.0))({k: v.copy() for k, v in c.items()})
    np.testing.assert_allclose(scaled["coord"], 2 * c["coord"])
    np.testing.assert_array_equal(scaled["normal"], c["normal"])
    np.random.seed(1)
    aniso = T.PointRandomScale(scale=(0.5, 2.0), anisotropic=True)(
        {"coord": np.array([[1.0, 1, 1]]), "normal": np.array([[0.0, 0.6, 0.8]])}
    )
    s = aniso["coord"][0]  # the drawn factors
    n = np.array([0.0, 0.6, 0.8]) / s
    np.testing.assert_allclose(aniso["normal"][0], n / np.linalg.norm(n))

    np.random.seed(0)
    big = {"coord": np.zeros((5000, 3))}
    jit = T.PointRandomJitter(sigma=1.0, clip=0.05)(big)["coord"]
    assert np.abs(jit).max() == pytest.approx(0.05) and np.abs(jit).max() <= 0.05

    box = {"coord": np.array([[0.0, 0, 1], [2, 4, 3]])}
    np.testing.assert_allclose(T.CentreShift()(dict(box))["coord"], [[-1, -2, -1], [1, 2, 1]])
    np.testing.assert_allclose(
        T.CentreShift(apply_z=False)(dict(box))["coord"], [[-1, -2, 0], [1, 2, 2]]
    )


def test_dropout_and_sphere_crop_keep_labels_with_points():
    np.random.seed(3)
    c = _cloud(n=50)
    out = T.PointRandomDropout(ratio=0.4, prob=1.0)({k: v.copy() for k, v in c.items()})
    assert len(out["coord"]) == 30
    idx = out["segment"]  # segment = original row index
    for name in ("coord", "color", "normal"):
        np.testing.assert_array_equal(out[name], c[name][idx])
    np.testing.assert_array_equal(out["instance"], idx + 100)

    coord = np.array([[0.0, 0, 0], [5, 0, 0], [1, 0, 0], [0, 3, 0], [0, 0, 2]])
    crop = T.SphereCrop(max_points=3, centre=(0, 0, 0))(
        {"coord": coord, "segment": np.arange(5), "normal": None}
    )
    np.testing.assert_array_equal(crop["segment"], [0, 2, 4])  # the 3 nearest, in order
    np.testing.assert_array_equal(crop["coord"], coord[[0, 2, 4]])
    # box centre (2.5, 1.5, 1): squared distances 9.5, 9.5, 5.5, 9.5, 9.5 (ties: lower index)
    crop = T.SphereCrop(max_points=2, mode="centre")({"coord": coord, "segment": np.arange(5)})
    np.testing.assert_array_equal(crop["segment"], [0, 2])


def test_grid_sample_one_point_per_voxel():
    # voxels of side 1: {0, 1} share voxel (0,0,0), 2 alone, {3, 4} share (2,0,0)
    coord = np.array(
        [[0.1, 0.1, 0.1], [0.9, 0.5, 0.2], [1.5, 0.5, 0.5], [2.2, 0.1, 0.1], [2.3, 0.9, 0.9]]
    )
    results = {"coord": coord.astype(np.float32), "segment": np.arange(5)}
    np.random.seed(0)
    out = T.PointGridSample(grid_size=1.0)(dict(results))
    voxel = np.floor(out["coord"]).astype(int)
    assert len(out["coord"]) == 3 and len({tuple(v) for v in voxel}) == 3
    np.testing.assert_array_equal(out["coord"], coord[out["segment"]].astype(np.float32))
    test = T.PointGridSample(grid_size=1.0, mode="test")(dict(results))
    np.testing.assert_array_equal(test["segment"], [0, 2, 3])  # first point of each voxel
    np.testing.assert_array_equal(test["grid_inverse"], [0, 0, 1, 2, 2])
    np.testing.assert_array_equal(test["grid_coord"], [[0, 0, 0], [1, 0, 0], [2, 0, 0]])


def test_elastic_and_normalize_color():
    c = _cloud(n=40)
    np.random.seed(0)
    still = T.ElasticDistortion(params=[(0.5, 0.0)], prob=1.0)({k: v.copy() for k, v in c.items()})
    np.testing.assert_allclose(still["coord"], c["coord"])
    np.random.seed(0)
    moved = T.ElasticDistortion(params=[(0.5, 0.1)], prob=1.0)({k: v.copy() for k, v in c.items()})
    shift = moved["coord"] - c["coord"]
    assert 0 < np.abs(shift).max() < 0.1 * 3  # smoothed unit noise times the magnitude
    np.testing.assert_array_equal(moved["segment"], c["segment"])
    color = T.NormalizeColor()({"color": np.array([[0.0, 127.5, 255]])})["color"]
    np.testing.assert_allclose(color, [[-1, 0, 1]])


def test_pack_point_inputs_refuses_missing_feature():
    with pytest.raises(ValueError, match="scene_7.*normal"):
        T.PackPointInputs(features=("normal",))({"coord": np.zeros((2, 3)), "file": "scene_7"})
    with pytest.raises(ValueError, match="features"):
        T.PackPointInputs(features=("segment",))
    with pytest.raises(ValueError, match="axis"):
        TRANSFORMS.build(dict(type="PointRandomFlip", axis="w"))


# ---------------------------------------------------------------- packed batch


def test_pack_points_offsets_and_preprocessor():
    clouds = [torch.rand(n, 6) for n in (5, 1, 3)]
    points, offsets = pack_points(clouds)
    assert points.shape == (9, 6) and offsets.tolist() == [5, 6, 9]
    assert offsets.dtype == torch.int64
    torch.testing.assert_close(points[5:6], clouds[1], rtol=0, atol=0)
    samples = [DataSample(metainfo=dict(file=f"f{i}.ply")) for i in range(3)]
    out = PointDataPreprocessor()(dict(inputs=clouds, data_samples=samples))
    assert out["inputs"]["offsets"].tolist() == [5, 6, 9]
    torch.testing.assert_close(out["inputs"]["points"], torch.cat(clouds), rtol=0, atol=0)
    assert [s.metainfo["file"] for s in out["data_samples"]] == ["f0.ply", "f1.ply", "f2.ply"]


def test_dataset_to_packed_batch(point_root):
    from visionfm.data import collate

    ds = PointSceneDataset(
        str(point_root["scenes"]),
        "train",
        pipeline=[dict(type="PointRandomDropout", ratio=0.5, prob=1.0), dict(PACK)],
    )
    batch = PointDataPreprocessor()(collate([ds[0], ds[1]]))
    points, offsets = batch["inputs"]["points"], batch["inputs"]["offsets"]
    assert offsets.tolist() == [450, 900] and points.shape == (900, 3)
    segments = torch.cat([s.gt_segment for s in batch["data_samples"]])
    assert segments.shape == (900,)
    # each kept point still carries its own label: look it up in the files
    for b, start in enumerate((0, 450)):
        scene = pio.read_pointcept_scene(point_root["scenes"] / "train" / f"scene_{b:04d}")
        rows = {tuple(r): int(y) for r, y in zip(scene["coord"], scene["segment"], strict=True)}
        for p, y in zip(points[start : start + 450].numpy(), segments[start : start + 450]):
            assert rows[tuple(p)] == int(y)


def test_pack_points_refuses_bad_batches():
    samples = [DataSample(metainfo=dict(file=f"f{i}.ply")) for i in range(3)]
    with pytest.raises(ValueError, match=r"cloud 0 \(f0.ply\) has 6.*cloud 2 \(f2.ply\) has 3"):
        pack_points([torch.rand(4, 6), torch.rand(2, 6), torch.rand(2, 3)], samples)
    with pytest.raises(ValueError, match=r"cloud 1 \(f1.ply\).*\(0, 3\)"):
        pack_points([torch.rand(4, 3), torch.rand(0, 3)], samples)
    with pytest.raises(ValueError, match="empty batch"):
        pack_points([])
