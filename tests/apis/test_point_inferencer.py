"""Inferencer on point files: it dispatches to the point path for a PointModel, predicts what
the model predicts through the dataset path, one label per original point, and refuses bad
files by name."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_point_configs import write_checkpoint, write_config, write_point_data
from mmengine.config import Config
from mmengine.dataset import pseudo_collate

from visionfm.apis import Inferencer, PointInferencer
from visionfm.apis.point_inferencer import is_point_config, list_point_inputs
from visionfm.data.points_io import read_points_file, write_ply, write_points_array
from visionfm.data.synthetic.points import SCENE_CLASSES, SHAPES, make_scene_cloud
from visionfm.registry import DATASETS
from visionfm.visualization.points import render_points


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("points")
    data = write_point_data(root / "data")
    seg = write_config(root / "seg.py", "seg", data)
    cls = write_config(root / "cls.py", "cls", data)
    return dict(
        root=root,
        data=data,
        seg=Inferencer(str(seg), str(write_checkpoint(seg, root / "seg.pth")), device="cpu"),
        cls=Inferencer(
            str(cls),
            str(write_checkpoint(cls, root / "cls.pth", dict(classes=SHAPES))),
            device="cpu",
        ),
    )


def _dataset_prediction(inferencer: PointInferencer, index: int = 0):
    """The model's own prediction for the test dataset's sample ``index``: the dataset reads
    the file and runs the pipeline, the model's test_step predicts (no Inferencer code)."""
    dataset = DATASETS.build(inferencer.cfg.test_dataloader.dataset)
    item = dataset[index]
    return dataset.get_data_info(index)["file"], inferencer.model.test_step(pseudo_collate([item]))


def test_a_point_model_config_gives_a_point_inferencer(setup):
    assert isinstance(setup["seg"], PointInferencer) and isinstance(setup["seg"], Inferencer)
    assert is_point_config(setup["seg"].cfg)
    assert not is_point_config("configs/segformer/segformer_vit-t_synthetic.py")
    assert setup["seg"].fields == ("coord", "color")
    # the classes: the test dataset's metainfo (seg), the checkpoint's dataset_meta (cls)
    assert setup["seg"].dataset_meta["classes"] == SCENE_CLASSES
    assert setup["cls"].dataset_meta["classes"] == SHAPES
    assert (setup["cls"].num_points, setup["cls"].sampling) == (256, "fps")


def test_class_names_from_the_datasets_files_when_the_checkpoint_has_none(setup, tmp_path):
    config = setup["cls"].cfg
    unnamed = write_checkpoint(config.filename, tmp_path / "bare.pth")  # no dataset_meta
    assert Inferencer(config, unnamed, device="cpu").dataset_meta["classes"] == SHAPES
    moved = Config(copy.deepcopy(config.to_dict()))
    moved.test_dataloader.dataset.data_root = str(tmp_path / "elsewhere")
    assert Inferencer(moved, unnamed, device="cpu").dataset_meta["classes"] == tuple(
        str(i) for i in range(len(SHAPES))
    )


def test_pred_segment_covers_every_point_and_equals_the_models_predict(setup):
    inferencer = setup["seg"]
    file, (expected,) = _dataset_prediction(inferencer)
    sample = inferencer(file)  # a Pointcept scene folder
    n = len(read_points_file(file)["coord"])
    assert sample.pred_segment.shape == (n,) and sample.pred_segment.dtype == torch.long
    assert len(sample.metainfo["grid_inverse"]) == n  # grid-sampled: fewer points ran
    assert sample.metainfo["num_points"] < n
    assert len(expected.pred_segment.unique()) > 1  # random weights, yet not one class
    assert torch.equal(sample.pred_segment, expected.pred_segment)
    assert sample.metainfo["classes"] == SCENE_CLASSES
    # the same cloud as a .ply (labels in the file are dropped) and as a dict: same labels
    ply = setup["root"] / "scene.ply"
    write_ply(ply, read_points_file(file))
    assert torch.equal(inferencer(ply).pred_segment, expected.pred_segment)
    (by_dict,) = inferencer([read_points_file(file)])
    assert torch.equal(by_dict.pred_segment, expected.pred_segment)


