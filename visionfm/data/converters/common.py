"""What every dataset converter shares: the COCO json it writes, its images, class names,
and bad-input reporting by file and line.

Rules every format follows (the format modules add their own coordinate conventions):

- **Classes** get category ids 1..K in the order given (``--classes`` / ``--classes-file``),
  else in the order the source states (YOLO's ``classes.txt`` / ``data.yaml``, CVAT's task
  labels), else sorted by name. A name (or YOLO index) outside a given list is bad input.
- **Boxes** are COCO ``[x, y, w, h]`` in pixels of the continuous image plane (the image
  spans ``[0, W] x [0, H]``). A box sticking out of the image is clipped to it, as
  mmdetection's and Ultralytics' loaders do at training time; the clipping is counted and
  each one listed in the report. A box entirely outside the image or of zero / negative size
  is bad input. Polygons become ``segmentation`` with their points clipped the same way,
  their bbox the points' extent and ``area`` the polygon's (shoelace) area.
- **Bad input** (a missing image, an image size differing from the annotation's, an unknown
  class, a malformed line or element, a box outside the image) raises
  :class:`ConversionError` naming the file and line with ``on_error='raise'``. With
  ``on_error='skip'`` the IMAGE it belongs to is left out, as Ultralytics leaves out an image
  whose label file is corrupt (keeping it without one of its objects would teach the model
  that object is background); every skipped image is counted and listed with its reason.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "ConversionError",
    "ConversionReport",
    "CocoWriter",
    "LinedDict",
    "LinedElement",
    "load_json_with_lines",
    "parse_xml_with_lines",
    "polygon_area",
    "read_class_file",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ON_ERROR = ("raise", "skip")
_ORIENTATION = 0x0112  # the EXIF tag
IMAGE_MODES = ("copy", "link")


class ConversionError(ValueError):
    """Bad input; the message starts with ``file:line:`` (or ``file:`` for a whole file)."""


@dataclass
class ConversionReport:
    """What a conversion did: per output json the images and annotations written, the images
    left out (``on_error='skip'``; ``output: file:line: reason``, once per output listing
    the image) and the boxes clipped (``file:line: box ... clipped to ...``)."""

    images: dict[str, int] = field(default_factory=dict)
    annotations: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    clipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{name}: {self.images[name]} images, {self.annotations[name]} annotations"
            for name in self.images
        ]
        if self.clipped:
            lines.append(f"{len(self.clipped)} boxes clipped to their image:")
            lines += [f"  {c}" for c in self.clipped]
        if self.skipped:
            lines.append(f"{len(self.skipped)} images left out (on_error='skip'):")
            lines += [f"  {s}" for s in self.skipped]
        return "\n".join(lines)


# ---- files with line numbers ---------------------------------------------------------------
class LinedElement(ET.Element):
    """An ElementTree element that knows its ``line`` in the XML file."""

    line: int = 0


def parse_xml_with_lines(path: Path) -> LinedElement:
    """Root of the XML file ``path``; every element carries ``.line``.

    Raises ConversionError naming the file and line where the XML is not well-formed."""
    builder = ET.TreeBuilder(element_factory=LinedElement)
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict) -> None:
        builder.start(tag, attrs).line = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as e:
        raise ConversionError(f"{path}:{e.lineno}: not well-formed XML ({e})") from None
    return builder.close()


class LinedDict(dict):
    """A JSON object that knows the ``line`` it starts on."""

    line: int = 0


def load_json_with_lines(path: Path) -> object:
    """The JSON file ``path`` with every object a :class:`LinedDict`.

    Raises ConversionError naming the file and line where the JSON is malformed."""
    text = path.read_text(encoding="utf-8")
    newlines = [i for i, c in enumerate(text) if c == "\n"]

    def parse_object(s_and_end, *args):
        start = s_and_end[1] - 1  # just after the '{'
        obj, end = json.decoder.JSONObject(s_and_end, *args)
        lined = LinedDict(obj)
        lined.line = bisect.bisect_right(newlines, start) + 1
        return lined, end

    decoder = json.JSONDecoder()
    decoder.parse_object = parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # the one that calls it
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def read_class_file(path: Path) -> list[str]:
    """Class names, one a line (blank lines ignored), e.g. YOLO's ``classes.txt``."""
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ConversionError(f"{path}: no class names (expected one name a line)")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConversionError(f"{path}: class names repeated: {dup}")
    return names


