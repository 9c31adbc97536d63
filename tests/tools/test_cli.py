"""A mistake the user can fix ends a tool with one line on stderr, not a traceback."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/dino/dino_vit-t_synthetic.py"


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )


def test_a_config_typo_is_one_line():
    proc = _run("tools/print_config.py", CONFIG, "--cfg-options", "train_cfg.max_epoch=1")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train_cfg.max_epoch:")
    assert "Did you mean 'max_epochs'" in lines[0] and CONFIG in lines[0]


def test_a_bad_checkpoint_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not a checkpoint")
    proc = _run(
        "tools/train.py",
        CONFIG,
        "--work-dir",
        str(tmp_path / "work"),
        "--cfg-options",
        f"model.backbone.pretrained={bad}",
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(bad) in errors[0] and "cannot read checkpoint" in errors[0]
    assert "Traceback" not in proc.stderr


def test_visionfm_debug_shows_the_traceback():
    env = {**os.environ, "VISIONFM_DEBUG": "1"}
    proc = _run("tools/print_config.py", CONFIG, "--cfg-options", "data_rot=x", env=env)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "data_root" in proc.stderr
