"""labelme json to COCO (Wada, labelme).

SRC is a folder of labelme files (``*.json``, searched recursively), one an image::

    {"imagePath": "a.jpg", "imageHeight": 480, "imageWidth": 640,
     "shapes": [{"label": "cat", "shape_type": "rectangle", "points": [[x0, y0], [x1, y1]]},
                {"label": "dog", "shape_type": "polygon", "points": [[x, y], ...]}]}

``imagePath`` is relative to the json file; the image is written as
``images/<the json's folder under SRC>/<image name>``. A rectangle is its two corners (any
order); a polygon (``shape_type`` polygon, or missing as labelme allows) of at least 3
points becomes ``segmentation`` and its bbox. Other shape types (circle, line, point,
linestrip, mask) are bad input: they have no COCO detection equivalent. One output, named
after SRC. Classes: the given list, else every ``label`` found, sorted.
"""

from __future__ import annotations

from pathlib import Path

from .common import CocoWriter, ConversionError, LinedDict, load_json_with_lines


def _points(shape: LinedDict, where: str) -> list[float]:
    points = shape.get("points")
    ok = isinstance(points, list) and all(
        isinstance(p, list)
        and len(p) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
        for p in points
    )
    if not ok:
        raise ConversionError(f"{where}: 'points' must be a list of [x, y], got {points!r}")
    return [float(v) for p in points for v in p]


def _convert_file(writer: CocoWriter, path: Path, data: object, src: Path) -> None:
    if not (isinstance(data, LinedDict) and isinstance(data.get("shapes"), list)):
        raise ConversionError(f"{path}:1: not a labelme file (an object with 'shapes' expected)")
    image_path = data.get("imagePath")
    if not isinstance(image_path, str) or not image_path:
        raise ConversionError(f"{path}:{data.line}: no 'imagePath'")
    image_file = path.parent / image_path.replace("\\", "/")  # labelme on Windows
    file_name = (path.parent.relative_to(src) / image_file.name).as_posix()
    stated = (data.get("imageHeight"), data.get("imageWidth"))
    where = f"{path}:{data.line}"
    image = writer.add_image(image_file, file_name, where, None if None in stated else stated)
    for i, shape in enumerate(data["shapes"]):
        line = shape.line if isinstance(shape, LinedDict) else data.line
        where = f"{path}:{line}: shapes[{i}]"
        if not isinstance(shape, LinedDict) or not isinstance(shape.get("label"), str):
            raise ConversionError(f"{where}: a shape needs a string 'label'")
        kind = shape.get("shape_type") or "polygon"
        xy = _points(shape, where)
        if kind == "rectangle" and len(xy) == 4:
            xs, ys = xy[0::2], xy[1::2]
            writer.add_box(image, shape["label"], [min(xs), min(ys), max(xs), max(ys)], where)
        elif kind == "polygon" and len(xy) >= 6:
            writer.add_box(image, shape["label"], [], where, polygon=xy)
        else:
            raise ConversionError(
                f"{where}: shape_type {kind!r} with {len(xy) // 2} points: expected a "
                "'rectangle' of 2 points or a 'polygon' of 3 or more"
            )


def convert_labelme(src: Path, writer: CocoWriter) -> None:
    """Convert the folder of labelme files ``src`` (see the module doc) through ``writer``."""
    files = sorted(src.rglob("*.json"))
    if not files:
        raise ConversionError(f"{src}: no labelme *.json files found")
    loaded: dict[Path, object] = {}
    for path in files:
        try:
            loaded[path] = load_json_with_lines(path)
        except ConversionError as e:
            loaded[path] = e  # raised (or skipped) when its image is converted
    if writer.classes is None:
        labels = {
            s["label"]
            for d in loaded.values()
            if isinstance(d, dict) and isinstance(d.get("shapes"), list)
            for s in d["shapes"]
            if isinstance(s, dict) and isinstance(s.get("label"), str)
        }
        writer.set_classes(sorted(labels), f"{src}: the labels found")
    with writer.output(src.name):
        for path, data in loaded.items():
            with writer.image():
                if isinstance(data, ConversionError):
                    raise data
                _convert_file(writer, path, data, src)
