"""Point-cloud drawing: where points land, which one a pixel shows, their colours, the video."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch

from visionfm.data import DataSample
from visionfm.visualization import palette
from visionfm.visualization.points import (
    IGNORE_COLOR,
    draw_point_sample,
    render_points,
    sample_coords,
    write_turntable,
)

RED, BLUE, BLACK = (255, 0, 0), (0, 0, 255), (0, 0, 0)
WHITE = np.array([255, 255, 255], np.uint8)


def _box_corners(centre) -> np.ndarray:
    """The 8 corners of a 2 x 4 x 6 box around ``centre``: its bounding box's centre."""
    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T
    return np.asarray(centre) + signs * [1.0, 2.0, 3.0]


@pytest.mark.parametrize("projection", ["perspective", "orthographic"])
@pytest.mark.parametrize("view", [(0, 0), (45, 25), (200, -60), (10, 90)])
def test_the_bounding_box_centre_lands_at_the_image_centre(projection, view):
    corners = _box_corners([5.0, -3.0, 2.0])
    coord = np.concatenate([corners, [[5.0, -3.0, 2.0]]])
    colors = np.array([BLACK] * 8 + [RED], np.uint8)
    out = render_points(
        coord, colors=colors, view=view, size=(101, 151), point_radius=0, projection=projection
    )
    assert out.shape == (101, 151, 3) and out.dtype == np.uint8
    # the centre point is red (shaded by depth, so only its hue is certain)
    r, g, b = out[50, 75].astype(int)
    assert r > 100 and g == 0 and b == 0
    # a single point is its own bounding box: the centre again
    alone = render_points(coord[-1:], colors=colors[-1:], view=view, size=(101, 151))
    assert tuple(alone[50, 75]) == RED


def test_orthographic_hand_case():
    """view (0, 0): the camera on +x looks at -x, +y points right and +z up. The bounding
    sphere (radius 1) spans 90 % of the shorter side: 0.45 * 101 = 45.45 px from the centre."""
    coord = np.array([[0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
    colors = np.array([RED, BLUE, (0, 255, 0), (255, 255, 0)], np.uint8)
    out = render_points(
        coord, colors=colors, view=(0, 0), size=(101, 101), point_radius=0,
        projection="orthographic", legend=False,
    )  # fmt: skip
    assert tuple(out[50, 50 + 45]) == RED  # +y: right
    assert tuple(out[50, 50 - 45]) == BLUE
    assert tuple(out[50 - 45, 50]) == (0, 255, 0)  # +z: up
    assert tuple(out[50 + 45, 50]) == (255, 255, 0)
    assert (out != WHITE).any(-1).sum() == 4  # nothing else drawn


def test_perspective_makes_far_things_smaller():
    """Two equal offsets along y, one near the camera (on +x) and one far: the near one lands
    farther from the image centre."""
    coord = np.array([[1, 0.5, 0], [-1, 0.5, 0], [1, 0, 0], [-1, 0, 0]], np.float64)
    colors = np.array([RED, BLUE, BLACK, BLACK], np.uint8)
    out = render_points(coord, colors=colors, view=(0, 0), size=(201, 201), point_radius=0)
    row = out[100]
    red = np.flatnonzero((row == RED).all(-1))
    blue = np.flatnonzero((row[:, 2] > 0) & (row[:, 0] == 0))
    assert len(red) == 1 and len(blue) == 1
    assert red[0] > blue[0] > 100


@pytest.mark.parametrize("projection", ["perspective", "orthographic"])
def test_a_nearer_point_hides_a_farther_one(projection):
    # both on the camera's line of sight through the centre from view (0, 0) (camera on +x)
    coord = np.array([[-1.0, 0, 0], [1.0, 0, 0]])  # far first: input order must not decide
    colors = np.array([BLUE, RED], np.uint8)
    kwargs = dict(colors=colors, size=(41, 41), point_radius=3, projection=projection)
    front = render_points(coord, view=(0, 0), **kwargs)
    assert tuple(front[20, 20]) == RED  # nearest: unshaded by depth
    back = render_points(coord, view=(180, 0), **kwargs)
    assert tuple(back[20, 20]) == BLUE
    # the hidden splat is the same size: no blue pixel survives around the red one
    assert not ((front[:, :, 2] > 0) & (front[:, :, 0] == 0)).any()


def test_colours_by_label_are_the_palette_and_the_legend_lists_present_classes():
    rng = np.random.default_rng(0)
    n = 60
    # every point in the plane x = 0, seen from +x orthographically: one depth, no shading
    coord = np.stack([np.zeros(n), rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)], 1)
    labels = rng.integers(-1, 5, n)
    labels[:6] = [-1, 0, 1, 2, 3, 4]
    out = render_points(
        coord, labels=labels, view=(0, 0), size=(301, 301), point_radius=0,
        projection="orthographic", legend=False,
    )  # fmt: skip
    # the view is fitted to the bounding box's centre and the bounding sphere's radius
    centre = (coord.min(0) + coord.max(0)) / 2
    scale = 0.45 * 301 / np.linalg.norm(coord - centre, axis=1).max()
    xs = np.round(150 + (coord[:, 1] - centre[1]) * scale).astype(int)
    ys = np.round(150 - (coord[:, 2] - centre[2]) * scale).astype(int)
    colours = np.concatenate([palette(5), [IGNORE_COLOR]]).astype(np.uint8)
    for x, y, label in zip(xs, ys, labels, strict=True):
        pixel = out[y, x]
        # where two points share a pixel either may show; otherwise it is this one's colour
        if ((xs == x) & (ys == y)).sum() == 1:
            assert tuple(pixel) == tuple(colours[label]), (x, y, label)
    # a dataset palette replaces the default one
    own = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15]], np.uint8)
    mine = render_points(coord[1:6], labels=labels[1:6], palette=own, view=(0, 0),
                         point_radius=0, projection="orthographic", legend=False)  # fmt: skip
    drawn = {tuple(c) for c in mine.reshape(-1, 3)} - {(255, 255, 255)}
    assert drawn == {tuple(c) for c in own}

    names = ("floor", "wall", "chair", "table", "lamp")
    legend = render_points(coord, labels=labels, class_names=names, view=(0, 0),
                           size=(301, 301), projection="orthographic", point_radius=0)  # fmt: skip
    corner = legend[:150, :60].reshape(-1, 3)
    for c in palette(5):  # one caption box per class present, in its colour
        assert (corner == c).all(-1).sum() > 20


