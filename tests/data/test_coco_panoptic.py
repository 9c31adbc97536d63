"""COCO panoptic reading: the RGB id encoding, a hand-written dataset read back exactly
(things then stuff, crowd, void, non-contiguous ids), errors that name the file / segment,
and the synthetic world's panoptic annotations agreeing with its instances and semantic
PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from visionfm.data.datasets.coco_panoptic import CocoPanopticDataset
from visionfm.data.files import id_to_rgb, read_panoptic_png, rgb_to_id
from visionfm.data.synthetic.panoptic import BACKGROUND_ID, segment_id
from visionfm.data.transforms import LoadImage, LoadPanopticAnnotations, PackInputs

H, W = 24, 32
# a stuff category with the smallest id, things with larger non-contiguous ids
CATEGORIES = [
    dict(id=2, name="sky", isthing=0, color=[10, 20, 30]),
    dict(id=7, name="cat", isthing=1, color=[200, 10, 10]),
    dict(id=4, name="dog", isthing=1, color=[10, 200, 10]),
    dict(id=30, name="grass", isthing=0, color=[10, 10, 200]),
]
LABELS = {4: 0, 7: 1, 2: 2, 30: 3}  # things by id (dog, cat), then stuff by id (sky, grass)


def write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])


def box(y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def write_panoptic(root: Path) -> dict:
    """Two images; returns ``{img_id: [(segment id, category id, iscrowd, mask)]}``."""
    segments = {
        1: [
            (1_000_001, 7, 0, box(2, 10, 2, 12)),  # id > 2^16: all three RGB channels used
            (70_000, 4, 0, box(12, 20, 4, 12)),
            (300, 4, 1, box(12, 20, 20, 30)),  # crowd dogs
            (5, 2, 0, box(0, 2, 0, 32)),  # sky; rows 20.. stay void
            (99, 30, 0, box(2, 12, 14, 32) | box(10, 12, 0, 14)),
        ],
        2: [(8, 30, 0, np.ones((H, W), bool))],
    }
    images, annotations = [], []
    (root / "pan").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for img_id, segs in segments.items():
        ids = np.zeros((H, W), np.int64)
        for seg_id, _, _, mask in segs:
            assert not ids[mask].any()
            ids[mask] = seg_id
        cv2.imwrite(str(root / "pan" / f"p{img_id}.png"), id_to_rgb(ids)[:, :, ::-1])
        write_image(root / "img" / f"i{img_id}.jpg", rng.integers(0, 255, (H, W, 3), np.uint8))
        images.append(dict(id=img_id, file_name=f"i{img_id}.jpg", height=H, width=W))
        info = [dict(id=s, category_id=c, iscrowd=k, area=int(m.sum())) for s, c, k, m in segs]
        annotations.append(dict(image_id=img_id, file_name=f"p{img_id}.png", segments_info=info))
    data = dict(images=images, annotations=annotations, categories=CATEGORIES)
    (root / "panoptic.json").write_text(json.dumps(data))
    return segments


def dataset(root: Path, **kwargs) -> CocoPanopticDataset:
    return CocoPanopticDataset(
        ann_file="panoptic.json",
        data_root=str(root) + "/",
        data_prefix=dict(img="img/", seg="pan/"),
        pipeline=[LoadImage(), LoadPanopticAnnotations(), PackInputs()],
        **kwargs,
    )


def test_rgb_id_round_trip():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 256**3 - 1, 1_000_001]])
    rgb = id_to_rgb(ids)
    assert rgb.dtype == np.uint8 and rgb[0, 3].tolist() == [0, 1, 0]  # 256 = G 1
    assert np.array_equal(rgb_to_id(rgb), ids)


def test_written_panoptic_reads_back_equal(tmp_path):
    segments = write_panoptic(tmp_path)
    ds = dataset(tmp_path)
    assert ds.metainfo["classes"] == ("dog", "cat", "sky", "grass")
    assert ds.metainfo["thing_classes"] == ("dog", "cat")
    assert ds.metainfo["stuff_classes"] == ("sky", "grass")
    assert ds.metainfo["palette"][0] == (10, 200, 10)
    assert len(ds) == 2
    sample = ds[0]["data_samples"]
    segs = segments[1]
    kept = [s for s in segs if not s[2]]
    gt = sample.gt_instances
    assert gt.labels.tolist() == [LABELS[c] for _, c, _, _ in kept]
    for mask, (_, _, _, expected) in zip(gt.masks.numpy(), kept):
        assert np.array_equal(mask, expected)
    ys, xs = np.nonzero(kept[0][3])
    assert gt.bboxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    crowd = sample.ignored_instances
    assert crowd.labels.tolist() == [0] and np.array_equal(crowd.masks[0].numpy(), segs[2][3])
    sem = sample.gt_sem_seg.numpy()
    expected = np.full((H, W), 255)
    for _, c, _, mask in segs:
        expected[mask] = LABELS[c]  # crowd pixels keep their class
    assert np.array_equal(sem, expected) and (sem[20:, :20] == 255).all()  # void stays void
    info = ds.get_data_info(0)
    assert info["panoptic_path"].endswith("pan/p1.png") and info["img_id"] == 1


def test_errors_name_the_file_and_segment(tmp_path):
    write_panoptic(tmp_path)
    data = json.loads((tmp_path / "panoptic.json").read_text())
    data["annotations"][0]["segments_info"].append(dict(id=4242, category_id=7, iscrowd=0))
    (tmp_path / "bad1.json").write_text(json.dumps(data))
    ds = CocoPanopticDataset("bad1.json", [LoadPanopticAnnotations()], str(tmp_path) + "/",
                             data_prefix=dict(img="img/", seg="pan/"))  # fmt: skip
    with pytest.raises(ValueError, match=r"p1\.png.*4242.*no pixels"):
        ds[0]
    data = json.loads((tmp_path / "panoptic.json").read_text())
    del data["annotations"][0]["segments_info"][1]
    (tmp_path / "bad2.json").write_text(json.dumps(data))
    ds = CocoPanopticDataset("bad2.json", [LoadPanopticAnnotations()], str(tmp_path) + "/",
                             data_prefix=dict(img="img/", seg="pan/"))  # fmt: skip
    with pytest.raises(ValueError, match=r"p1\.png has segment ids \[70000\]"):
        ds[0]
    data["annotations"][0]["segments_info"][0]["category_id"] = 55
    (tmp_path / "bad3.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"bad3\.json: segment id 1000001 .* category_id 55"):
        CocoPanopticDataset("bad3.json", data_root=str(tmp_path) + "/", check_images=False)
    with pytest.raises(ValueError, match="differ from the categories"):
        dataset(tmp_path, metainfo=dict(classes=("cat", "dog", "sky", "grass")))
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        read_panoptic_png(str(tmp_path / "nothing.png"))


def test_synthetic_world_panoptic_agrees_with_instances_and_semantic(synthetic_root):
    root = Path(synthetic_root)
    coco = COCO(str(root / "annotations" / "instances_val.json"))
    pan = json.loads((root / "annotations" / "panoptic_val.json").read_text())
    cats = {c["id"]: c for c in pan["categories"]}
    assert cats[BACKGROUND_ID]["name"] == "background" and not cats[BACKGROUND_ID]["isthing"]
    assert all(cats[i]["isthing"] and cats[i]["name"] == coco.cats[i]["name"] for i in coco.cats)
    assert [img["id"] for img in pan["images"]] == sorted(coco.imgs)
    for ann in pan["annotations"]:
        img = coco.imgs[ann["image_id"]]
        ids = read_panoptic_png(str(root / "panoptic" / "val" / ann["file_name"]))
        assert ids.shape == (img["height"], img["width"]) and (ids > 0).all()  # no void
        objects = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        segs = ann["segments_info"]
        assert len(segs) == len(objects) + 1 and segs[-1]["category_id"] == BACKGROUND_ID
        for k, (seg, obj) in enumerate(zip(segs, objects)):
            assert seg["id"] == segment_id(k) and seg["category_id"] == obj["category_id"]
            assert np.array_equal(ids == seg["id"], coco.annToMask(obj).astype(bool))
            assert seg["area"] == obj["area"] and seg["iscrowd"] == 0
        sem = cv2.imread(str(root / "semantic" / "val" / ann["file_name"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(ids == segs[-1]["id"], sem == 0)
        assert segs[-1]["area"] == int((sem == 0).sum())
