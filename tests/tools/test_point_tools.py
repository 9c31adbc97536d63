"""The tools on point clouds: demo (PNG, turntable mp4, folders with bad files),
browse_dataset (ground truth after the pipeline) and test.py (metric, --show-dir renders)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _tiny_point_configs import write_checkpoint, write_config, write_point_data

from visionfm.apis import Inferencer
from visionfm.data.points_io import read_points_file, write_ply
from visionfm.data.synthetic.points import SCENE_CLASSES, SHAPES, make_scene_cloud
from visionfm.visualization import palette

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("point_tools")
    data = write_point_data(root / "data")
    seg = write_config(root / "seg.py", "seg", data)
    cls = write_config(root / "cls.py", "cls", data)
    return dict(
        root=root,
        data=data,
        seg=(seg, write_checkpoint(seg, root / "seg.pth")),
        cls=(cls, write_checkpoint(cls, root / "cls.pth", dict(classes=SHAPES))),
    )


def _tool(name: str, *args, monkeypatch) -> None:
    """Run tools/<name>.py in this process with ``args``."""
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    runpy.run_path(str(ROOT / "tools" / f"{name}.py"), run_name="__main__")


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_demo_writes_the_drawn_prediction_and_a_turntable(setup, tmp_path, monkeypatch):
    config, checkpoint = setup["seg"]
    cloud = make_scene_cloud(np.random.default_rng(5), 1500)
    write_ply(tmp_path / "room.ply", cloud)
    out = tmp_path / "out"
    _tool("demo", config, checkpoint, tmp_path / "room.ply", "--out", out, "--turntable",
          "--frames", 6, "--device", "cpu", monkeypatch=monkeypatch)  # fmt: skip
    inferencer = Inferencer(str(config), str(checkpoint), device="cpu")
    read = read_points_file(tmp_path / "room.ply")
    expected = inferencer.visualize(read, inferencer(read))
    assert np.array_equal(_read_rgb(out / "room.png"), expected)  # PNG: lossless
    assert _frames(out / "room.mp4") == 6


def test_demo_on_a_folder_skips_bad_files_by_name(setup, tmp_path, monkeypatch, capsys):
    config, checkpoint = setup["cls"]
    folder = tmp_path / "clouds"
    folder.mkdir()
    good = make_scene_cloud(np.random.default_rng(1), 400)
    write_ply(folder / "good.ply", good)
    bad = {**good, "coord": good["coord"].copy()}
    bad["coord"][3] = np.nan
    write_ply(folder / "nan.ply", bad)
    (folder / "no_xyz.ply").write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1.0\n"
    )
    np.save(folder / "array.npy", good["coord"])
    out = tmp_path / "out"
    _tool("demo", config, checkpoint, folder, "--out", out, "--device", "cpu",
          monkeypatch=monkeypatch)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["array.png", "good.png"]
    text = capsys.readouterr()
    said = text.out + text.err
    assert f"skipped {folder / 'nan.ply'}" in said and "NaN" in said
    assert f"skipped {folder / 'no_xyz.ply'}" in said
    assert "2 of 4 point clouds skipped" in said


def test_demo_on_one_bad_file_is_an_error_naming_it(setup, tmp_path, monkeypatch):
    config, checkpoint = setup["cls"]
    cloud = make_scene_cloud(np.random.default_rng(1), 300)
    cloud["coord"][0, 0] = np.inf
    write_ply(tmp_path / "broken.ply", cloud)
    with pytest.raises(SystemExit, match=r"error: .*broken\.ply.*NaN / inf"):
        _tool("demo", config, checkpoint, tmp_path / "broken.ply", "--out", tmp_path / "out",
              monkeypatch=monkeypatch)  # fmt: skip


def test_browse_dataset_renders_point_ground_truth(setup, tmp_path, monkeypatch):
    config, _ = setup["seg"]
    out = tmp_path / "seg"
    _tool("browse_dataset", config, "--out", out, "--split", "test", monkeypatch=monkeypatch)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["0000_scene_0000.png", "0001_scene_0001.png"]
    drawn = _read_rgb(out / names[0]).reshape(-1, 3)
    segment = read_points_file(Path(setup["data"]["scenes"]) / "val" / "scene_0000")["segment"]
    colours = palette(len(SCENE_CLASSES))
    for label in np.unique(segment):  # each class's legend box, in its mask colour
        assert (drawn == colours[label]).all(-1).sum() > 20, SCENE_CLASSES[label]
    absent = [c for c in range(len(SCENE_CLASSES)) if c not in segment]
    assert all((drawn == colours[c]).all(-1).sum() < 20 for c in absent)

    config, _ = setup["cls"]
    _tool("browse_dataset", config, "--out", tmp_path / "cls", "--split", "test", "--num", 2,
          monkeypatch=monkeypatch)  # fmt: skip
    assert len(list((tmp_path / "cls").glob("*.png"))) == 2


# in one process the second runner reuses mmengine's Visualizer named 'visualizer' (warned)
@pytest.mark.filterwarnings("ignore:.*instance named of visualizer:UserWarning")
@pytest.mark.parametrize("task, metric", [("seg", "seg/mIoU"), ("cls", "cls/acc")])
def test_test_tool_evaluates_and_renders_point_predictions(
    setup, tmp_path, task, metric, monkeypatch, capsys
):
    config, checkpoint = setup[task]
    shows = tmp_path / "show"
    # a logger of its own (by default runs of the same second share one)
    _tool("test", config, checkpoint, "--show-dir", shows, "--work-dir", tmp_path / "work",
          "--cfg-options", f"experiment_name=point_test_{task}",
          monkeypatch=monkeypatch)  # fmt: skip
    assert metric in capsys.readouterr().out
    drawn = sorted(shows.glob("*.png"))
    assert len(drawn) == (2 if task == "seg" else 4)  # one per test cloud
    assert _read_rgb(drawn[0]).shape == (480, 640, 3)