def polygon_area(xy: Sequence[float]) -> float:
    """Shoelace area of the polygon ``[x0, y0, x1, y1, ...]`` (pixels²)."""
    xs, ys = xy[0::2], xy[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


# ---- the COCO output ---------------------------------------------------------------------
class CocoWriter:
    """Collects images and objects, then writes ``out/annotations/instances_<name>.json`` per
    output and the images under ``out/images/``.

    Args:
        out: the output folder.
        classes: class names; category ids 1..K follow this order. ``None``: the format
            module sets them (:meth:`set_classes`) before adding objects.
        images: 'copy' the image files, or 'link' them (symbolic links to absolute paths).
        on_error: 'raise' or 'skip' (see the module doc).
    """

    def __init__(
        self,
        out: Path,
        classes: Sequence[str] | None = None,
        images: str = "copy",
        on_error: str = "raise",
    ) -> None:
        if images not in IMAGE_MODES:
            raise ValueError(f"images must be one of {IMAGE_MODES}, got {images!r}")
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.out = Path(out)
        self.image_mode = images
        self.on_error = on_error
        self.classes: list[str] | None = None
        if classes is not None:
            self.set_classes(classes, "the given classes")
        self.report = ConversionReport()
        self._placed: dict[str, Path] = {}  # file_name under images/ -> its source
        self._pending: list[tuple[Path, str]] = []  # the current image's files to write
        self._coco: dict | None = None
        self._name = ""

    def set_classes(self, classes: Sequence[str], source: str) -> None:
        names = [str(c).strip() for c in classes]
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise ConversionError(
                f"{source}: class names must be non-empty and distinct, got {names}"
            )
        self.classes = names

    def category_id(self, name: str, where: str) -> int:
        """The 1-based category id of ``name``; ConversionError at ``where`` if unknown."""
        if name not in self.classes:
            raise ConversionError(f"{where}: unknown class {name!r} (classes: {self.classes})")
        return self.classes.index(name) + 1

    @contextmanager
    def output(self, name: str) -> Iterator[None]:
        """Collect one output json, ``instances_<name>.json``, written when the block ends."""
        if self.classes is None:
            raise ConversionError(f"no class names for {name!r} (give --classes)")
        self._coco, self._name = dict(images=[], annotations=[]), name
        yield
        coco, self._coco = self._coco, None
        coco["categories"] = [
            dict(id=i + 1, name=n, supercategory="") for i, n in enumerate(self.classes)
        ]
        path = self.out / "annotations" / f"instances_{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(coco), encoding="utf-8")
        self.report.images[name] = len(coco["images"])
        self.report.annotations[name] = len(coco["annotations"])

    @contextmanager
    def image(self) -> Iterator[None]:
        """Wrap the parsing of one image: with ``on_error='skip'`` a ConversionError inside
        leaves the image out (counted, with its reason) instead of raising."""
        images, anns = len(self._coco["images"]), len(self._coco["annotations"])
        self._pending = []
        try:
            yield
        except ConversionError as e:
            if self.on_error == "raise":
                raise
            del self._coco["images"][images:], self._coco["annotations"][anns:]
            self.report.skipped.append(f"{self._name}: {e}")
        else:  # image files are written only for images kept
            for src, file_name in self._pending:
                self._place(src, file_name)

    def add_image(
        self, src: Path, file_name: str, where: str, size: tuple[int, int] | None = None
    ) -> tuple[int, int, int]:
        """Add the image file ``src`` as ``images/<file_name>``; returns (image id, H, W).

        H, W are the image's as shown (its EXIF orientation applied, as annotation tools and
        ``LoadImage`` do); ``size`` (H, W) stated by the annotation must match them."""
        if not src.is_file():
            raise ConversionError(f"{where}: image not found: {src}")
        try:
            with Image.open(src) as im:
                width, height = im.size
                if im.getexif().get(_ORIENTATION) in (5, 6, 7, 8):  # turned by 90 degrees
                    width, height = height, width  # as LoadImage (cv2.IMREAD_COLOR) shows it
        except OSError as e:
            raise ConversionError(f"{where}: cannot read image {src} ({e})") from None
        if size is not None and tuple(size) != (height, width):
            raise ConversionError(
                f"{where}: the annotation states the image size (h, w) = {tuple(size)}, "
                f"but {src} is {(height, width)}"
            )
        placed = self._placed.get(file_name)
        if placed is not None and placed != src.resolve():  # e.g. two splits' a.jpg
            raise ConversionError(
                f"{where}: images {placed} and {src} would both be images/{file_name}"
            )
        self._pending.append((src, file_name))
        image_id = len(self._coco["images"]) + 1
        self._coco["images"].append(
            dict(id=image_id, file_name=file_name, height=height, width=width)
        )
        return image_id, height, width

    def _place(self, src: Path, file_name: str) -> None:
        if file_name in self._placed:  # another output (split) wrote it already
            return
        dst = self.out / "images" / file_name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if self.image_mode == "copy":
            shutil.copyfile(src, dst)
        else:
            os.symlink(src.resolve(), dst)
        self._placed[file_name] = src.resolve()

    def _clip(self, x: float, y: float, w: int, h: int) -> tuple[float, float]:
        return min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h))

    def add_box(
        self,
        image: tuple[int, int, int],
        name: str,
        xyxy: Sequence[float],
        where: str,
        iscrowd: int = 0,
        polygon: Sequence[float] | None = None,
    ) -> None:
        """One object of class ``name`` on ``image`` (id, H, W): a box ``xyxy`` in pixels, or
        the extent of ``polygon`` ``[x0, y0, ...]`` (``xyxy`` ignored then)."""
        image_id, h, w = image
        category_id = self.category_id(name, where)
        segmentation = None
        if polygon is not None:
            pts = [self._clip(x, y, w, h) for x, y in zip(polygon[0::2], polygon[1::2])]
            segmentation = [[float(v) for p in pts for v in p]]
            xyxy = [min(p[0] for p in pts), min(p[1] for p in pts)]
            xyxy += [max(p[0] for p in pts), max(p[1] for p in pts)]
            if polygon_area(segmentation[0]) <= 0:
                raise ConversionError(f"{where}: polygon of zero area inside the image")
        x1, y1, x2, y2 = map(float, xyxy)
        if not x2 > x1 or not y2 > y1:
            raise ConversionError(f"{where}: box {[x1, y1, x2, y2]} has zero or negative size")
        (cx1, cy1), (cx2, cy2) = self._clip(x1, y1, w, h), self._clip(x2, y2, w, h)
        if not cx2 > cx1 or not cy2 > cy1:
            raise ConversionError(f"{where}: box {[x1, y1, x2, y2]} lies outside the {w}x{h} image")
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            self.report.clipped.append(
                f"{where}: box {[x1, y1, x2, y2]} clipped to {[cx1, cy1, cx2, cy2]}"
            )
        bbox = [cx1, cy1, cx2 - cx1, cy2 - cy1]
        ann = dict(
            id=len(self._coco["annotations"]) + 1,
            image_id=image_id,
            category_id=category_id,
            bbox=bbox,
            area=polygon_area(segmentation[0]) if segmentation else bbox[2] * bbox[3],
            iscrowd=iscrowd,
        )
        if segmentation:
            ann["segmentation"] = segmentation
        self._coco["annotations"].append(ann)