def test_classification_equals_the_models_predict_after_the_datasets_resize(setup):
    inferencer = setup["cls"]
    file, (expected,) = _dataset_prediction(inferencer, 1)
    # ModelNet40 .txt: comma-separated x,y,z,nx,ny,nz
    with pytest.raises(ValueError, match="expected 3 columns"):
        inferencer.read(file)  # the model's fields are coord alone
    sample = inferencer(inferencer.read(file, fields=("coord", "normal")))
    assert sample.metainfo["num_points"] == 256  # fixed_size as ModelNetDataset
    assert sample.pred_score.shape == (len(SHAPES),)
    torch.testing.assert_close(sample.pred_score.sum(), torch.tensor(1.0))
    assert int(sample.pred_label) == int(expected.pred_label)
    torch.testing.assert_close(sample.pred_score, expected.pred_score)
    # an (N, 3) array is a cloud too
    coord = read_points_file(file, fields=("coord", "normal"), delimiter=",")["coord"]
    torch.testing.assert_close(inferencer(coord).pred_score, expected.pred_score)


def test_visualize_colours_by_predicted_class_or_titles_the_class(setup):
    seg, cls = setup["seg"], setup["cls"]
    scene = make_scene_cloud(np.random.default_rng(3), 1500)
    sample = seg(scene)
    drawn = seg.visualize(scene, sample, size=(120, 160))
    expected = render_points(
        scene["coord"],
        labels=sample.pred_segment.numpy(),
        class_names=SCENE_CLASSES,
        size=(120, 160),
    )
    assert np.array_equal(drawn, expected)
    shape = scene["coord"][:300]
    result = cls(shape)
    label = int(result.pred_label)
    title = f"{SHAPES[label]} {float(result.pred_score[label]):.2f}"
    assert np.array_equal(cls.visualize(shape, result), render_points(shape, title=title))


def test_bad_files_are_refused_by_name(setup, tmp_path):
    inferencer = setup["seg"]
    cloud = make_scene_cloud(np.random.default_rng(0), 500)
    cloud["coord"][7, 1] = np.nan
    nan = tmp_path / "nan.ply"
    write_ply(nan, cloud)
    with pytest.raises(ValueError, match=r"nan\.ply.*NaN"):
        inferencer(nan)
    no_xyz = tmp_path / "no_xyz.ply"
    no_xyz.write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1.0\n"
    )
    with pytest.raises(ValueError, match="no_xyz.ply"):
        inferencer(no_xyz)
    narrow = tmp_path / "narrow.npy"
    write_points_array(narrow, cloud | {"coord": np.zeros((5, 3))}, fields=("coord",))
    with pytest.raises(ValueError, match=r"narrow\.npy.*expected 6 columns"):
        inferencer(narrow)  # the model reads coord + color
    with pytest.raises(ValueError, match=r"must be \(N, 6\)"):
        inferencer(np.zeros((10, 4), np.float32))
    with pytest.raises(TypeError, match="point-cloud paths"):
        inferencer([3])
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        inferencer(tmp_path / "missing.ply")


def test_list_point_inputs(setup, tmp_path):
    scenes = Path(setup["data"]["scenes"]) / "val"
    assert list_point_inputs(scenes / "scene_0000") == [str(scenes / "scene_0000")]
    assert list_point_inputs(scenes) == [str(scenes / "scene_0000"), str(scenes / "scene_0001")]
    (tmp_path / "a.ply").write_bytes(b"")
    (tmp_path / "b.txt").write_text("")
    (tmp_path / "notes.md").write_text("")
    assert list_point_inputs(tmp_path) == [str(tmp_path / "a.ply"), str(tmp_path / "b.txt")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no point clouds"):
        list_point_inputs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such point-cloud file"):
        list_point_inputs(tmp_path / "gone")
