"""tools/demo.py with --pose-config: --cfg-options reach the pose model too, and
--pose-cfg-options the pose model alone."""

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from visionfm.apis import inferencer as inferencer_module

ROOT = Path(__file__).resolve().parents[2]
DET_CONFIG = "configs/dino/dino_vit-t_synthetic.py"
POSE_CONFIG = "configs/vitpose/vitpose_vit-t_synthetic.py"


def _load_demo():
    spec = importlib.util.spec_from_file_location("_demo_tool", ROOT / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo_run(tmp_path, monkeypatch):
    """Runs the demo with an untrained detector's checkpoint on a small image; returns the
    Inferencers it built, detector first."""
    built = []

    class Recording(inferencer_module.Inferencer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    detector = Recording(DET_CONFIG, device="cpu")
    ckpt = tmp_path / "det.pth"
    torch.save({"state_dict": detector.model.state_dict()}, ckpt)
    built.clear()
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8))
    demo = _load_demo()
    monkeypatch.setattr(demo, "Inferencer", Recording)

    def run(*options: str) -> list:
        common = [DET_CONFIG, str(ckpt), str(image), "--out", str(tmp_path / "out")]
        pose = ["--pose-config", POSE_CONFIG, "--person-class", "1", "--device", "cpu"]
        monkeypatch.setattr(sys, "argv", ["tools/demo.py", *common, *pose, *options])
        demo.main()
        assert (tmp_path / "out" / "img.png").is_file()
        return list(built)

    return run


def test_cfg_options_apply_to_the_pose_model_too(demo_run):
    det, pose = demo_run("--cfg-options", "model.backbone.drop_path_rate=0.05")
    assert det.cfg.model.backbone.drop_path_rate == 0.05
    assert pose.cfg.model.backbone.drop_path_rate == 0.05  # the pose config says 0.0


def test_pose_cfg_options_apply_to_the_pose_model_alone_after_cfg_options(demo_run):
    det, pose = demo_run(
        "--cfg-options",
        "model.backbone.drop_path_rate=0.05",
        "--pose-cfg-options",
        "model.backbone.drop_path_rate=0.2",
        "model.head.sigma=2.5",
    )
    assert det.cfg.model.backbone.drop_path_rate == 0.05
    assert pose.cfg.model.backbone.drop_path_rate == 0.2 and pose.cfg.model.head.sigma == 2.5


def test_pose_cfg_options_without_pose_config_are_refused(tmp_path, monkeypatch, capsys):
    argv = ["tools/demo.py", DET_CONFIG, "x.pth", "img.png", "--pose-cfg-options", "a=1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit):
        _load_demo().main()
    assert "--pose-cfg-options is for the model of --pose-config" in capsys.readouterr().err
