"""tools/analyze_logs.py reads mmengine's text log: iterations, lr, loss and metric vs minutes."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from analyze_logs import parse_log  # noqa: E402

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
    assert [r["iter"] for r in train] == [25, 50]
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
