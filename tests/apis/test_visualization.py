"""Drawing helpers: they change the pixels they should and no others."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from visionfm.apis.visualization import (
    colorize_depth,
    draw_instances,
    draw_sem_seg,
    palette,
    side_by_side,
)

NAMES = ("circle", "square", "triangle")


def _gray(h: int = 120, w: int = 160) -> np.ndarray:
    return np.full((h, w, 3), 128, np.uint8)


def test_palette_is_deterministic_distinct_and_prefix_stable():
    p = palette(20)
    assert p.shape == (20, 3) and p.dtype == np.uint8
    assert np.array_equal(p, palette(20)) and np.array_equal(palette(5), p[:5])
    assert len({tuple(c) for c in p}) == 20
    dist = np.abs(p[:8, None].astype(int) - p[None, :8].astype(int)).sum(-1)
    assert dist[~np.eye(8, dtype=bool)].min() > 40  # the first colours are far apart


def test_box_changes_its_border_and_nothing_far_away():
    image = _gray()
    out = draw_instances(image, np.array([[40, 50, 100, 90]]), np.array([1]), NAMES, line_width=1)
    assert np.array_equal(image, _gray())  # input untouched
    changed = (out != image).any(-1)
    assert changed[50:90, 40].all() and changed[50:90, 99].all()  # left / right edges
    assert changed[50, 40:100].all() and changed[89, 40:100].all()  # top / bottom edges
    assert not changed[52:88, 42:98].any()  # inside stays clean
    below = changed[50:]  # rows from the box top down: only the outline
    near = np.zeros_like(below)
    near[:41, 39:101] = True
    assert not (below & ~near).any()
    assert not changed[:, 120:].any() and not changed[95:].any()
    assert changed[:50, 40:100].any()  # the caption sits above the box


def test_mask_overlay_changes_exactly_the_masked_pixels():
    image = _gray()
    box = np.array([[10, 10, 150, 110]])
    mask = np.zeros((1, 120, 160), bool)
    mask[0, 40:80, 30:70] = True
    mask[0, 60:100, 90:95] = True
    plain = draw_instances(image, box, np.array([0]), NAMES)
    overlaid = draw_instances(image, box, np.array([0]), NAMES, masks=mask)
    assert np.array_equal((plain != overlaid).any(-1), mask[0])


def test_keypoints_and_skeleton_are_drawn_only_when_visible():
    image = _gray()
    kpts = np.array([[[30.0, 30.0, 2], [100.0, 90.0, 2], [140.0, 20.0, 0]]])
    out = draw_instances(
        image, np.array([[5, 5, 150, 110]]), np.array([2]), NAMES, keypoints=kpts, skeleton=[(0, 1)]
    )
    changed = (out != image).any(-1)
    assert changed[30, 30] and changed[90, 100] and changed[60, 65]  # points and the link
    assert not changed[20, 140]  # v=0 is not drawn
    with pytest.raises(ValueError, match="0-based"):
        draw_instances(image, np.zeros((1, 4)), [0], NAMES, keypoints=kpts, skeleton=[(1, 3)])


def test_score_threshold_and_bad_labels():
    image = _gray()
    boxes = np.array([[10, 10, 50, 50], [60, 60, 100, 100]])
    out = draw_instances(
        image, boxes, np.array([0, 1]), NAMES, scores=np.array([0.9, 0.2]), score_thr=0.5
    )
    changed = (out != image).any(-1)
    assert changed[10:50, 10].all() and not changed[60:100, 60].any()
    with pytest.raises(ValueError, match="labels"):
        draw_instances(image, boxes, np.array([0, 3]), NAMES)


def test_sem_seg_overlay_changes_exactly_labelled_pixels():
    image = _gray()
    seg = np.full((120, 160), 255, np.int64)  # ignore everywhere ...
    seg[10:50, 10:60] = 0
    seg[60:110, 80:150] = 2
    out = draw_sem_seg(image, seg, NAMES, draw_labels=False)
    assert np.array_equal((out != image).any(-1), seg != 255)
    colors = palette(3)
    assert (np.abs(out[70, 100].astype(int) - (128 + colors[2].astype(int)) / 2) <= 1).all()
    labelled = draw_sem_seg(image, seg, NAMES)
    assert (labelled != out).any()  # class names are written
    with pytest.raises(ValueError):
        draw_sem_seg(image, np.full((120, 160), 3), NAMES)


def _lut_index(rgb: np.ndarray, cmap: int) -> np.ndarray:
    """Nearest colormap entry of each (N, 3) RGB colour."""
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cmap)[0, :, ::-1].astype(int)
    return np.abs(rgb[:, None].astype(int) - lut[None]).sum(-1).argmin(1)


@pytest.mark.parametrize(
    "cmap, code", [("turbo", cv2.COLORMAP_TURBO), ("viridis", cv2.COLORMAP_VIRIDIS)]
)
def test_colorize_depth_is_monotone(cmap, code):
    depth = np.tile(np.linspace(1.0, 5.0, 300), (4, 1))
    depth[0, :10] = 0  # invalid
    out = colorize_depth(depth, cmap=cmap)
    assert out.shape == (4, 300, 3) and out.dtype == np.uint8
    index = _lut_index(out[1], code)
    assert (np.diff(index) >= 0).all() and index[0] == 0 and index[-1] == 255
    assert (out[0, :10] == 0).all()
    clipped = colorize_depth(depth, vmin=2.0, vmax=3.0, cmap=cmap)
    assert (clipped[1, depth[1] <= 2.0] == clipped[1, 0]).all()
    assert (clipped[1, depth[1] >= 3.0] == clipped[1, -1]).all()


def test_side_by_side_places_images_in_a_row():
    a = np.full((30, 20, 3), 10, np.uint8)
    b = np.full((50, 40), 200, np.uint8)
    out = side_by_side(a, b, gap=3)
    assert out.shape == (50, 63, 3)
    assert (out[:30, :20] == 10).all() and (out[30:, :20] == 255).all()
    assert (out[:, 20:23] == 255).all() and (out[:, 23:] == 200).all()
