"""tools/browse_dataset.py on every image dataset type of the synthetic world (point clouds:
tests/tools/test_point_tools.py): a PNG per sample, showing its ground truth where it lies.
The samples the tool drew are drawn again from the same config and seed, and the PNG is
compared with the image the pipeline made: pixels inside masks / on box outlines / at
keypoints are changed (box outlines in their class or phrase colour), semantic and panoptic
segments are blended with their colour (outside the boxes their class names are written on),
pixels away from the annotations are not changed, the depth colour map is monotone in depth,
a grounding sample's text is written beneath it; test pipelines that load the annotations
after resizing are drawn over the original image, those that load none drawn alone."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.runner.utils import set_random_seed

from visionfm.engine import load_config
from visionfm.registry import DATASETS
from visionfm.visualization import instances, palette

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "_base_" / "datasets"


def _browse(base: str, root: Path, out: Path, monkeypatch, split: str = "train", num: int = 2):
    """Run the tool on ``configs/_base_/datasets/<base>.py`` over the synthetic world (seed
    0); returns ``(PNGs as RGB arrays, the items the pipeline gives for that seed, the
    dataset's metainfo)``."""
    config = str(BASE / f"{base}.py")
    argv = [config, "--out", out, "--split", split, "--num", num, "--seed", 0,
            "--cfg-options", f"data_root={root}/"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["browse_dataset", *map(str, argv)])
    runpy.run_path(str(ROOT / "tools" / "browse_dataset.py"), run_name="__main__")
    cfg = load_config(config, dict(data_root=f"{root}/"))
    dataset = DATASETS.build(cfg[f"{split}_dataloader"].dataset)
    set_random_seed(0)
    items = [dataset[i] for i in range(num)]
    pngs = sorted(out.glob("*.png"))
    stems = [Path(item["data_samples"].img_path).stem for item in items]
    assert [p.name for p in pngs] == [f"{i:04d}_{s}.png" for i, s in enumerate(stems)]
    drawn = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in pngs]
    return drawn, items, dataset.metainfo


def _image(item) -> np.ndarray:
    return item["inputs"].permute(1, 2, 0).numpy()


def _changed(drawn: np.ndarray, image: np.ndarray, where: np.ndarray) -> float:
    """Fraction of the ``where`` pixels whose colour the drawing changed."""
    return float((drawn[where] != image[where]).any(-1).mean())


def _outline_colour_share(drawn: np.ndarray, boxes, labels, colours) -> float:
    """Fraction of the pixels on the boxes' outlines (as ``draw_instances`` rounds them, 1 px
    wide) that have their box's colour ``colours[label]``."""
    h, w = drawn.shape[:2]
    hits = total = 0
    for box, label in zip(np.asarray(boxes, float), np.asarray(labels)):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x1, y1 = min(max(x1 - 1, x0), w - 1), min(max(y1 - 1, y0), h - 1)
        x0, y0 = max(x0, 0), max(y0, 0)
        ring = np.zeros((h, w), bool)
        ring[y0, x0 : x1 + 1] = ring[y1, x0 : x1 + 1] = True
        ring[y0 : y1 + 1, x0] = ring[y0 : y1 + 1, x1] = True
        hits += int((drawn[ring] == colours[label]).all(-1).sum())
        total += int(ring.sum())
    return hits / total


def _near_boxes(shape, boxes, margin: int = 3) -> np.ndarray:
    near = np.zeros(shape, bool)
    for x0, y0, x1, y1 in np.round(np.asarray(boxes, float)).astype(int):
        near[max(y0 - margin, 0) : y1 + margin, max(x0 - margin, 0) : x1 + margin] = True
    return near


def test_boxes_masks_and_keypoints(synthetic_root, tmp_path, monkeypatch):
    drawn, items, meta = _browse("synthetic_instances", synthetic_root, tmp_path, monkeypatch,
                                 num=4)  # fmt: skip
    colours = np.asarray(meta["palette"], np.uint8)
    keypoints_seen = 0
    for png, item in zip(drawn, items):
        image, gt = _image(item), item["data_samples"].gt_instances
        assert png.shape == image.shape  # one panel: the instances over the image
        assert _changed(png, image, gt.masks.numpy().any(0)) > 0.95
        assert _outline_colour_share(png, gt.bboxes, gt.labels, colours) > 0.7
        away = ~_near_boxes(image.shape[:2], gt.bboxes)
        assert _changed(png, image, away) < 0.15  # captions above the boxes at most
        kps = gt.keypoints.numpy()
        visible = kps[..., 2] > 0
        xy = np.round(kps[visible][:, :2]).astype(int)
        inside = (xy >= 0).all(1) & (xy[:, 0] < image.shape[1]) & (xy[:, 1] < image.shape[0])
        if inside.any():  # a white dot on each (captions and other skeletons may cover some)
            x, y = xy[inside].T
            assert (png[y, x] == 255).all(-1).mean() > 0.7
            keypoints_seen += int(inside.sum())
    assert keypoints_seen > 0


