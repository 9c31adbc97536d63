"""Referring expressions in MDETR's COCO-like json (RefCOCO / RefCOCO+ / RefCOCOg; Kamath et
al., "MDETR", 2021; Yu et al., "Modeling Context in Referring Expressions", 2016).

Each ``images`` entry is ONE expression of a photo: ``id`` (the expression's), ``file_name``,
``height``, ``width``, ``caption`` (the expression), optional ``original_img_id``,
``sentence_id``, ``dataset_name`` and ``held_out`` (the expression names something left out
of training, see ``visionfm.data.synthetic.grounding``). ``annotations`` give its ONE box:
``bbox`` xywh, ``image_id``, ``category_id``, optional ``tokens_positive`` [[start, end]]
(the referent's words; the whole caption when absent).

Config::

    dataset=dict(type='RefCOCODataset', data_root='data/synthetic/',
                 ann_file='annotations/refcoco_val.json', data_prefix=dict(img='images/val/'),
                 test_mode=True, pipeline=[...])
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence

from visionfm.registry import DATASETS

from .base import VisionDataset
from .coco_schema import (
    CocoFormatError,
    check_annotation,
    check_categories,
    check_image,
    load_coco_json,
)
from .grounding import InvalidEntries
from .odvg import check_spans, xyxy_in_image

__all__ = ["RefCOCODataset"]


@DATASETS.register_module()
class RefCOCODataset(VisionDataset):
    """One sample per expression: ``text`` = the caption, ``phrases`` = [caption],
    ``phrase_spans`` = [its ``tokens_positive``], one instance with ``bbox_label`` 0.

    Args:
        ann_file: MDETR-style json (see the module doc), relative to ``data_root``.
        pipeline: transforms ending with ``PackInputs``.
        data_prefix: ``img``: the image folder, joined with ``file_name``.
        dataset_name: metainfo ``dataset_name`` of every sample (None: the image entry's
            ``dataset_name``, else 'refexp'); metrics report per ``dataset_name`` / ``split``.
        split: metainfo ``split`` (None: the ann file's name without extension).
        on_error: 'raise' or 'skip' (counted in ``num_invalid``, logged) a malformed image /
            annotation entry, and an expression without exactly one box (the error names the
            file and the image id); also samples whose files fail to load in training.
        **base_args: ``VisionDataset``'s (``data_root``, ``test_mode``, ``indices`` ...).

    Metainfo per sample: ``img_id`` and ``expression_id`` (the entry's ``id``),
    ``dataset_name``, ``split``, ``held_out``, ``prompt_type='expression'``.
    """

    def __init__(
        self,
        ann_file: str,
        pipeline: Sequence[dict | Callable] = (),
        data_prefix: dict | None = None,
        dataset_name: str | None = None,
        split: str | None = None,
        on_error: str = "raise",
        **base_args,
    ) -> None:
        self.dataset_name = dataset_name
        self.split = split or os.path.splitext(os.path.basename(ann_file))[0]
        self.num_invalid = 0
        super().__init__(
            pipeline,
            on_error,
            ann_file=ann_file,
            data_prefix=dict(data_prefix or dict(img="")),
            **base_args,
        )

    def load_data_list(self) -> list[dict]:
        path = self.ann_file
        coco = load_coco_json(path)
        categories = check_categories(coco["categories"], path)
        invalid = InvalidEntries(self.on_error, path)
        images, entries = {}, []
        for i, img in enumerate(coco["images"]):
            try:
                checked = check_image(img, i, path)
                if not isinstance(img.get("caption"), str) or not img["caption"].strip():
                    raise CocoFormatError(
                        f"{path}: image id {img['id']!r}: 'caption' must be a non-empty string",
                        "image",
                    )
            except CocoFormatError as err:
                invalid(err)
                continue
            images[img["id"]] = checked
            entries.append(img)
        anns = defaultdict(list)
        for i, ann in enumerate(coco["annotations"]):
            try:
                check_annotation(ann, i, path, images, categories, 0)
            except CocoFormatError as err:
                invalid(err)
                continue
            anns[ann["image_id"]].append(ann)
        data_list = []
        for img in entries:
            try:
                data_list.append(self._parse(img, anns[img["id"]], path))
            except CocoFormatError as err:
                invalid(err)
        self.num_invalid = invalid.count
        invalid.report()
        return data_list

    def _parse(self, img: dict, anns: list[dict], path: str) -> dict:
        where = f"{path}: image id {img['id']!r}"
        if len(anns) != 1:
            raise CocoFormatError(
                f"{where} (expression {img['caption']!r}) has {len(anns)} boxes; a referring "
                f"expression needs exactly one",
                "image",
            )
        caption, ann = img["caption"], anns[0]
        h, w = int(img["height"]), int(img["width"])
        x, y, bw, bh = ann["bbox"]
        try:
            bbox = xyxy_in_image([x, y, x + bw, y + bh], h, w, where)
            spans = check_spans(ann.get("tokens_positive") or [[0, len(caption)]], caption, where)
        except ValueError as err:
            raise CocoFormatError(str(err), "annotation") from err
        return dict(
            img_path=os.path.join(self.data_prefix["img"], img["file_name"]),
            img_id=img["id"],
            height=h,
            width=w,
            text=caption,
            phrases=[caption],
            phrase_spans=[spans],
            prompt_type="expression",
            expression_id=img["id"],
            dataset_name=self.dataset_name or img.get("dataset_name") or "refexp",
            split=self.split,
            held_out=bool(img.get("held_out", False)),
            instances=[dict(bbox=bbox, bbox_label=0, ignore_flag=0)],
        )
