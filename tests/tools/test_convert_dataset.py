"""tools/convert_dataset.py and visionfm.data.converters: YOLO, VOC, labelme and CVAT
datasets written here (tiny cv2 images) are converted to COCO; the json loads in pycocotools
and in CocoDataset, whose boxes (read through the training pipeline) equal the source's
boxes in pixels, computed by hand from each format's convention. Every kind of bad input is
reported with its file and line, raised by default and, with on_error='skip', its image left
out and listed while the others are kept."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from visionfm.data import CocoDataset
from visionfm.data.converters import ConversionError, convert_dataset
from visionfm.engine.cli import run_tool

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = [dict(type="LoadImage"), dict(type="LoadAnnotations"), dict(type="PackInputs")]


def _image(path: Path, w: int, h: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def _read_back(out: Path, name: str) -> tuple[COCO, dict[str, tuple[list, list, list]]]:
    """pycocotools' COCO of the output json, and per image file name CocoDataset's
    (boxes xyxy, class names, ignore flags) after LoadImage / LoadAnnotations / PackInputs."""
    ann_file = out / "annotations" / f"instances_{name}.json"
    coco = COCO(str(ann_file))
    ds = CocoDataset(
        ann_file=str(ann_file),
        data_prefix=dict(img=str(out / "images")),
        pipeline=PIPELINE,
        test_mode=True,
    )
    classes = ds.metainfo["classes"]
    read = {}
    for i in range(len(ds)):
        sample = ds[i]["data_samples"]
        gt = sample.gt_instances
        read[Path(sample.img_path).relative_to(out / "images").as_posix()] = (
            gt.bboxes.tolist(),
            [classes[int(label)] for label in gt.labels],
            sample.ignored_instances.bboxes.tolist() if "ignored_instances" in sample else [],
        )
    return coco, read


def _approx(boxes):
    return [pytest.approx(b, abs=1e-4) for b in boxes]


# ---- YOLO -------------------------------------------------------------------------------
def _yolo(src: Path) -> Path:
    _image(src / "images/train/a.jpg", 64, 48)
    _write(src / "labels/train/a.txt", "0 0.5 0.5 0.25 0.5\n\n1 0.125 0.25 0.25 0.5\n")
    _image(src / "images/train/empty.png", 32, 32)  # no label file: a background image
    _image(src / "images/val/b.png", 40, 20)
    # a polygon (segmentation label) and a box sticking out to the right (clipped)
    _write(src / "labels/val/b.txt", "1 0.1 0.1 0.5 0.1 0.5 0.9\n0 0.95 0.5 0.2 0.4\n")
    _write(src / "classes.txt", "cat\ndog\n")
    return src


def test_yolo_to_coco_round_trip(tmp_path):
    report = convert_dataset("yolo", _yolo(tmp_path / "yolo"), tmp_path / "out")
    assert report.images == {"train": 2, "val": 1} and not report.skipped
    coco, read = _read_back(tmp_path / "out", "train")
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "dog"]
    assert coco.getCatIds() == [1, 2]
    # cx, cy, w, h = 0.5, 0.5, 0.25, 0.5 of 64 x 48 -> [24, 12, 40, 36]
    assert read["train/a.jpg"][0] == _approx([[24, 12, 40, 36], [0, 0, 16, 24]])
    assert read["train/a.jpg"][1] == ["cat", "dog"]
    assert read["train/empty.png"][0] == []
    coco, read = _read_back(tmp_path / "out", "val")
    # polygon (4, 2), (20, 2), (20, 18) of 40 x 20; box [34, 6, 42, 14] clipped to x <= 40
    assert read["val/b.png"][0] == _approx([[4, 2, 20, 18], [34, 6, 40, 14]])
    (polygon,) = [a for a in coco.dataset["annotations"] if "segmentation" in a]
    assert polygon["segmentation"] == [pytest.approx([4, 2, 20, 2, 20, 18])]
    assert polygon["area"] == pytest.approx(16 * 16 / 2)
    assert report.clipped == [
        f"{tmp_path}/yolo/labels/val/b.txt:2: box [34.0, 6.0, 42.0, 14.0] clipped to "
        "[34.0, 6.0, 40.0, 14.0]"
    ]
    assert (tmp_path / "out/images/train/a.jpg").read_bytes() == (
        tmp_path / "yolo/images/train/a.jpg"
    ).read_bytes()


def test_yolo_classes_from_data_yaml_and_images_linked(tmp_path):
    src = _yolo(tmp_path / "yolo")
    (src / "classes.txt").unlink()
    _write(src / "data.yaml", "names:\n  0: zebra\n  1: ant\n")
    convert_dataset("yolo", src, tmp_path / "out", images="link")
    coco, read = _read_back(tmp_path / "out", "train")
    assert read["train/a.jpg"][1] == ["zebra", "ant"]
    linked = tmp_path / "out/images/train/a.jpg"
    assert linked.is_symlink() and linked.resolve() == (src / "images/train/a.jpg").resolve()


def test_exif_rotated_photo_gets_the_size_it_is_shown_and_loaded_at(tmp_path):
    from PIL import Image

    src = _yolo(tmp_path / "yolo")
    photo = Image.fromarray(np.zeros((48, 64, 3), np.uint8))  # stored 64 wide, 48 high
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned by 90 degrees: 48 wide, 64 high
    photo.save(src / "images/train/a.jpg", exif=exif)
    convert_dataset("yolo", src, tmp_path / "out")
    coco, read = _read_back(tmp_path / "out", "train")
    (image,) = [im for im in coco.dataset["images"] if im["file_name"] == "train/a.jpg"]
    assert (image["height"], image["width"]) == (64, 48)
    # cx, cy, w, h = 0.5, 0.5, 0.25, 0.5 of 48 x 64 -> [18, 16, 30, 48]
    assert read["train/a.jpg"][0][0] == pytest.approx([18, 16, 30, 48])


# ---- Pascal VOC ---------------------------------------------------------------------------
VOC_XML = """
<annotation>
  <filename>{name}</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object>
    <name>{first}</name>
    <difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>64</xmax><ymax>48</ymax></bndbox>
  </object>
  <object>
    <name>bird</name>
    <difficult>1</difficult>
    <bndbox><xmin>11</xmin><ymin>6</ymin><xmax>30</xmax><ymax>25</ymax></bndbox>
  </object>
