"""tools/eval_tracking.py on the synthetic clip's ground truth: a table with a row per
sequence and OVERALL; a prediction with an identity switch scores lower; missing predictions
and bad lines are errors naming the file; predictions without ground truth are named."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from visionfm.data.mot_format import read_mot

ROOT = Path(__file__).resolve().parents[2]


def _run(monkeypatch, *args: str) -> None:
    spec = importlib.util.spec_from_file_location("_eval_tracking", ROOT / "tools/eval_tracking.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["tools/eval_tracking.py", *args])
    module.main()


def test_table_of_a_perfect_and_a_switched_prediction(
    synthetic_root, tmp_path, monkeypatch, capsys
):
    gt_dir = synthetic_root / "videos" / "val"
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    gt_file = gt_dir / "video_000.txt"
    rows = read_mot(gt_file)
    switched = rows[:, 0] > rows[:, 0].max() / 2  # object 1 gets a new id half-way
    rows[switched & (rows[:, 1] == 1), 1] = 99
    lines = [f"{int(r[0])},{int(r[1])},{r[2]},{r[3]},{r[4]},{r[5]},1,-1,-1,-1" for r in rows]
    (pred_dir / "video_000.txt").write_text("\n".join(lines) + "\n")
    shutil.copy(gt_file, pred_dir / "other_clip.txt")
    out = tmp_path / "scores.json"
    _run(monkeypatch, str(pred_dir), str(gt_dir), "--out", str(out))
    printed = capsys.readouterr().out
    assert "skipped (no ground truth" in printed and "other_clip.txt" in printed
    table = [line for line in printed.splitlines() if line.startswith("| video_000")]
    assert len(table) == 1 and "| OVERALL |" in printed
    scores = json.loads(out.read_text())["video_000"]
    gt_count = len(read_mot(gt_file))
    assert scores["IDSW"] == 1 and scores["GT"] == gt_count
    assert scores["MOTA"] == pytest.approx(1 - 1 / gt_count)
    assert scores["IDF1"] < 1 and scores["HOTA"] < 1 and scores["DetA"] == pytest.approx(1.0)
    cells = table[0].split("|")[2:-1]  # HOTA ... GT, fractions in percent
    assert float(cells[3]) == pytest.approx(100 * scores["MOTA"], abs=0.05)
    assert int(cells[-1]) == gt_count


def test_missing_predictions_and_bad_lines_are_errors(synthetic_root, tmp_path, monkeypatch):
    gt_dir = synthetic_root / "videos" / "val"
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    with pytest.raises(SystemExit, match=r"no predictions for 1 of 1 sequences: .*video_000.txt"):
        _run(monkeypatch, str(pred_dir), str(gt_dir))
    (pred_dir / "video_000.txt").write_text("1,1,0,0,5,5,1\n1,1,0,0,5,-5,1\n")
    with pytest.raises(SystemExit, match=r"video_000.txt:2: the box has no area"):
        _run(monkeypatch, str(pred_dir), str(gt_dir))
