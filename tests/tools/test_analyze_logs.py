"""tools/analyze_logs.py reads mmengine's text logs: iterations, lr, loss and metric vs minutes,
over the runs of a work dir (a training continued with --resume)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from analyze_logs import parse_log, read_work_dir  # noqa: E402

LOG = """\
2026/11/21 10:00:00 - mmengine - INFO - Checkpoints will be saved to /w.
2026/11/21 10:00:50 - mmengine - INFO - Epoch(train) [1][ 25/50]  lr: 1.0000e-04  eta: 0:01:00  time: 2.0000  data_time: 0.1  loss: 3.5000  d0.loss_cls: 1.0
2026/11/21 10:01:40 - mmengine - INFO - Epoch(train) [1][ 50/50]  lr: 2.0000e-04  eta: 0:00:00  time: 2.0000  data_time: 0.1  loss: 2.5000  d0.loss_cls: 0.9
2026/11/21 10:02:00 - mmengine - INFO - Epoch(val) [1][5/5]    coco/bbox_mAP: 0.2500  coco/bbox_mAP_50: 0.5000  data_time: 0.01  time: 0.2
"""


def test_parse_log(tmp_path):
    path = tmp_path / "run.log"
    path.write_text(LOG)
    train, val = parse_log(str(path), "coco/bbox_mAP")
    assert [(r["epoch"], r["iter"]) for r in train] == [(1, 25), (1, 50)]
    assert [r["loss"] for r in train] == [3.5, 2.5]
    assert train[1]["lr"] == 2e-4
    # training started 25 iterations x 2 s before the first line: 10:00:00
    assert train[0]["minutes"] == 50 / 60
    assert val == [
        dict(
            epoch=1,
            minutes=2.0,
            **{"coco/bbox_mAP": 0.25, "coco/bbox_mAP_50": 0.5, "data_time": 0.01, "time": 0.2},
        )
    ]


def test_cli_writes_png_and_table(tmp_path):
    run = tmp_path / "work" / "20261121_100000"
    run.mkdir(parents=True)
    (run / "20261121_100000.log").write_text(LOG)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools/analyze_logs.py"),
            str(tmp_path / "work"),
            "--md",
            str(tmp_path / "t.md"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| 1 | 2.0 | 0.250 | 0.500 |" in out
    assert (tmp_path / "work" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "t.md").read_text().startswith("| epoch |")


def _line(stamp: str, text: str) -> str:
    return f"2026/11/21 {stamp} - mmengine - INFO - {text}\n"


def _train(stamp: str, epoch: int, it: int, loss: float) -> str:
    text = f"Epoch(train) [{epoch}][{it:3d}/50]  lr: 1.0000e-04  eta: 0:01:00  time: 2.0000  data_time: 0.1  loss: {loss}"
    return _line(stamp, text)


def _val(stamp: str, epoch: int, ap: float) -> str:
    return _line(
        stamp, f"Epoch(val) [{epoch}][5/5]    coco/bbox_mAP: {ap}  data_time: 0.01  time: 0.2"
    )


def test_a_resumed_training_is_read_from_every_run_of_the_work_dir(tmp_path):
    """Run 1 trains epochs 1-2 (2 min each), starts epoch 3 and is stopped; run 2, started two
    hours later with --resume from epoch_2.pth, redoes epoch 3; then tools/test.py logs into
    the work dir too. The curve has epochs 1-3, epoch 3 from run 2, and 6 minutes of
    training (the gap and the redone part of epoch 3 not counted)."""
    runs = {
        "20261121_100000": [
            _line("10:00:00", "Checkpoints will be saved to /w."),
            _train("10:00:50", 1, 25, 3.5),
            _train("10:01:40", 1, 50, 3.0),
            _val("10:02:00", 1, 0.1),
            _train("10:02:50", 2, 25, 2.5),
            _train("10:03:40", 2, 50, 2.0),
            _val("10:04:00", 2, 0.2),
            _train("10:04:50", 3, 25, 9.9),
        ],
        "20261121_120000": [
            _line("12:00:00", "resumed epoch: 2, iter: 100"),
            _train("12:00:50", 3, 25, 1.5),
            _train("12:01:40", 3, 50, 1.0),
            _val("12:02:00", 3, 0.3),
        ],
        "20261121_130000": [_line("13:00:00", "Epoch(test) [5/5]    coco/bbox_mAP: 0.3000")],
    }
    for stamp, lines in runs.items():
        (tmp_path / stamp).mkdir()
        (tmp_path / stamp / f"{stamp}.log").write_text("".join(lines))
    train, val = read_work_dir(str(tmp_path), "coco/bbox_mAP")
    assert [r["iter"] for r in train] == [25, 50, 75, 100, 125, 150]
    assert [r["loss"] for r in train] == [3.5, 3.0, 2.5, 2.0, 1.5, 1.0]
    assert [round(r["minutes"] * 60) for r in train] == [50, 100, 170, 220, 290, 340]
    assert [(r["epoch"], r["minutes"], r["coco/bbox_mAP"]) for r in val] == [
        (1, 2.0, 0.1),
        (2, 4.0, 0.2),
        (3, 6.0, 0.3),
    ]
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/analyze_logs.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| 1 | 2.0 | 0.100 |\n| 2 | 4.0 | 0.200 |\n| 3 | 6.0 | 0.300 |" in out