def test_boxes_after_resize_and_flip(synthetic_root, tmp_path, monkeypatch):
    drawn, items, meta = _browse("synthetic_detection_128px", synthetic_root, tmp_path,
                                 monkeypatch)  # fmt: skip
    colours = np.asarray(meta["palette"], np.uint8)
    for png, item in zip(drawn, items):
        image, gt = _image(item), item["data_samples"].gt_instances
        assert png.shape == image.shape and max(image.shape) == 128
        assert _outline_colour_share(png, gt.bboxes, gt.labels, colours) > 0.7
        assert _changed(png, image, ~_near_boxes(image.shape[:2], gt.bboxes)) < 0.15


def _erode(mask: np.ndarray, px: int = 2) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)).astype(bool)


@pytest.fixture
def captions(monkeypatch) -> list[list[tuple]]:
    """The filled boxes the class names are written on (``cv2.rectangle`` with thickness -1:
    ``(x0, y0, x1, y1)`` inclusive), one list per PNG the tool writes, in order."""
    boxes: list[list[tuple]] = [[]]
    rectangle, imwrite = cv2.rectangle, cv2.imwrite

    def record(image, pt1, pt2, color, thickness=1, *args, **kwargs):
        if thickness < 0:
            boxes[-1].append((*pt1, *pt2))
        return rectangle(image, pt1, pt2, color, thickness, *args, **kwargs)

    def write(*args, **kwargs):
        boxes.append([])
        return imwrite(*args, **kwargs)

    monkeypatch.setattr(cv2, "rectangle", record)
    monkeypatch.setattr(cv2, "imwrite", write)
    return boxes


def _uncaptioned(shape, boxes) -> np.ndarray:
    """(H, W) bool: the pixels under none of the caption ``boxes`` (their class names)."""
    free = np.ones(shape, bool)
    for x0, y0, x1, y1 in boxes:
        free[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = False
    return free


def test_panoptic_segments_in_one_map_each_thing_its_own_colour(
    synthetic_root, tmp_path, monkeypatch, captions
):
    drawn, items, meta = _browse("synthetic_panoptic", synthetic_root, tmp_path, monkeypatch, num=4)
    things = len(meta["thing_classes"])
    shades_differ = 0
    for png, item, boxes in zip(drawn, items, captions):
        image, gt = _image(item).astype(np.float64), item["data_samples"].gt_instances
        assert png.shape == image.shape  # one panoptic panel, not instances + semantic
        free = _uncaptioned(image.shape[:2], boxes)
        assert len(boxes) == len(gt.labels)  # each segment named once
        colour_of = {}
        for mask, label in zip(gt.masks.numpy(), gt.labels.tolist()):
            inner = _erode(mask) & free  # away from the outlines and the class names
            if inner.sum() < 30:
                continue
            # blended at alpha 0.6: the colour each pixel was blended with
            colour = (png[inner] - 0.4 * image[inner]) / 0.6
            median = np.median(colour, 0)
            assert (np.abs(colour - median) < 3).all(-1).mean() > 0.95  # one colour a segment
            colour_of.setdefault(label, []).append(median)
        for label, colours in colour_of.items():
            if label < things and len(colours) > 1:  # things of a class: shades apart
                shades_differ += 1
                pairs = [(a, b) for i, a in enumerate(colours) for b in colours[i + 1 :]]
                assert min(np.abs(a - b).max() for a, b in pairs) > 10
    assert shades_differ > 0


def _blended(image: np.ndarray, colour, alpha: float) -> np.ndarray:
    return np.round((1 - alpha) * image.astype(np.float64) + alpha * np.asarray(colour, float))


def _check_semantic(png, image, seg, colours, boxes, ignore: int = 255) -> None:
    """Each class's pixels (away from region borders and the class names written on
    ``boxes``) blended with its colour at 0.5; ignored pixels left alone."""
    free = _uncaptioned(seg.shape, boxes)
    present = np.unique(seg[seg != ignore])
    assert len(boxes) == len(present)  # each class named once
    for c in present:
        inner = _erode(seg == c, 1) & free
        diff = np.abs(png[inner].astype(float) - _blended(image[inner], colours[c], 0.5))
        assert (diff <= 1).all(-1).all(), c
    ignored = seg == ignore
    assert not ignored.any() or _changed(png, image, ignored) < 0.05


def test_semantic_maps_in_the_train_and_val_pipelines(
    synthetic_root, tmp_path, monkeypatch, captions
):
    drawn, items, meta = _browse("synthetic_semantic", synthetic_root, tmp_path / "train",
                                 monkeypatch)  # fmt: skip
    colours = np.asarray(meta["palette"], np.uint8)
    for png, item, boxes in zip(drawn, items, captions):
        seg = item["data_samples"].gt_sem_seg.numpy()
        assert png.shape[:2] == seg.shape
        _check_semantic(png, _image(item), seg, colours, boxes)
    # val: resized, then the labels loaded at the original size: drawn over the original
    del captions[:-1]
    drawn, items, _ = _browse("synthetic_semantic", synthetic_root, tmp_path / "val",
                              monkeypatch, split="val")  # fmt: skip
    for png, item, boxes in zip(drawn, items, captions):
        sample = item["data_samples"]
        seg = sample.gt_sem_seg.numpy()
        assert png.shape[:2] == seg.shape == tuple(sample.ori_shape) != _image(item).shape[:2]
        original = cv2.cvtColor(cv2.imread(sample.img_path), cv2.COLOR_BGR2RGB)
        _check_semantic(png, original, seg, colours, boxes)


def test_samples_without_ground_truth_are_drawn_alone_and_counted(
    synthetic_root, tmp_path, monkeypatch, capsys
):
    # the panoptic val pipeline loads no annotations: PanopticMetric reads them from the files
    drawn, items, _ = _browse("synthetic_panoptic", synthetic_root, tmp_path, monkeypatch,
                              split="val")  # fmt: skip
    for png, item in zip(drawn, items):
        assert np.array_equal(png, _image(item))
    assert "2 of them without ground truth: the val pipeline loads no annotations" in (
        capsys.readouterr().out
    )


def _turbo_index(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) RGB colours -> index of the nearest colour of OpenCV's turbo map (0..255)."""
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_TURBO)[0, :, ::-1]
    distance = np.abs(rgb[:, None].astype(int) - lut[None].astype(int)).sum(-1)
    return distance.argmin(1)


