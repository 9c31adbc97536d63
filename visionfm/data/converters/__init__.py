"""Dataset converters: YOLO txt, Pascal VOC xml, labelme json and CVAT xml to a COCO
detection json + image folder that :class:`~visionfm.data.CocoDataset` reads::

    OUT/annotations/instances_<split or name>.json      OUT/images/...

The rules every format follows (class order, clipping, bad input by file and line,
``on_error``) are in :mod:`.common`; each format's layout and coordinate convention in its
module. ``tools/convert_dataset.py`` is the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .common import CocoWriter, ConversionError, ConversionReport
from .cvat import convert_cvat
from .labelme import convert_labelme
from .voc import convert_voc
from .yolo import convert_yolo

__all__ = ["FORMATS", "ConversionError", "ConversionReport", "convert_dataset"]

FORMATS: dict[str, Callable[..., None]] = dict(
    yolo=convert_yolo, voc=convert_voc, labelme=convert_labelme, cvat=convert_cvat
)


def convert_dataset(
    fmt: str,
    src: str | Path,
    out: str | Path,
    classes: Sequence[str] | None = None,
    images: str = "copy",
    on_error: str = "raise",
    splits: Sequence[str] | None = None,
) -> ConversionReport:
    """Convert the dataset at ``src`` in format ``fmt`` (a key of :data:`FORMATS`) to COCO
    under ``out``; ``classes`` fixes the class order (category ids 1..K), ``images`` is
    'copy' or 'link', ``on_error`` 'raise' or 'skip', ``splits`` the VOC ImageSets/Main
    files to convert. Returns what was written, clipped and skipped."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {sorted(FORMATS)}")
    if splits is not None and fmt != "voc":
        raise ValueError(f"splits are VOC's ImageSets/Main files; {fmt} finds its own splits")
    src = Path(src)
    if not src.exists():
        raise ConversionError(f"{src}: no such file or folder (the {fmt} dataset to convert)")
    writer = CocoWriter(Path(out), classes, images=images, on_error=on_error)
    if splits is not None:
        convert_voc(src, writer, list(splits))
    else:
        FORMATS[fmt](src, writer)
    return writer.report
