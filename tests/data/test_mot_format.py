"""MOT-challenge text files: written and read back, bad lines refused by file and line."""

import numpy as np
import pytest

from visionfm.data.mot_format import read_mot, write_mot


def test_write_then_read(tmp_path):
    path = tmp_path / "seq.txt"
    frames = [
        {"ids": [2, 1], "bboxes": [[10, 20, 40, 80], [0, 0, 5, 5]], "scores": [0.9, 0.5]},
        {"ids": [], "bboxes": np.zeros((0, 4))},
        {"ids": [1], "bboxes": [[1.5, 2.5, 11.5, 12.5]]},
    ]
    write_mot(path, frames)
    assert path.read_text().splitlines()[0] == "1,2,10.00,20.00,30.00,60.00,0.9000,-1,-1,-1"
    np.testing.assert_allclose(
        read_mot(path),
        [[1, 1, 0, 0, 5, 5, 0.5], [1, 2, 10, 20, 30, 60, 0.9], [3, 1, 1.5, 2.5, 10, 10, 1]],
    )


@pytest.mark.parametrize(
    "line, message",
    [
        ("1,2,3", "at least 6 numbers"),
        ("1,a,0,0,5,5", "at least 6 numbers"),
        ("0,1,0,0,5,5,1", "frame .from 1. and id must be integers"),
        ("1,1.5,0,0,5,5,1", "must be integers"),
        ("1,1,0,0,0,5,1", "no area"),
        ("1,1,0,0,5,5,1", "id 1 is already in frame 1 .line 1."),
    ],
)
def test_bad_lines_are_refused_by_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(f"1,1,0,0,5,5,1\n\n{line}\n")
    with pytest.raises(ValueError, match=f"bad.txt:3: .*{message}"):
        read_mot(path)


def test_ignored_ground_truth_rows_are_dropped(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,0,0,5,5,1,-1,-1,-1\n1,2,0,0,5,5,0,-1,-1,-1\n")
    assert read_mot(path)[:, 1].tolist() == [1]
