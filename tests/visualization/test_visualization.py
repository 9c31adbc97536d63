"""Drawing helpers: they change the pixels they should and no others."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from visionfm.data import DataSample
from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR as DIV
from visionfm.data.video import VideoWriter
from visionfm.visualization import (
    colorize_depth,
    draw_depth,
    draw_instances,
    draw_panoptic_seg,
    draw_sample,
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


# ------------------------------------------------------------------ panoptic, depth, draw_sample
def _panoptic() -> np.ndarray:
    """(120, 160): two 'square' (label 1) instances, 'circle' (0) stuff below, void above."""
    pan = np.full((120, 160), -1, np.int64)
    pan[60:, :] = 0 * DIV  # stuff: instance 0
    pan[10:50, 10:70] = 1 * DIV + 1
    pan[10:50, 90:150] = 1 * DIV + 2
    return pan


def test_panoptic_instances_of_one_class_get_different_shades_of_its_colour():
    image = _gray()
    pan = _panoptic()
    out = draw_panoptic_seg(image, pan, NAMES, draw_labels=False)
    a, b, stuff = out[20, 20], out[20, 100], out[100, 20]  # away from outlines
    assert not np.array_equal(a, b)
    # stuff: the class colour blended in; void: untouched
    blend = np.round(0.4 * 128 + 0.6 * palette(3)[0].astype(float))
    assert (np.abs(stuff.astype(int) - blend) <= 1).all()
    assert (out[5, 80] == 128).all() and (out[:9, :] == 128).all()
    # the same shades for any class colour: the first instance takes the colour itself
    first = np.round(0.4 * 128 + 0.6 * palette(3)[1].astype(float))
    assert (np.abs(a.astype(int) - first) <= 1).all()
    # outlines between segments (and void), white, on both sides of each boundary
    assert (out[10, 30] == 255).all() and (out[49, 30] == 255).all() and (out[60, 5] == 255).all()
    assert (out[30, 75] == 128).all()  # void between the two instances stays
    labelled = draw_panoptic_seg(image, pan, NAMES)
    assert (labelled != out).any()  # class names are written
    with pytest.raises(ValueError, match="outside"):
        draw_panoptic_seg(image, pan + 3 * DIV, NAMES)


def test_draw_depth_adds_a_colour_bar_with_the_range():
    depth = np.tile(np.linspace(1.0, 5.0, 160), (120, 1))
    depth[:, :5] = 0  # invalid: black
    out = draw_depth(depth)
    assert out.shape[1] == 160 and 120 + 12 <= out.shape[0] <= 120 + 40
    assert np.array_equal(out[:120], colorize_depth(depth))
    assert (out[:120, :5] == 0).all()
    bar = out[120:]
    plain = draw_depth(depth, unit="")  # different captions, same colours
    assert (bar != plain[120:]).any()
    assert np.array_equal(bar[:, 70:90], plain[120:, 70:90])  # the middle is plain colour bar


def _sample(**fields) -> DataSample:
    sample = DataSample(metainfo=dict(ori_shape=(120, 160), classes=NAMES))
    for name, value in fields.items():
        setattr(sample, name, value)
    return sample


def test_draw_sample_depth_goes_beside_the_image():
    image = _gray()
    depth = torch.linspace(1.0, 5.0, 160).expand(120, 160).clone()
    out = draw_sample(image, _sample(pred_depth=depth), prefix="pred")
    assert out.shape[1] == 2 * 160 + 4  # image | gap | depth
    assert np.array_equal(out[:120, :160], image)  # nothing drawn over the image
    assert np.array_equal(out[:120, 164:], colorize_depth(depth.numpy()))
    disparity = draw_sample(image, _sample(pred_disparity=depth), prefix="pred")
    assert disparity.shape == out.shape
    gt = draw_sample(image, _sample(gt_depth=depth))  # ground truth: prefix 'gt'
    assert gt.shape == out.shape


def test_draw_sample_sem_seg_colours_the_right_pixels_in_the_dataset_palette():
    image = _gray()
    seg = torch.zeros(120, 160, dtype=torch.long)
    seg[60:, 80:] = 2
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    out = draw_sample(image, _sample(pred_sem_seg=seg), prefix="pred", palette=colors)
    assert out.shape == image.shape
    assert (out[5, 5] == (192, 64, 64)).all()  # class 0 red, blended half way
    assert (out[115, 155] == (64, 64, 192)).all()  # class 2 blue
    # class names come from the sample's metainfo, written on the regions
    plain = draw_sem_seg(image, seg.numpy(), NAMES, palette=colors, draw_labels=False)
    assert (out != plain).any()
    # without any names the labels are numbered rather than failing
    bare = DataSample(metainfo=dict(ori_shape=(120, 160)))
    bare.pred_sem_seg = seg
    assert draw_sample(image, bare, prefix="pred").shape == image.shape


def test_draw_sample_panoptic_two_instances_two_colours():
    image = _gray()
    pan = torch.from_numpy(_panoptic())
    out = draw_sample(image, _sample(pred_panoptic_seg=pan), prefix="pred")
    assert out.shape == image.shape
    assert not np.array_equal(out[15, 15], out[15, 95])  # corners, away from the captions
    assert (out[5, 80] == 128).all()  # void


def test_draw_sample_one_panel_per_result_and_a_fixed_size():
    """A Mask2Former-like sample: instances, semantic and panoptic panels, then depth; an
    empty instance set keeps its panel so video frames keep one size."""
    image = _gray()
    masks = torch.zeros(1, 120, 160, dtype=torch.bool)
    masks[0, 10:50, 10:70] = True
    instances = InstanceData(
        bboxes=torch.tensor([[10.0, 10.0, 70.0, 50.0]]),
        labels=torch.tensor([1]),
        scores=torch.tensor([0.9]),
        masks=masks,
    )
    fields = dict(
        pred_instances=instances,
        pred_sem_seg=torch.zeros(120, 160, dtype=torch.long),
        pred_panoptic_seg=torch.from_numpy(_panoptic()),
        pred_depth=torch.full((120, 160), 2.0),
    )
    out = draw_sample(image, _sample(**fields), prefix="pred")
    assert out.shape[1] == 4 * 160 + 3 * 4 and out.shape[0] > 120
    assert (out[30, 30] != 128).any()  # the instance mask in the first panel
    empty = dict(fields, pred_instances=instances[instances.scores > 1])
    assert draw_sample(image, _sample(**empty), prefix="pred").shape == out.shape
    low = draw_sample(image, _sample(**fields), prefix="pred", score_thr=0.95)
    assert (low[:120, :160] == image).all()  # below the score threshold: not drawn
    # instances with masks but no boxes get boxes around their masks
    no_boxes = InstanceData(labels=torch.tensor([0]), masks=masks)
    drawn = draw_sample(image, _sample(pred_instances=no_boxes), prefix="pred")
    assert (drawn[30, 10] != drawn[30, 40]).any()  # box outline at x = 10 over the mask


def test_draw_sample_keypoints_and_skeleton():
    image = _gray()
    instances = InstanceData(
        bboxes=torch.tensor([[5.0, 5.0, 150.0, 110.0]]),
        labels=torch.tensor([0]),
        scores=torch.tensor([0.9]),
        keypoints=torch.tensor([[[30.0, 30.0, 0.9], [100.0, 90.0, 0.9], [140.0, 20.0, 0.1]]]),
    )
    out = draw_sample(
        image, _sample(pred_instances=instances), prefix="pred", skeleton=[(0, 1)], kpt_thr=0.3
    )
    changed = (out != image).any(-1)
    assert changed[30, 30] and changed[90, 100] and changed[60, 65]
    assert not changed[20, 140]


def test_video_writer_takes_the_size_of_the_drawn_frames(tmp_path):
    """tools/demo.py writes ``Inferencer.visualize`` frames (``draw_sample``) as they are:
    a depth panel beside the frame is not squeezed back to the input's size."""
    image = _gray(64, 80)
    frame = draw_sample(image, _sample(pred_depth=torch.full((64, 80), 3.0)), prefix="pred")
    h, w = frame.shape[:2]
    path = str(tmp_path / "out.mp4")
    writer = VideoWriter(path, fps=5.0)
    for _ in range(3):
        writer.write(frame)
    writer.close()
    capture = cv2.VideoCapture(path)
    # rounded up to even sizes (mp4v), the frame padded rather than resized
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == w + w % 2
    assert int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == h + h % 2
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, first = capture.read()
    assert ok and np.abs(first[:64, :80].astype(int) - 128).max() < 12  # lossy, not stretched


def test_show_dir_hook_draws_depth_without_class_names(tmp_path):
    """tools/test.py --show-dir on a depth dataset (metainfo without ``classes``)."""
    from types import SimpleNamespace

    from visionfm.engine.hooks import DrawPredictionsHook

    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), _gray(64, 80))
    sample = DataSample(metainfo=dict(img_path=str(path), ori_shape=(64, 80)))
    sample.pred_depth = torch.linspace(1.0, 4.0, 80).expand(64, 80).clone()
    dataset = SimpleNamespace(metainfo=dict(min_depth=1e-3, max_depth=10.0))
    runner = SimpleNamespace(test_dataloader=SimpleNamespace(dataset=dataset))
    DrawPredictionsHook(str(tmp_path / "show")).after_test_iter(runner, 0, outputs=[sample])
    drawn = cv2.imread(str(tmp_path / "show" / "scene.png"))
    assert drawn.shape[1] == 2 * 80 + 4 and drawn.shape[0] > 64
