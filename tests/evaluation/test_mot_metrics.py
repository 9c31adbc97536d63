"""Tracking scores: hand-computed MOTA / IDF1 / HOTA cases, motmetrics' MOTA / IDF1 held equal
to trackeval's CLEAR / Identity on a tracker's output, the synthetic clips' ground truth
scored against itself and against its COCO-VID json."""

import json

import numpy as np
import pytest

from visionfm.data.mot_format import read_mot
from visionfm.evaluation.mot_metrics import MOT_COLUMNS, evaluate_mot
from visionfm.tracking import ByteTracker


def _rows(*boxes) -> np.ndarray:
    """(frame, id, x, y, w, h) tuples -> read_mot's (N, 7) rows (conf 1)."""
    return np.array([[*b, 1.0] for b in boxes], np.float64).reshape(-1, 7)


def test_an_identity_switch_by_hand():
    """One object seen perfectly in 2 frames, by track 5 then track 6. MOTA = 1 - IDSW / GT =
    1/2; IDF1 = 2 IDTP / (2 GT) = 1/2 (track 5 <-> the object for one frame); every alpha: DetA
    = 1, and each true positive's association score is 1 / (1 + 1 + 0): AssA = 1/2, HOTA =
    sqrt(1/2)."""
    gt = _rows((1, 1, 0, 0, 10, 10), (2, 1, 0, 0, 10, 10))
    pred = _rows((1, 5, 0, 0, 10, 10), (2, 6, 0, 0, 10, 10))
    scores = evaluate_mot({"seq": gt}, {"seq": pred})["seq"]
    assert list(scores) == list(MOT_COLUMNS)
    assert scores["MOTA"] == pytest.approx(0.5) and scores["IDF1"] == pytest.approx(0.5)
    assert scores["IDSW"] == 1 and scores["FP"] == 0 and scores["FN"] == 0 and scores["GT"] == 2
    assert scores["DetA"] == pytest.approx(1.0) and scores["AssA"] == pytest.approx(0.5)
    assert scores["HOTA"] == pytest.approx(np.sqrt(0.5))


def test_hota_sweeps_the_localisation_threshold_by_hand():
    """Boxes of IoU 0.625 (10 x 6.25 inside 10 x 10) with the right identity: a match at the
    12 thresholds 0.05..0.60, none at the 7 from 0.65: HOTA = DetA = AssA = 12 / 19; at IoU
    0.5 MOTA and IDF1 are perfect. A second, empty-handed sequence: all its boxes missed."""
    gt = _rows((1, 1, 0, 0, 10, 10), (2, 1, 0, 0, 10, 10))
    pred = _rows((1, 3, 0, 0, 10, 6.25), (2, 3, 0, 0, 10, 6.25))
    scores = evaluate_mot({"a": gt}, {"a": pred})["a"]
    assert scores["HOTA"] == pytest.approx(12 / 19)
    assert scores["DetA"] == pytest.approx(12 / 19)
    assert scores["MOTA"] == pytest.approx(1.0) and scores["IDF1"] == pytest.approx(1.0)
    both = evaluate_mot({"a": gt, "b": gt}, {"a": pred, "b": _rows()})
    assert both["b"]["FN"] == 2 and both["b"]["MOTA"] == pytest.approx(0.0)
    assert both["OVERALL"]["MOTA"] == pytest.approx(0.5)  # 1 - 2 FN / 4 GT
    assert both["OVERALL"]["DetA"] == pytest.approx(12 / 19 / 2)  # TP / (TP + FN) per alpha


def _noisy_tracks(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of 4 objects moving for 30 frames, and ByteTracker's tracks of jittered,
    sometimes missing detections of them plus false positives, two of them swapped."""
    rng = np.random.default_rng(seed)
    start, velocity = rng.uniform(20, 200, (4, 2)), rng.uniform(-4, 4, (4, 2))
    tracker, gt, pred = ByteTracker(), [], []
    for frame in range(1, 31):
        xy = start + velocity * frame
        seen = rng.uniform(size=4) > 0.15
        boxes = np.concatenate([xy, xy + 30], 1)
        gt += [(frame, i + 1, *xy[i], 30, 30) for i in range(4)]
        detections = boxes[seen] + rng.normal(0, 2, (seen.sum(), 4))
        ghost = rng.uniform(0, 200, (1, 2))  # a false positive somewhere
        detections = np.concatenate([detections, np.concatenate([ghost, ghost + 25], 1)])
        out = tracker.update(detections, rng.uniform(0.55, 1.0, len(detections)))
        pred += [(frame, i, *b[:2], *(b[2:] - b[:2])) for i, b in zip(out["ids"], out["bboxes"])]
    pred = _rows(*pred)
    late = pred[:, 0] > 15  # tracks 1 and 2 trade objects from frame 16: identity switches
    pred[late, 1] = np.select([pred[late, 1] == 1, pred[late, 1] == 2], [2, 1], pred[late, 1])
    return _rows(*gt), pred


def test_motmetrics_and_trackeval_agree_on_mota_and_idf1():
    from trackeval.metrics import CLEAR, Identity

    from visionfm.evaluation import mot_metrics

    gt, pred = _noisy_tracks(0)
    scores = evaluate_mot({"s": gt}, {"s": pred})["s"]
    motmetrics, _, box_ious = mot_metrics._libraries()
    _, data = mot_metrics._match_sequence(gt, pred, 0.5, motmetrics, box_ious)
    clear, identity = CLEAR().eval_sequence(data), Identity().eval_sequence(data)
    assert 0.2 < scores["MOTA"] < 0.99  # a case with errors of every kind
    assert scores["FP"] > 0 and scores["FN"] > 0 and scores["IDSW"] >= 2
    assert scores["MOTA"] == pytest.approx(clear["MOTA"])
    assert scores["IDSW"] == clear["IDSW"]
    assert scores["IDF1"] == pytest.approx(identity["IDF1"])


def test_sequences_must_match():
    with pytest.raises(ValueError, match=r"sequences without predictions: \['b'\]"):
        evaluate_mot({"a": _rows(), "b": _rows()}, {"a": _rows()})


def test_synthetic_ground_truth_tracks(synthetic_root):
    """The MOT text beside a clip holds the boxes and instance ids of the COCO-VID json, and
    scores perfectly against itself."""
    video = json.loads((synthetic_root / "annotations" / "videos_val.json").read_text())
    rows = read_mot(synthetic_root / "videos" / "val" / "video_000.txt")
    frames = {im["id"]: im["frame_id"] for im in video["images"]}
    expected = sorted(
        (frames[a["image_id"]] + 1, a["instance_id"], *a["bbox"]) for a in video["annotations"]
    )
    assert len(rows) == len(expected) > 0
    np.testing.assert_allclose(rows[:, :6], np.array(expected), atol=0.006)
    assert len(np.unique(rows[:, 1])) > 0 and rows[:, 0].max() == len(video["images"])
    scores = evaluate_mot({"v": rows}, {"v": rows})["v"]
    assert scores["MOTA"] == scores["IDF1"] == 1.0 and scores["HOTA"] == pytest.approx(1.0)
