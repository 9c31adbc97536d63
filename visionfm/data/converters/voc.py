"""Pascal VOC xml to COCO (Everingham et al., 2010).

Layout::

    SRC/Annotations/<id>.xml  SRC/JPEGImages/<filename>  [SRC/ImageSets/Main/<split>.txt]

One output per split file (one image id a line; by default those of ``train``, ``val``,
``trainval``, ``test`` that exist), else one output of every xml, named after SRC. An
image listed in several splits is written once.

Each ``<object>`` needs ``<name>`` and ``<bndbox>`` (``xmin ymin xmax ymax``). VOC's
coordinates are 1-based pixel indices, inclusive (``xmin=1, xmax=W`` spans the image), so
the COCO box is ``[xmin - 1, ymin - 1, xmax, ymax]`` in xyxy, as detectron2 reads VOC.
``<difficult>1</difficult>`` objects become ``iscrowd=1``: the COCO way to say "ignore",
which mmdetection's VOC loader does with them too (``ignore_flag``) and which VOC's own
evaluation does (a detection on them is neither a true nor a false positive);
:class:`~visionfm.data.CocoDataset` turns ``iscrowd`` into ``ignore_flag`` and COCOeval
ignores detections matched to them. ``<size>`` must agree with the image file.

Classes: the given list, else every ``<name>`` found, sorted (for the 20 VOC classes that is
VOC's usual order).
"""

from __future__ import annotations

from pathlib import Path

from .common import CocoWriter, ConversionError, LinedElement, parse_xml_with_lines

SPLITS = ("train", "val", "trainval", "test")


def _child(el: LinedElement, tag: str, where: Path) -> LinedElement:
    child = el.find(tag)
    if child is None:
        raise ConversionError(f"{where}:{el.line}: <{el.tag}> has no <{tag}>")
    return child


def _number(el: LinedElement, tag: str, where: Path) -> float:
    child = _child(el, tag, where)
    try:
        return float((child.text or "").strip())
    except ValueError:
        raise ConversionError(
            f"{where}:{child.line}: <{tag}> must be a number, got {child.text!r}"
        ) from None


def _convert_xml(writer: CocoWriter, xml: Path, root: LinedElement, images: Path) -> None:
    filename = _child(root, "filename", xml).text or ""
    size = _child(root, "size", xml)
    stated = (int(_number(size, "height", xml)), int(_number(size, "width", xml)))
    where = f"{xml}:{root.find('filename').line}"
    image = writer.add_image(images / filename.strip(), filename.strip(), where, stated)
    for obj in root.iter("object"):
        name = (_child(obj, "name", xml).text or "").strip()
        box = _child(obj, "bndbox", xml)
        xmin, ymin, xmax, ymax = (_number(box, k, xml) for k in ("xmin", "ymin", "xmax", "ymax"))
        difficult = obj.find("difficult")
        flag = (difficult.text or "0").strip() if difficult is not None else "0"
        if flag not in ("0", "1"):
            raise ConversionError(
                f"{xml}:{difficult.line}: <difficult> must be 0 or 1, got {flag!r}"
            )
        where = f"{xml}:{obj.line}"
        writer.add_box(image, name, [xmin - 1, ymin - 1, xmax, ymax], where, iscrowd=int(flag))


def _parse_all(xmls: list[Path]) -> dict[Path, LinedElement | ConversionError]:
    parsed = {}
    for xml in xmls:
        try:
            parsed[xml] = parse_xml_with_lines(xml)
        except ConversionError as e:
            parsed[xml] = e  # raised (or skipped) when its image is converted
    return parsed


def _split_ids(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(n, line.split()[0]) for n, line in enumerate(lines, 1) if line.strip()]


def convert_voc(src: Path, writer: CocoWriter, splits: list[str] | None = None) -> None:
    """Convert the VOC folder ``src`` (see the module doc) through ``writer``; ``splits``
    names the ImageSets/Main files to convert (default: those of :data:`SPLITS` found)."""
    annotations, images, sets = src / "Annotations", src / "JPEGImages", src / "ImageSets/Main"
    for folder in (annotations, images):
        if not folder.is_dir():
            raise ConversionError(f"{src}: expected Annotations/ and JPEGImages/, no {folder}")
    if splits is None:
        splits = [s for s in SPLITS if (sets / f"{s}.txt").is_file()]
    for s in splits:
        if not (sets / f"{s}.txt").is_file():
            raise ConversionError(f"{src}: split {s!r} has no file {sets / f'{s}.txt'}")
    if splits:  # (split name, [(where, xml)])
        outputs = [
            (
                s,
                [
                    (f"{sets / f'{s}.txt'}:{n}", annotations / f"{i}.xml")
                    for n, i in _split_ids(sets / f"{s}.txt")
                ],
            )
            for s in splits
        ]
    else:
        outputs = [(src.name, [(str(x), x) for x in sorted(annotations.glob("*.xml"))])]
    parsed = _parse_all(sorted({x for _, items in outputs for _, x in items if x.is_file()}))
    if writer.classes is None:
        names = {
            (n.text or "").strip()
            for root in parsed.values()
            if isinstance(root, LinedElement)
            for n in root.iterfind("object/name")
        }
        writer.set_classes(sorted(names), f"{annotations}: the <name>s found")
    for name, items in outputs:
        with writer.output(name):
            for where, xml in items:
                with writer.image():
                    root = parsed.get(xml)
                    if root is None:
                        raise ConversionError(f"{where}: image id listed, but no {xml}")
                    if isinstance(root, ConversionError):
                        raise root
                    _convert_xml(writer, xml, root, images)