</annotation>
"""


def _voc(src: Path, first: str = "person") -> Path:
    for stem in ("2007_000001", "2007_000002"):
        _image(src / f"JPEGImages/{stem}.jpg", 64, 48)
        _write(src / f"Annotations/{stem}.xml", VOC_XML.format(name=f"{stem}.jpg", first=first))
    _write(src / "ImageSets/Main/train.txt", "2007_000001\n")
    _write(src / "ImageSets/Main/val.txt", "2007_000002\n")
    _write(src / "ImageSets/Main/trainval.txt", "2007_000001\n2007_000002\n")
    return src


def test_voc_to_coco_round_trip_difficult_is_crowd(tmp_path):
    report = convert_dataset("voc", _voc(tmp_path / "voc"), tmp_path / "out")
    assert report.images == {"train": 1, "val": 1, "trainval": 2}
    coco, read = _read_back(tmp_path / "out", "trainval")
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["bird", "person"]  # sorted
    # 1-based inclusive VOC -> [xmin - 1, ymin - 1, xmax, ymax]: the whole 64 x 48 image
    boxes, names, ignored = read["2007_000001.jpg"]
    assert boxes == _approx([[0, 0, 64, 48]]) and names == ["person"]
    assert ignored == _approx([[10, 5, 30, 25]])  # difficult: ignore_flag from iscrowd
    crowd = coco.loadAnns(coco.getAnnIds(iscrowd=True))
    assert [a["bbox"] for a in crowd] == [[10, 5, 20, 20]] * 2
    assert sorted(p.name for p in (tmp_path / "out/images").iterdir()) == [
        "2007_000001.jpg",
        "2007_000002.jpg",
    ]  # written once although in two splits


def test_voc_chosen_split_and_class_order(tmp_path):
    report = convert_dataset(
        "voc", _voc(tmp_path / "voc"), tmp_path / "out", classes=["person", "bird"], splits=["val"]
    )
    assert report.images == {"val": 1}
    coco, read = _read_back(tmp_path / "out", "val")
    assert coco.loadCats([1, 2]) == [
        dict(id=1, name="person", supercategory=""),
        dict(id=2, name="bird", supercategory=""),
    ]
    with pytest.raises(ConversionError, match=r"split 'test' has no file .*test\.txt"):
        convert_dataset("voc", tmp_path / "voc", tmp_path / "o2", splits=["test"])


# ---- labelme ------------------------------------------------------------------------------
def _labelme(src: Path) -> Path:
    _image(src / "sub/photo.png", 50, 40)
    shapes = [
        dict(label="dog", shape_type="rectangle", points=[[30, 25], [10, 5]]),  # any corner order
        dict(label="cat", shape_type="polygon", points=[[5, 5], [25, 5], [25, 35], [5, 35]]),
    ]
    data = dict(imagePath="photo.png", imageHeight=40, imageWidth=50, shapes=shapes)
    _write(src / "sub/photo.json", json.dumps(data, indent=2))
    _image(src / "other.jpg", 20, 10)  # no objects
    _write(src / "other.json", json.dumps(dict(imagePath="other.jpg", shapes=[])))
    return src


def test_labelme_to_coco_round_trip(tmp_path):
    report = convert_dataset("labelme", _labelme(tmp_path / "lm"), tmp_path / "out")
    assert report.images == {"lm": 2}
    coco, read = _read_back(tmp_path / "out", "lm")
    boxes, names, _ = read["sub/photo.png"]
    assert boxes == _approx([[10, 5, 30, 25], [5, 5, 25, 35]]) and names == ["dog", "cat"]
    polygon = coco.loadAnns(coco.getAnnIds(catIds=[1]))[0]  # cat: sorted names
    contour = np.array(polygon["segmentation"][0], np.float32).reshape(-1, 2)
    assert polygon["area"] == pytest.approx(cv2.contourArea(contour)) == 600
    assert coco.annToMask(polygon).sum() == pytest.approx(600, rel=0.1)


# ---- CVAT ---------------------------------------------------------------------------------
CVAT_XML = """
<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels>
    <label><name>zebra</name></label>
    <label><name>ant</name></label>
  </labels></task></meta>
  <image id="0" name="frames/a.jpg" width="64" height="48" subset="Train">
    <box label="ant" occluded="0" xtl="10.5" ytl="4" xbr="30.25" ybr="20" z_order="0"/>
    <polygon label="zebra" occluded="0" points="2,2;20,2;2,30" z_order="0"/>
  </image>
  <image id="1" name="b.jpg" width="32" height="32" subset="Validation">
    {extra}
  </image>
