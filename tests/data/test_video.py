"""Frame sources of the demo: images, folders, videos."""

import cv2
import numpy as np
import pytest

from visionfm.data.video import VideoWriter, open_source


def _write_png(path, channels: int) -> np.ndarray:
    img = np.random.default_rng(0).integers(0, 256, (20, 30, channels), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return img


def test_a_folder_of_rgba_and_rgb_files_gives_rgb_frames_and_one_alpha_note(tmp_path, logs):
    bgra = _write_png(tmp_path / "a.png", 4)
    _write_png(tmp_path / "b.png", 4)
    bgr = _write_png(tmp_path / "c.png", 3)
    frames = list(open_source(str(tmp_path)))
    assert [name.rsplit("/", 1)[-1] for name, _ in frames] == ["a.png", "b.png", "c.png"]
    assert all(frame.shape == (20, 30, 3) and frame.dtype == np.uint8 for _, frame in frames)
    np.testing.assert_array_equal(frames[0][1], bgra[..., 2::-1])  # alpha dropped, BGR -> RGB
    np.testing.assert_array_equal(frames[2][1], bgr[..., ::-1])
    notes = [m for m in logs if "alpha channel" in m]
    assert len(notes) == 1 and "a.png" in notes[0]


def test_an_opaque_image_gives_no_alpha_note(tmp_path, logs):
    _write_png(tmp_path / "c.png", 3)
    assert len(list(open_source(str(tmp_path / "c.png")))) == 1
    assert not [m for m in logs if "alpha" in m]


def test_a_video_round_trips_with_its_fps(tmp_path):
    path = str(tmp_path / "v.mp4")
    with VideoWriter(path, fps=7.0) as writer:
        for i in range(3):
            writer.write(np.full((32, 48, 3), 40 * i, np.uint8))
    source = open_source(path)
    assert source.kind == "video" and source.fps == pytest.approx(7.0) and len(source) == 3
    frames = [frame for _, frame in source]
    assert len(frames) == 3 and frames[0].shape == (32, 48, 3)


def test_a_missing_input_and_an_unknown_kind_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        open_source(str(tmp_path / "nope.jpg"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt"):
        open_source(str(tmp_path / "notes.txt"))
