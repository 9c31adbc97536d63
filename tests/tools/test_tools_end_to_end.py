"""The command-line tools on a tiny synthetic dataset: train -> test -> demo, as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/dino/dino_vit-t_synthetic.py"


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_test_demo(synthetic_root, tmp_path):
    options = [
        f"data_root={synthetic_root}/",
        "train_cfg.max_epochs=1",
        "train_dataloader.batch_size=4",
        "train_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False",
        "val_dataloader.num_workers=0",
        "val_dataloader.persistent_workers=False",
        "test_dataloader.num_workers=0",
        "test_dataloader.persistent_workers=False",
    ]
    work = tmp_path / "work"
    run("tools/train.py", CONFIG, "--work-dir", str(work), "--cfg-options", *options)
    ckpt = work / "epoch_1.pth"
    assert ckpt.is_file() and (work / "last_checkpoint").read_text().strip().endswith("epoch_1.pth")

    # resume from the newest checkpoint continues to epoch 2
    run(
        "tools/train.py",
        CONFIG,
        "--work-dir",
        str(work),
        "--resume",
        "--cfg-options",
        *options[:1],
        "train_cfg.max_epochs=2",
        *options[2:],
    )
    assert (work / "epoch_2.pth").is_file()

    saved = work / "dino_vit-t_synthetic.py"  # the training run's config, kept by test.py
    trained_config = saved.read_text()
    results, shows = tmp_path / "results.json", tmp_path / "show"
    out = run(
        "tools/test.py",
        CONFIG,
        str(ckpt),
        "--out",
        str(results),
        "--show-dir",
        str(shows),
        "--work-dir",
        str(work),
        "--cfg-options",
        *options,
    )
    assert "coco/bbox_mAP" in out
    preds = json.loads(results.read_text())
    assert isinstance(preds, list) and {"image_id", "category_id", "bbox", "score"} <= set(preds[0])
    assert len(list(shows.glob("*.png"))) == 6
    assert saved.read_text() == trained_config

    image = next((synthetic_root / "images" / "val").glob("*.jpg"))
    demo_out = tmp_path / "demo"
    run(
        "tools/demo.py", CONFIG, str(ckpt), str(image), "--out", str(demo_out), "--score-thr", "0.0"
    )
    drawn = cv2.imread(str(demo_out / (image.stem + ".png")))
    assert drawn.shape == cv2.imread(str(image)).shape

    video = next((synthetic_root / "videos" / "val").glob("*.mp4"))
    run("tools/demo.py", CONFIG, str(ckpt), str(video), "--out", str(demo_out), "--amp")
    src, dst = cv2.VideoCapture(str(video)), cv2.VideoCapture(str(demo_out / (video.stem + ".mp4")))
    for prop in (
        cv2.CAP_PROP_FRAME_COUNT,
        cv2.CAP_PROP_FRAME_WIDTH,
        cv2.CAP_PROP_FRAME_HEIGHT,
        cv2.CAP_PROP_FPS,
    ):
        assert src.get(prop) == dst.get(prop)


def test_num_classes_mismatch_is_refused(synthetic_root, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "tools/train.py",
            CONFIG,
            "--work-dir",
            str(tmp_path),
            "--cfg-options",
            f"data_root={synthetic_root}/",
            "model.head.num_classes=3",
            "model.head.denoising.num_classes=3",
            "train_dataloader.num_workers=0",
            "train_dataloader.persistent_workers=False",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "num_classes is 3 but the train dataset" in proc.stderr
    assert "instances_train.json" in proc.stderr