</annotations>
"""


def _cvat(src: Path, extra: str = '<box label="zebra" xtl="0" ytl="0" xbr="8" ybr="8"/>') -> Path:
    _image(src / "images/frames/a.jpg", 64, 48)
    _image(src / "images/b.jpg", 32, 32)
    _write(src / "annotations.xml", CVAT_XML.format(extra=extra))
    return src


def test_cvat_to_coco_round_trip_in_the_task_label_order(tmp_path):
    report = convert_dataset("cvat", _cvat(tmp_path / "cvat"), tmp_path / "out")
    assert report.images == {"Train": 1, "Validation": 1}
    coco, read = _read_back(tmp_path / "out", "Train")
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["zebra", "ant"]
    boxes, names, _ = read["frames/a.jpg"]
    assert boxes == _approx([[10.5, 4, 30.25, 20], [2, 2, 20, 30]]) and names == ["ant", "zebra"]
    _, read = _read_back(tmp_path / "out", "Validation")
    assert read["b.jpg"][0] == _approx([[0, 0, 8, 8]])


# ---- bad input: reported by file and line, raised or its image skipped ---------------------
def _bad_yolo_line(src):
    _write(_yolo(src) / "labels/train/a.txt", "0 0.5 0.5 0.25 0.5\n0 0.5 oops 0.1 0.1\n")
    return "labels/train/a.txt:2: expected 'class cx cy w h'", "train/a.jpg"


def _bad_yolo_class(src):
    _write(_yolo(src) / "labels/train/a.txt", "0 0.5 0.5 0.25 0.5\n\n5 0.5 0.5 0.1 0.1\n")
    return r"labels/train/a.txt:3: unknown class index 5 \(classes 0..1", "train/a.jpg"


def _bad_yolo_outside(src):
    _write(_yolo(src) / "labels/train/a.txt", "0 1.5 0.5 0.1 0.1\n")
    return r"labels/train/a.txt:1: coordinates must be normalised to \[0, 1\]", "train/a.jpg"


def _bad_yolo_missing_image(src):
    _write(_yolo(src) / "labels/train/gone.txt", "0 0.5 0.5 0.1 0.1\n")
    return r"labels/train/gone.txt: label file without an image", None


def _bad_yolo_label_folder_without_images(src):
    _write(_yolo(src) / "labels/test/c.txt", "0 0.5 0.5 0.1 0.1\n")
    return r"labels/test/c.txt: label file without an image \(looked for .*images/test/c\.", None


def _bad_voc_missing_image(src):
    (_voc(src) / "JPEGImages/2007_000001.jpg").unlink()
    return r"Annotations/2007_000001.xml:2: image not found: .*2007_000001.jpg", "2007_000001.jpg"


def _bad_voc_unknown_class(src):
    _voc(src)
    _write(src / "Annotations/2007_000001.xml", VOC_XML.format(name="2007_000001.jpg", first="cow"))
    return r"Annotations/2007_000001.xml:4: unknown class 'cow'", "2007_000001.jpg"


def _bad_voc_box_outside(src):
    _voc(src)
    text = VOC_XML.format(name="2007_000001.jpg", first="person").replace(
        "<xmin>11</xmin>", "<xmin>71</xmin>"
    ).replace("<xmax>30</xmax>", "<xmax>90</xmax>")  # fmt: skip
    _write(src / "Annotations/2007_000001.xml", text)
    return (
        r"Annotations/2007_000001.xml:9: box \[70.0, 5.0, 90.0, 25.0\] lies outside the 64x48",
        "2007_000001.jpg",
    )


def _bad_voc_xml(src):
    _voc(src)
    _write(src / "Annotations/2007_000001.xml", "<annotation>\n<filename>x</filename>\n<size>\n")
    return r"Annotations/2007_000001.xml:4: not well-formed XML", "2007_000001.jpg"


def _bad_voc_no_bndbox(src):
    _voc(src)
    text = VOC_XML.format(name="2007_000001.jpg", first="person")
    text = text.replace(
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>64</xmax><ymax>48</ymax></bndbox>", ""
    )
    _write(src / "Annotations/2007_000001.xml", text)
    return r"Annotations/2007_000001.xml:4: <object> has no <bndbox>", "2007_000001.jpg"


def _bad_labelme_shape(src):
    data = json.loads((_labelme(src) / "sub/photo.json").read_text())
    data["shapes"].append(dict(label="cat", shape_type="circle", points=[[5, 5], [9, 9]]))
    _write(src / "sub/photo.json", json.dumps(data, indent=2))
    return r"sub/photo.json:\d+: shapes\[2\]: shape_type 'circle' with 2 points", "sub/photo.png"


def _bad_labelme_missing_image(src):
    (_labelme(src) / "sub/photo.png").unlink()
    return r"sub/photo.json:1: image not found: .*sub/photo.png", "sub/photo.png"


def _bad_cvat_unknown_label(src):
    _cvat(src, extra='<box label="horse" xtl="0" ytl="0" xbr="8" ybr="8"/>')
    return r"annotations.xml:13: unknown class 'horse' \(classes: \['zebra', 'ant'\]\)", "b.jpg"


def _bad_cvat_polyline(src):
    _cvat(src, extra='<polyline label="ant" points="1,1;5,5"/>')
    return r"annotations.xml:13: <polyline> is not converted", "b.jpg"


def _bad_cvat_rotated(src):
    _cvat(src, extra='<box label="ant" xtl="0" ytl="0" xbr="8" ybr="8" rotation="30"/>')
    return r"annotations.xml:13: rotated <box> \(rotation=30\)", "b.jpg"


def _bad_cvat_size(src):
    _cvat(src)
    _image(src / "images/b.jpg", 30, 32)
    return (
        r"annotations.xml:12: the annotation states the image size \(h, w\) = \(32, 32\), but",
        "b.jpg",
    )


BAD = {
    "yolo": [
        _bad_yolo_line,
        _bad_yolo_class,
        _bad_yolo_outside,
        _bad_yolo_missing_image,
        _bad_yolo_label_folder_without_images,
    ],
    "voc": [
        _bad_voc_missing_image,
        _bad_voc_unknown_class,
        _bad_voc_box_outside,
        _bad_voc_xml,
        _bad_voc_no_bndbox,
    ],
    "labelme": [_bad_labelme_shape, _bad_labelme_missing_image],
    "cvat": [_bad_cvat_unknown_label, _bad_cvat_polyline, _bad_cvat_rotated, _bad_cvat_size],
}
CASES = [(fmt, case) for fmt, cases in BAD.items() for case in cases]
CLASSES = dict(voc=["person", "bird"])  # a given list: other names are unknown


@pytest.mark.parametrize("fmt, case", CASES, ids=[c.__name__[5:] for _, c in CASES])
def test_bad_input_is_reported_by_file_and_line(tmp_path, fmt, case):
    src = tmp_path / fmt
    message, image = case(src)
    with pytest.raises(ConversionError, match=f"^{src}/{message}"):
        convert_dataset(fmt, src, tmp_path / "out", classes=CLASSES.get(fmt))

    report = convert_dataset(fmt, src, tmp_path / "skip", classes=CLASSES.get(fmt), on_error="skip")
    # once per output (split) that lists it: VOC's 2007_000001 is in train and trainval
    assert len(report.skipped) == (2 if fmt == "voc" else 1)
    assert all(re.match(rf"^\w+: {src}/{message}", s) for s in report.skipped)
    kept = set()
    for ann_file in (tmp_path / "skip/annotations").glob("*.json"):
        kept |= {im["file_name"] for im in json.loads(ann_file.read_text())["images"]}
    assert kept and image not in kept  # the bad image left out, the others converted
    written = {p.relative_to(tmp_path / "skip/images").as_posix()
               for p in (tmp_path / "skip/images").rglob("*") if p.is_file()}  # fmt: skip
    assert written == kept  # no image file written for a skipped image


# ---- the command line ---------------------------------------------------------------------
def _tool():
    spec = importlib.util.spec_from_file_location(
        "_convert_tool", ROOT / "tools/convert_dataset.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_command_line(tmp_path, capsys):
    tool = _tool()
    src = _voc(tmp_path / "voc")
    _write(tmp_path / "classes.txt", "person\nbird\n")
    argv = ["voc", str(src), "--out", str(tmp_path / "out"), "--split", "train,val"]
    tool.main([*argv, "--classes-file", str(tmp_path / "classes.txt")])
    out = capsys.readouterr().out
    assert "train: 1 images, 2 annotations" in out and "val: 1 images, 2 annotations" in out
    coco = COCO(str(tmp_path / "out/annotations/instances_train.json"))
    assert [c["name"] for c in coco.loadCats([1, 2])] == ["person", "bird"]

    tool.main([*argv, "--classes", "person", "--on-error", "skip"])  # bird is unknown
    assert "2 images left out (on_error='skip')" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tool.main(["yolo", str(src), "--out", str(tmp_path / "o"), "--split", "train"])
    assert "--split names VOC's ImageSets/Main files" in capsys.readouterr().err


def test_command_line_bad_input_is_one_error_line(tmp_path, monkeypatch):
    """What ``python tools/convert_dataset.py`` does: ``run_tool(main)``."""
    tool = _tool()
    src = _voc(tmp_path / "voc")
    argv = ["voc", str(src), "--out", str(tmp_path / "out"), "--classes", "person"]
    monkeypatch.delenv("VISIONFM_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        run_tool(lambda: tool.main(argv))
    message = str(exc.value.code)  # printed to stderr, exit status 1
    assert re.fullmatch(
        rf"error: {src}/Annotations/2007_000001.xml:9: unknown class 'bird' .*", message
    )
