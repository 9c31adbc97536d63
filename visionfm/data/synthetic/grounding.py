"""The synthetic world's grounding annotations, in the formats real grounding data comes in.

Written by ``make_synthetic`` beside the COCO files (``annotations/``)::

    label_map.json            {"0": "circle", ...}: ODVG label -> class name (class order)
    odvg_{split}.jsonl        ODVG json lines: one detection line per image (boxes xyxy,
                              ``label`` = category id - 1), then one grounding line per
                              image with expressions: its expressions joined into one
                              caption ("the red circle . the star left of the square ."),
                              one region (phrase, span, box) per expression
    refcoco_{split}.json      MDETR-style RefCOCO json: one ``images`` entry per expression
                              (``caption``, ``original_img_id``, ``sentence_id``,
                              ``held_out``), one ``annotations`` box each (xywh)

Open-set hold-out: every expression that mentions a ``(colour, category)`` pair of
``holdout_pairs`` as words ("the green triangle", "the star left of the small green
triangle") is left out of the TRAIN split's grounding lines and refcoco json; green things
and triangles still appear everywhere else (images, detection lines, other expressions).
The val split keeps them with ``held_out: true``, so a metric can score them apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from .world import CLASSES, coco_categories

__all__ = ["HOLDOUT_PAIRS", "mentions", "write_grounding", "write_label_map"]

HOLDOUT_PAIRS: tuple[tuple[str, str], ...] = (("green", "triangle"),)


def mentions(expression: str, pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether ``expression`` names one of the ``(colour, category)`` pairs ("green triangle")."""
    return any(re.search(rf"\b{color} {category}\b", expression) for color, category in pairs)


def _dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")))


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def write_label_map(root: Path) -> Path:
    path = root / "annotations" / "label_map.json"
    _dump({str(i): name for i, name in enumerate(CLASSES)}, path)
    return path


def write_grounding(
    root: Path,
    split: str,
    images: list[dict],
    annotations: list[dict],
    refs: list[dict],
    holdout_pairs: Sequence[tuple[str, str]] = HOLDOUT_PAIRS,
) -> dict[str, Path]:
    """Write ``odvg_{split}.jsonl`` and ``refcoco_{split}.json`` from the split's COCO
    ``images`` / ``annotations`` (ids 1..) and refs; returns their paths."""
    by_image: dict[int, list[dict]] = {img["id"]: [] for img in images}
    for ann in annotations:
        by_image[ann["image_id"]].append(ann)
    image_of = {img["id"]: img for img in images}
    ann_of = {ann["id"]: ann for ann in annotations}

    def head(img: dict) -> dict:
        return {"filename": img["file_name"], "height": img["height"], "width": img["width"]}

    lines = []
    for img in images:
        instances = [
            {
                "bbox": _xyxy(a["bbox"]),
                "label": a["category_id"] - 1,
                "category": CLASSES[a["category_id"] - 1],
            }
            for a in by_image[img["id"]]
        ]
        lines.append({**head(img), "detection": {"instances": instances}})
    ref_images, ref_anns = [], []
    expressions: dict[int, list[tuple[str, list[float]]]] = {}  # image id -> (text, xyxy)
    for ref in refs:
        img, ann = image_of[ref["image_id"]], ann_of[ref["ann_id"]]
        for sent in ref["sentences"]:
            caption = sent["sent"]
            held_out = mentions(caption, holdout_pairs)
            if held_out and split == "train":
                continue
            span = [[0, len(caption)]]
            expressions.setdefault(img["id"], []).append((caption, _xyxy(ann["bbox"])))
            k = len(ref_images) + 1
            ref_images.append(
                {
                    **{key: img[key] for key in ("file_name", "height", "width")},
                    "id": k,
                    "original_img_id": img["id"],
                    "caption": caption,
                    "sentence_id": sent["sent_id"],
                    "ref_id": ref["ref_id"],
                    "dataset_name": "synthetic_refcoco",
                    "held_out": held_out,
                }
            )
            ref_anns.append(
                {
                    "id": k,
                    "image_id": k,
                    "bbox": ann["bbox"],
                    "area": ann["area"],
                    "iscrowd": 0,
                    "category_id": ann["category_id"],
                    "tokens_positive": span,
                    "original_id": ann["id"],
                }
            )
    for image_id, items in expressions.items():  # several expressions train in one pass
        caption, regions = "", []
        for text, box in items:
            start = len(caption)
            caption += text + " . "
            regions.append(
                {"bbox": box, "phrase": text, "tokens_positive": [[start, start + len(text)]]}
            )
        grounding = {"caption": caption.rstrip(), "regions": regions}
        lines.append({**head(image_of[image_id]), "grounding": grounding})
    odvg = root / "annotations" / f"odvg_{split}.jsonl"
    odvg.write_text("".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines))
    refcoco = root / "annotations" / f"refcoco_{split}.json"
    info = {"description": "visionfm synthetic world, MDETR-style refcoco", "split": split}
    _dump(
        {
            "info": info,
            "images": ref_images,
            "annotations": ref_anns,
            "categories": coco_categories(),
        },
        refcoco,
    )
    return {"odvg": odvg, "refcoco": refcoco}
