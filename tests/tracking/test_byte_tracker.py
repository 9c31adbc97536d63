"""ByteTracker on synthetic boxes: two objects crossing keep their ids, the low-score second
stage keeps a track through a stretch of weak detections (and losing it without the second
stage shows the stage matters), ids are never reused, the assignment is optimal, bad input
is refused."""

import itertools

import numpy as np
import pytest

from visionfm.tracking import ByteTracker, linear_assignment


def _box(cx: float, cy: float, w: float, h: float) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_crossing_objects_keep_their_ids():
    """A walks right, B walks left a little lower; while they overlap B is hidden behind A
    (no detection at all). After the crossing each id must still be on its object."""
    tracker = ByteTracker()
    ids_of = {"A": set(), "B": set()}
    hidden = 0
    for t in range(40):
        boxes = {"A": _box(20 + 6 * t, 100, 40, 60), "B": _box(260 - 6 * t, 108, 40, 60)}
        seen = dict(boxes)
        if _iou(boxes["A"], boxes["B"]) > 0.05:
            del seen["B"]
            hidden += 1
        out = tracker.update(np.array(list(seen.values())), np.full(len(seen), 0.9))
        assert len(out["ids"]) == len(seen)
        for name, box in seen.items():  # the output box on this object names its id
            k = int(np.argmax([_iou(box, b) for b in out["bboxes"]]))
            assert _iou(box, out["bboxes"][k]) > 0.7
            ids_of[name].add(int(out["ids"][k]))
    assert hidden >= 4  # the test covers an occluded crossing
    assert ids_of == {"A": {1}, "B": {2}}


def _turning_object(weak_score: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """One 60 px box moving right for 10 frames, then down for 20; detected with score 0.9
    except frames 10..19 (the turn), where it is seen only with ``weak_score``."""
    frames, x, y = [], 50.0, 50.0
    for t in range(30):
        if t < 10:
            x += 6
        else:
            y += 6
        score = weak_score if 10 <= t < 20 else 0.9
        frames.append((np.array([_box(x, y, 60, 60)]), np.array([score])))
    return frames


def test_low_score_detections_keep_the_track_through_the_second_stage():
    tracker = ByteTracker(high_thr=0.5, low_thr=0.1)
    outputs = [tracker.update(boxes, scores) for boxes, scores in _turning_object(0.3)]
    assert [o["ids"].tolist() for o in outputs] == [[1]] * 30  # followed in every frame
    assert outputs[15]["scores"].tolist() == [0.3]


def test_without_the_second_stage_the_same_sequence_loses_the_id():
    tracker = ByteTracker(high_thr=0.5, low_thr=0.5)  # low-score detections unused
    outputs = [tracker.update(boxes, scores) for boxes, scores in _turning_object(0.3)]
    assert all(len(o["ids"]) == 0 for o in outputs[10:20])
    # the lost track coasted right while the object went down: a new id after the turn
    assert outputs[9]["ids"].tolist() == [1] and outputs[-1]["ids"].tolist() == [2]


def test_tentative_tracks_and_ids_are_never_reused():
    tracker = ByteTracker(max_lost_frames=3)
    box = np.array([_box(100, 100, 40, 40)])
    assert tracker.update(box, [0.9])["ids"].tolist() == [1]  # frame 1: confirmed at once
    for _ in range(5):  # gone for longer than the buffer: removed
        tracker.update(np.zeros((0, 4)), [])
    assert tracker.tracks == []
    assert tracker.update(box, [0.9])["ids"].tolist() == []  # tentative: no id yet
    assert tracker.update(box, [0.9])["ids"].tolist() == [2]  # confirmed: a new id, not 1
    # a one-frame false positive never takes an id
    tracker.update(np.array([box[0], _box(300, 300, 40, 40)]), [0.9, 0.9])
    tracker.update(box, [0.9])
    far = np.array([box[0], _box(500, 100, 40, 40)])
    tracker.update(far, [0.9, 0.9])
    assert tracker.update(far, [0.9, 0.9])["ids"].tolist() == [2, 3]
    # detections of another label do not continue a track
    assert tracker.update(box, [0.9], labels=[1])["ids"].tolist() == []


def _brute_force(cost: np.ndarray, max_cost: float) -> float:
    """The least total cost over all partial matchings (pairs <= max_cost; every unmatched row
    and column costs max_cost / 2)."""
    n, m = cost.shape
    best = (n + m) * max_cost / 2
    for k in range(1, min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                pairs = cost[list(rows), list(cols)]
                if np.all(pairs <= max_cost):
                    best = min(best, pairs.sum() + (n + m - 2 * k) * max_cost / 2)
    return best


def test_linear_assignment_is_the_optimal_partial_matching():
    rng = np.random.default_rng(0)
    for n, m in [(3, 4), (4, 2), (1, 1), (4, 4), (0, 3)]:
        cost = rng.uniform(0, 1, (n, m))
        matches, rows, cols = linear_assignment(cost, 0.6)
        assert sorted(rows + [r for r, _ in matches]) == list(range(n))
        assert sorted(cols + [c for _, c in matches]) == list(range(m))
        total = sum(cost[r, c] for r, c in matches) + (len(rows) + len(cols)) * 0.3
        assert total == pytest.approx(_brute_force(cost, 0.6))
        assert all(cost[r, c] <= 0.6 for r, c in matches)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="low_thr <= high_thr"):
        ByteTracker(high_thr=0.3, low_thr=0.5)
    tracker = ByteTracker()
    with pytest.raises(ValueError, match="2 boxes, 1 scores"):
        tracker.update(np.array([_box(10, 10, 4, 4), _box(30, 30, 4, 4)]), [0.9])
    with pytest.raises(ValueError, match="x2 > x1"):
        tracker.update(np.array([[10.0, 10.0, 5.0, 20.0]]), [0.9])
