"""A shipped config copied out of configs/ loads as the original does (its relative ``_base_``
is found in configs/); a ``_base_`` found nowhere is one line naming where it was looked for."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from visionfm.engine import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@pytest.mark.parametrize(
    "name",
    [
        "custom/dino_vit-t_custom-coco.py",  # _base_ "../dino/dino_vit-t_synthetic.py"
        "dino/dino_vitdet-l_coco.py",  # _base_ "./dino_vitdet-b_coco.py"
    ],
)
def test_a_copied_config_loads_as_the_original(tmp_path, name):
    copy = tmp_path / "my_config.py"
    shutil.copy(CONFIGS / name, copy)
    assert load_config(str(copy)).to_dict() == load_config(str(CONFIGS / name)).to_dict()


def test_a_base_found_nowhere_is_one_line(tmp_path):
    config = tmp_path / "my_config.py"
    config.write_text('_base_ = ["../dino/dino_vit-t_synthetc.py"]\n')
    proc = subprocess.run(
        [sys.executable, "tools/train.py", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    looked_at = (tmp_path / "../dino/dino_vit-t_synthetc.py").resolve()
    assert proc.stderr.splitlines() == [
        f"error: {config}: _base_ '../dino/dino_vit-t_synthetc.py' is not at {looked_at}, nor from a "
        f"folder of {CONFIGS}; give its path relative to this file or absolute"
    ]
