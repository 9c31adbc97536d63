"""tools/demo.py --track on the synthetic clip, with a stand-in detector that reports the
clip's ground-truth boxes: frames go through in batches, the mp4 and the MOT-challenge file
are written, and the tracks score close to the ground truth."""

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from visionfm.data import DataSample
from visionfm.data.mot_format import read_mot
from visionfm.evaluation.mot_metrics import evaluate_mot

ROOT = Path(__file__).resolve().parents[2]


def _load_demo():
    spec = importlib.util.spec_from_file_location("_demo_track", ROOT / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class GroundTruthDetector:
    """Answers frame k of the clip (counting calls) with its ground-truth boxes, jittered by a
    pixel, score 0.9, plus a low-score box far from everything; records the batch sizes."""

    prompted = False
    dataset_meta = {"classes": ("object",)}

    def __init__(self, gt: np.ndarray):
        self.gt, self.frame, self.batches = gt, 0, []
        self.rng = np.random.default_rng(0)

    def __call__(self, inputs, batch_size=1, text=None):
        assert text is None and batch_size == len(inputs)
        self.batches.append(len(inputs))
        samples = []
        for image in inputs:
            assert image.ndim == 3 and image.dtype == np.uint8
            self.frame += 1
            rows = self.gt[self.gt[:, 0] == self.frame]
            boxes = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], 1)
            boxes = np.concatenate([boxes + self.rng.normal(0, 1, boxes.shape), [[0, 0, 4, 4]]])
            sample = DataSample(metainfo={"classes": self.dataset_meta["classes"]})
            sample.pred_instances = InstanceData(
                bboxes=torch.tensor(boxes, dtype=torch.float32),
                scores=torch.tensor([0.9] * len(rows) + [0.05]),
                labels=torch.zeros(len(boxes), dtype=torch.long),
            )
            samples.append(sample)
        return samples


def test_track_writes_the_video_and_tracks_that_score_as_ground_truth(
    synthetic_root, tmp_path, monkeypatch
):
    video = synthetic_root / "videos" / "val" / "video_000.mp4"
    gt = read_mot(video.with_suffix(".txt"))
    detector = GroundTruthDetector(gt)
    demo = _load_demo()
    monkeypatch.setattr(demo, "Inferencer", lambda *args, **kwargs: detector)
    out = tmp_path / "out"
    argv = ["tools/demo.py", "cfg.py", "x.pth", str(video), "--out", str(out), "--track"]
    monkeypatch.setattr(sys, "argv", [*argv, "--batch-size", "4"])
    demo.main()

    num_frames = int(gt[:, 0].max())
    assert detector.batches == [4] * (num_frames // 4) + (
        [num_frames % 4] if num_frames % 4 else []
    )
    capture = cv2.VideoCapture(str(out / "video_000.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == num_frames
    tracks = read_mot(out / "video_000.txt")
    assert set(tracks[:, 0]) <= set(range(1, num_frames + 1))
    scores = evaluate_mot({"v": gt}, {"v": tracks})["v"]
    # not perfect: a visible box jumps when another object passes in front (a switch, and
    # Kalman-smoothed boxes below IoU 0.5 for a few frames)
    assert scores["IDSW"] <= 1, scores
    assert scores["MOTA"] > 0.9 and scores["IDF1"] > 0.8, scores


def test_track_is_refused_with_a_pose_model(monkeypatch, capsys):
    argv = ["tools/demo.py", "a.py", "a.pth", "v.mp4", "--track", "--pose-config", "p.py"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit):
        _load_demo().main()
    assert "--track follows a detector's boxes" in capsys.readouterr().err
