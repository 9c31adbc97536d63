"""YOLO (Darknet / Ultralytics) txt labels to COCO.

Layout (Ultralytics')::

    SRC/images/<split>/*.jpg      SRC/labels/<split>/*.txt     one output per <split> folder
    SRC/images/*.jpg              SRC/labels/*.txt             one output named after SRC
    SRC/classes.txt, SRC/labels/classes.txt (labelImg's) or SRC/data.yaml (``names``: a
    list, or a dict index -> name)

The label of ``images/<path>.<ext>`` is ``labels/<path>.txt``. One object a line:
``class cx cy w h`` (a box) or ``class x0 y0 x1 y1 ...`` (a polygon, as Ultralytics'
segmentation labels), coordinates normalised by the image's width / height. As Ultralytics,
coordinates outside [0, 1] are refused (non-normalised labels), while a box whose normalised
centre and size are valid but whose corners pass the border is clipped. An image without a
label file is kept with no objects (a background image, as in YOLO); a label file without
its image is bad input.

Classes: ``--classes`` / ``--classes-file``, else ``classes.txt``, else ``data.yaml``'s
``names``; class index ``i`` is the i-th name (category id i + 1).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .common import IMAGE_SUFFIXES, CocoWriter, ConversionError, read_class_file


def _yaml_names(path: Path) -> list[str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConversionError(f"{path}: not valid YAML ({e})") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        names = [names[i] for i in range(len(names))]
    if not (isinstance(names, list) and names):
        raise ConversionError(
            f"{path}: 'names' must be a list of class names or a dict 0..K-1 -> name, got {names!r}"
        )
    return [str(n) for n in names]


def _classes(src: Path, writer: CocoWriter) -> None:
    if writer.classes is not None:
        return
    for path in (src / "classes.txt", src / "labels" / "classes.txt"):  # labelImg: the latter
        if path.is_file():
            writer.set_classes(read_class_file(path), str(path))
            return
    if (src / "data.yaml").is_file():
        writer.set_classes(_yaml_names(src / "data.yaml"), str(src / "data.yaml"))
    else:
        raise ConversionError(
            f"{src}: no class names: give --classes / --classes-file, or write "
            f"{src / 'classes.txt'} (one name a line, in class-index order)"
        )


def _parse_line(line: str, where: str, num_classes: int) -> tuple[int, list[float]]:
    """(class index, normalised numbers) of one label line."""
    fields = line.split()
    try:
        cls, values = int(fields[0]), [float(v) for v in fields[1:]]
    except ValueError:
        raise ConversionError(
            f"{where}: expected 'class cx cy w h' (integer class, numbers), got {line!r}"
        ) from None
    if len(values) != 4 and (len(values) < 6 or len(values) % 2):
        raise ConversionError(
            f"{where}: expected 'class cx cy w h' or a polygon 'class x0 y0 x1 y1 x2 y2 ...', "
            f"got {len(fields)} fields: {line!r}"
        )
    if not 0 <= cls < num_classes:
        raise ConversionError(
            f"{where}: unknown class index {cls} (classes 0..{num_classes - 1}: {num_classes} names)"
        )
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ConversionError(f"{where}: coordinates must be normalised to [0, 1], got {line!r}")
    return cls, values


def _convert_label(writer: CocoWriter, image: Path, label: Path, file_name: str) -> None:
    image_info = writer.add_image(image, file_name, str(label if label.is_file() else image))
    if not label.is_file():
        return  # a background image
    _, h, w = image_info
    for number, line in enumerate(label.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{label}:{number}"
        cls, v = _parse_line(line, where, len(writer.classes))
        name = writer.classes[cls]
        if len(v) == 4:
            cx, cy, bw, bh = v[0] * w, v[1] * h, v[2] * w, v[3] * h
            xyxy = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
            writer.add_box(image_info, name, xyxy, where)
        else:
            polygon = [c * (w if i % 2 == 0 else h) for i, c in enumerate(v)]
            writer.add_box(image_info, name, [], where, polygon=polygon)


def _images(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def convert_yolo(src: Path, writer: CocoWriter) -> None:
    """Convert the YOLO dataset folder ``src`` (see the module doc) through ``writer``."""
    images_dir, labels_dir = src / "images", src / "labels"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise ConversionError(f"{src}: expected the folders images/ and labels/, no {folder}")
    _classes(src, writer)
    # (name, relative folder, recursive): files directly in images/ and labels/, then one
    # split per subfolder of either (a label folder without images is reported, not dropped)
    subfolders = {d.name for top in (images_dir, labels_dir) for d in top.iterdir() if d.is_dir()}
    splits = [(src.name, Path("."), False)] + [(n, Path(n), True) for n in sorted(subfolders)]
    for name, rel_folder, recursive in splits:
        images = _images(images_dir / rel_folder, recursive)
        labels_folder = labels_dir / rel_folder
        labels = labels_folder.rglob("*.txt") if recursive else labels_folder.glob("*.txt")
        labels = sorted(p for p in labels if p != labels_dir / "classes.txt")
        if not images and not labels:
            continue
        by_stem = {p.relative_to(images_dir).with_suffix(""): p for p in images}
        with writer.output(name):
            for image in images:
                rel = image.relative_to(images_dir)
                with writer.image():
                    _convert_label(
                        writer, image, labels_dir / rel.with_suffix(".txt"), rel.as_posix()
                    )
            for label in labels:
                if label.relative_to(labels_dir).with_suffix("") not in by_stem:
                    with writer.image():
                        raise ConversionError(
                            f"{label}: label file without an image (looked for "
                            f"{images_dir / label.relative_to(labels_dir).with_suffix('')}"
                            f".{{{','.join(s[1:] for s in IMAGE_SUFFIXES)}}})"
                        )