def test_depth_beside_the_image_in_a_colour_map_monotone_in_depth(
    synthetic_root, tmp_path, monkeypatch
):
    drawn, items, _ = _browse("synthetic_depth", synthetic_root, tmp_path, monkeypatch)
    for png, item in zip(drawn, items):
        image, depth = _image(item), item["data_samples"].gt_depth.numpy()
        h, w = image.shape[:2]
        assert depth.shape == (h, w) and png.shape[1] == 2 * w + 4 and png.shape[0] > h
        assert np.array_equal(png[:h, :w], image)  # the image as the pipeline made it
        panel = png[:h, w + 4 :]
        valid = depth > 0
        index = _turbo_index(panel[valid])
        order = np.lexsort((index, depth[valid]))  # by depth, then colour index
        assert (np.diff(index[order]) >= 0).all()  # deeper never maps lower
        assert index.min() == 0 and index.max() == 255
        assert (panel[~valid] == 0).all()


def test_top_down_keypoint_crops(synthetic_root, tmp_path, monkeypatch):
    drawn, items, _ = _browse("synthetic_keypoints", synthetic_root, tmp_path, monkeypatch)
    for png, item in zip(drawn, items):
        image, gt = _image(item), item["data_samples"].gt_instances
        assert png.shape == image.shape == (64, 48, 3)  # the crop the model sees
        kps = gt.keypoints.numpy()[0]
        xy = np.round(kps[kps[:, 2] > 0, :2]).astype(int)
        xy = xy[(xy >= 0).all(1) & (xy[:, 0] < 48) & (xy[:, 1] < 64)]
        assert len(xy) > 2
        assert (png[xy[:, 1], xy[:, 0]] != image[xy[:, 1], xy[:, 0]]).any(-1).mean() > 0.9


@pytest.fixture
def texts(monkeypatch) -> list[str]:
    """The texts written on the drawings (box captions, lines beneath), in order."""
    seen: list[str] = []
    put_text = cv2.putText

    def record(image, text, *args, **kwargs):
        seen.append(text)
        return put_text(image, text, *args, **kwargs)

    monkeypatch.setattr(cv2, "putText", record)
    return seen


@pytest.mark.parametrize("split", ["train", "val", "test"])  # phrases, expressions, prompts
def test_grounding_boxes_named_by_phrases_and_the_text_beneath(
    synthetic_root, tmp_path, monkeypatch, texts, split
):
    drawn, items, _ = _browse("synthetic_grounding", synthetic_root, tmp_path, monkeypatch,
                              split=split)  # fmt: skip
    written = iter(texts)
    for png, item in zip(drawn, items):
        sample = item["data_samples"]
        gt, phrases = sample.gt_instances, sample.phrases
        image = _image(item)
        if split != "train":  # resized, then the boxes loaded at the original size
            assert tuple(sample.ori_shape) != image.shape[:2]
            image = cv2.cvtColor(cv2.imread(sample.img_path), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        assert png.shape[1] == w and png.shape[0] > h  # the text beneath
        colours = palette(len(phrases))  # a grounding sample's colours follow its phrases
        assert _outline_colour_share(png[:h], gt.bboxes, gt.labels, colours) > 0.7
        assert (png[h:] < 128).all(-1).any()  # dark text on the light strip
        # written: each box's phrase (long ones shortened), then the whole text in lines
        for label in gt.labels.tolist():
            assert next(written) == instances._shorten(phrases[label])
        words, lines = sample.text.split(), []
        while sum(len(line) for line in lines) < len(words):
            lines.append(next(written).split())
        assert sum(lines, []) == words
    assert next(written, None) is None
