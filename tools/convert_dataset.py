"""Convert a YOLO, Pascal VOC, labelme or CVAT dataset to COCO detection json + images.

    python tools/convert_dataset.py yolo data/my_yolo --out data/my_coco
    python tools/convert_dataset.py voc data/VOC2012 --out data/voc_coco --split train,val
    python tools/convert_dataset.py labelme data/labelme --out data/lm --classes cat,dog
    python tools/convert_dataset.py cvat data/cvat_export --out data/cvat_coco --images link

Writes ``OUT/annotations/instances_<split or name>.json`` and ``OUT/images/`` (json
``file_name``s are relative to it); train on it with a copy of
``configs/custom/dino_vit-t_custom-coco.py`` whose ``data_root`` is OUT/, ``ann_file``s
``annotations/instances_<split>.json`` and ``data_prefix=dict(img='images/')``. Each
format's layout, coordinate convention and class order: ``visionfm.data.converters``.
Bad input (missing image, unknown class, malformed line, box outside the image) stops the
conversion naming the file and line, or with ``--on-error skip`` leaves that image out and
lists it; boxes sticking out of their image are clipped and listed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from visionfm.data.converters import FORMATS, convert_dataset
except ModuleNotFoundError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from visionfm.data.converters import FORMATS, convert_dataset
from visionfm.data.converters.common import read_class_file
from visionfm.engine.cli import run_tool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("format", choices=sorted(FORMATS))
    p.add_argument("src", type=Path, help="the dataset folder (CVAT: or its xml file)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    classes = p.add_mutually_exclusive_group()
    classes.add_argument("--classes", help="class names in order, comma-separated: a,b,c")
    classes.add_argument("--classes-file", type=Path, help="class names, one a line, in order")
    p.add_argument("--images", choices=("copy", "link"), default="copy", help="copy or symlink")
    p.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="bad input: stop (default) or leave its image out and list it",
    )
    p.add_argument("--split", help="VOC: ImageSets/Main files to convert, comma-separated")
    args = p.parse_args(argv)
    if args.split and args.format != "voc":
        p.error(f"--split names VOC's ImageSets/Main files; {args.format} finds its own splits")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",")]
    elif args.classes_file is not None:
        classes = read_class_file(args.classes_file)
    report = convert_dataset(
        args.format,
        args.src,
        args.out,
        classes=classes,
        images=args.images,
        on_error=args.on_error,
        splits=args.split.split(",") if args.split else None,
    )
    print(report.summary())
    print(f"written to {args.out / 'annotations'} and {args.out / 'images'}")


if __name__ == "__main__":
    run_tool(main)
