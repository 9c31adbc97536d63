"""CVAT for images 1.1 xml to COCO.

SRC is CVAT's export folder (``annotations.xml`` and ``images/``), or the xml file itself
with the images in ``images/`` beside it::

    <annotations><version>1.1</version>
      <meta><task><labels><label><name>cat</name></label>...</labels></task></meta>
      <image id="0" name="a.jpg" width="640" height="480" subset="Train">
        <box label="cat" xtl="10.5" ytl="20" xbr="110" ybr="90" occluded="0"/>
        <polygon label="dog" points="1,2;30,4;15,40"/>
      </image>
    </annotations>

Coordinates are pixels of the continuous image plane (as CVAT's own COCO export). One
output per ``subset`` (the images without one: an output named after SRC). Only ``<box>``
and ``<polygon>`` are converted; other children of ``<image>`` (polyline, points, ellipse,
mask, cuboid, skeleton, tag) and rotated boxes (``rotation`` other than 0) have no COCO
detection equivalent and are bad input.

Classes: the given list, else the labels of ``<meta>`` in their order, else every label
found, sorted.
"""

from __future__ import annotations

from pathlib import Path

from .common import CocoWriter, ConversionError, LinedElement, parse_xml_with_lines


def _float(el: LinedElement, key: str, where: str) -> float:
    try:
        return float(el.attrib[key])
    except (KeyError, ValueError):
        raise ConversionError(
            f"{where}: <{el.tag}> needs a number {key}=, got {el.attrib.get(key)!r}"
        ) from None


def _polygon(el: LinedElement, where: str) -> list[float]:
    try:
        xy = [float(v) for p in el.attrib["points"].split(";") for v in p.split(",")]
    except (KeyError, ValueError):
        xy = []
    if len(xy) < 6 or len(xy) % 2:
        raise ConversionError(
            f'{where}: <polygon> needs points="x0,y0;x1,y1;x2,y2..." (3 or more), '
            f"got {el.attrib.get('points')!r}"
        )
    return xy


def _convert_image(writer: CocoWriter, xml: Path, el: LinedElement, images: Path) -> None:
    where = f"{xml}:{el.line}"
    name = el.attrib.get("name")
    if not name:
        raise ConversionError(f"{where}: <image> has no name=")
    stated = (int(_float(el, "height", where)), int(_float(el, "width", where)))
    image = writer.add_image(images / name, name, where, stated)
    for obj in el:
        where = f"{xml}:{obj.line}"
        if obj.tag not in ("box", "polygon"):
            raise ConversionError(
                f"{where}: <{obj.tag}> is not converted (only <box> and <polygon> have a COCO "
                "detection equivalent)"
            )
        label = obj.attrib.get("label")
        if not label:
            raise ConversionError(f"{where}: <{obj.tag}> has no label=")
        if obj.tag == "polygon":
            writer.add_box(image, label, [], where, polygon=_polygon(obj, where))
            continue
        rotation = _float(obj, "rotation", where) if "rotation" in obj.attrib else 0.0
        if rotation:
            raise ConversionError(
                f"{where}: rotated <box> (rotation={obj.attrib['rotation']}) has no COCO "
                "(axis-aligned) equivalent"
            )
        xyxy = [_float(obj, k, where) for k in ("xtl", "ytl", "xbr", "ybr")]
        writer.add_box(image, label, xyxy, where)


def convert_cvat(src: Path, writer: CocoWriter) -> None:
    """Convert a CVAT for images 1.1 export ``src`` (see the module doc) through ``writer``."""
    xml = src if src.is_file() else src / "annotations.xml"
    if not xml.is_file():
        raise ConversionError(f"{src}: expected a CVAT xml file or a folder with annotations.xml")
    root = parse_xml_with_lines(xml)
    if root.tag != "annotations":
        raise ConversionError(f"{xml}:{root.line}: root <{root.tag}>, expected <annotations>")
    images = root.findall("image")
    if writer.classes is None:
        meta = [(n.text or "").strip() for n in root.iterfind("meta//labels/label/name")]
        found = {o.attrib.get("label", "") for im in images for o in im}
        writer.set_classes(meta or sorted(found - {""}), f"{xml}: the labels")
    default = src.name if src.is_dir() else src.parent.name
    subsets: dict[str, list[LinedElement]] = {}
    for image in images:
        subsets.setdefault(image.attrib.get("subset") or default, []).append(image)
    for name, members in subsets.items():
        with writer.output(name):
            for image in members:
                with writer.image():
                    _convert_image(writer, xml, image, xml.parent / "images")