def test_colors_win_over_labels_and_height_colours_without_either():
    coord = np.array([[0, 0, 0], [0, 0, 1.0]])
    out = render_points(coord, colors=np.array([[10, 20, 30], [10, 20, 30]], np.float32),
                        labels=[0, 1], view=(0, 0), point_radius=0)  # fmt: skip
    # and no legend of the labels' colours is drawn
    assert {tuple(c) for c in out.reshape(-1, 3)} - {(255, 255, 255)} == {(10, 20, 30)}
    heights = render_points(coord, view=(0, 0), point_radius=0, projection="orthographic")
    drawn = {tuple(c) for c in heights.reshape(-1, 3)} - {(255, 255, 255)}
    assert len(drawn) == 2  # low and high ends of the colour map


def test_bad_input_is_refused_with_the_reason():
    coord = np.zeros((4, 3))
    with pytest.raises(ValueError, match="NaN"):
        render_points(np.array([[0, 0, np.nan], [1, 1, 1]]))
    with pytest.raises(ValueError, match=r"\(N > 0, 3\)"):
        render_points(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\(N > 0, 3\)"):
        render_points(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="labels has 3 entries for 4 points"):
        render_points(coord, labels=[0, 1, 2])
    with pytest.raises(ValueError, match=r"colors must have shape \(N, 3\) = \(4, 3\)"):
        render_points(coord, colors=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="projection"):
        render_points(coord, projection="fisheye")


def test_100k_points_render_well_under_a_second():
    rng = np.random.default_rng(0)
    coord = rng.normal(size=(100_000, 3))
    labels = rng.integers(0, 8, 100_000)
    render_points(coord, labels=labels)  # warm-up
    best = min(_timed(render_points, coord, labels=labels) for _ in range(2))
    assert best < 1.0, f"{best:.2f} s"  # ~0.1 s on 2 shared CPU cores


def _timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def test_turntable_has_the_frames_asked_for_and_turns(tmp_path):
    rng = np.random.default_rng(0)
    coord = rng.uniform(-1, 1, (500, 3)) * [1.0, 0.3, 0.5]  # not symmetric under turning
    path = write_turntable(coord, tmp_path / "turn.mp4", frames=8, fps=4, size=(96, 128))
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    assert len(frames) == 8
    assert frames[0].shape == (96, 128, 3)
    first = render_points(coord, view=(45.0, 25.0), size=(96, 128)).astype(float)
    quarter = render_points(coord, view=(135.0, 25.0), size=(96, 128)).astype(float)
    # lossy mp4: frame 0 is near its render and far from a quarter turn's; frame 2 vice versa
    assert np.abs(frames[0] - first).mean() < np.abs(frames[0] - quarter).mean() / 2
    assert np.abs(frames[2] - quarter).mean() < np.abs(frames[2] - first).mean() / 2
    with pytest.raises(ValueError, match="frames"):
        write_turntable(coord, tmp_path / "none.mp4", frames=0)


def test_draw_point_sample_titles_classification_and_colours_segmentation():
    coord = np.array([[0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    cls = DataSample(metainfo=dict(classes=("cone", "cube")))
    cls.pred_label = torch.tensor(1)
    cls.pred_score = torch.tensor([0.25, 0.75])
    titled = draw_point_sample(coord, cls, point_radius=0)
    plain = render_points(coord, point_radius=0)
    assert np.array_equal(titled, draw_point_sample(coord, cls, point_radius=0, title="cube 0.75"))
    assert not np.array_equal(titled, plain)  # the title is drawn
    seg = DataSample()
    seg.gt_segment = torch.tensor([0, 1, 1])
    drawn = draw_point_sample(coord, seg, class_names=("a", "b"), prefix="gt", point_radius=0)
    expect = render_points(coord, labels=[0, 1, 1], class_names=("a", "b"), point_radius=0)
    assert np.array_equal(drawn, expect)


def test_sample_coords_follows_grid_inverse():
    points = torch.tensor([[0.0, 0, 0, 9], [1.0, 1, 1, 9]])  # two voxel samples, one feature
    sample = DataSample(metainfo=dict(grid_inverse=np.array([0, 0, 1, 0, 1])))
    sample.pred_segment = torch.tensor([3, 3, 4, 3, 4])
    coords = sample_coords(points, sample)
    assert np.array_equal(coords, points[[0, 0, 1, 0, 1], :3].numpy())
    sample.pred_segment = torch.tensor([1, 2])
    assert np.array_equal(sample_coords(points, sample), points[:, :3].numpy())
    sample.pred_segment = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match="3 labels but the cloud has 2 points"):
        sample_coords(points, sample)
