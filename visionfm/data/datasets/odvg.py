"""ODVG json lines: detection and visual grounding in one format (Grounding DINO, Liu et al.
2023; mm-grounding-dino's ``ODVGDataset``).

One JSON object per line, boxes ``bbox`` xyxy in pixels::

    {"filename": "0.jpg", "height": 128, "width": 160,
     "detection": {"instances": [{"bbox": [x1, y1, x2, y2], "label": 2, "category": "triangle"}]}}
    {"filename": "0.jpg", "height": 128, "width": 160,
     "grounding": {"caption": "the green triangle left of the star",
                   "regions": [{"bbox": [x1, y1, x2, y2], "phrase": "the green triangle ...",
                                "tokens_positive": [[0, 35]]}]}}

A detection line's ``label`` is a key of ``label_map_file`` (json ``{"0": "circle", ...}``,
whose order is the class order); it becomes a class prompt (see
:mod:`~visionfm.data.datasets.grounding`). A grounding line's regions with the same
``tokens_positive`` form one phrase (several boxes); it is a free-text caption
(``prompt_type='expression'``).

Config::

    dataset=dict(type='ODVGDataset', data_root='data/synthetic/',
                 ann_file='annotations/odvg_train.jsonl',
                 label_map_file='annotations/label_map.json',
                 data_prefix=dict(img='images/train/'), max_tokens=256, pipeline=[...])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence

from visionfm.registry import DATASETS

from .base import VisionDataset
from .grounding import ClassPromptMixin, GroundingFormatError, InvalidEntries

__all__ = ["ODVGDataset", "check_spans", "load_label_map", "xyxy_in_image"]


def load_label_map(path: str) -> tuple[list[str], dict[str, int]]:
    """``label_map_file`` -> (class names in file order, label key -> class index)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label map not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            label_map = json.load(f)
    except json.JSONDecodeError as e:
        raise GroundingFormatError(f"label map {path} is not valid JSON: {e}") from e
    if not isinstance(label_map, dict) or not label_map:
        raise GroundingFormatError(f"label map {path} must be a non-empty {{id: name}} object")
    bad = {k: v for k, v in label_map.items() if not isinstance(v, str) or not v.strip()}
    if bad:
        raise GroundingFormatError(f"label map {path}: names must be non-empty strings: {bad}")
    return list(label_map.values()), {str(k): i for i, k in enumerate(label_map)}


def xyxy_in_image(bbox, h: int, w: int, where: str) -> list[float]:
    """``bbox`` [x1, y1, x2, y2] clipped to an (h, w) image; refused (naming ``where``) unless
    4 finite numbers with area left after clipping."""
    ok = isinstance(bbox, list) and len(bbox) == 4
    ok = ok and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    if ok:
        box = [max(bbox[0], 0.0), max(bbox[1], 0.0), min(bbox[2], w), min(bbox[3], h)]
        if box[2] > box[0] and box[3] > box[1]:
            return [float(v) for v in box]
    raise GroundingFormatError(
        f"{where}: 'bbox' must be [x1, y1, x2, y2] with x1 < x2, y1 < y2 inside the "
        f"{w}x{h} image, got {bbox!r}"
    )


def check_spans(spans, caption: str, where: str) -> list[list[int]]:
    """``tokens_positive`` [[start, end], ...] checked to lie inside ``caption``."""
    ok = isinstance(spans, list) and bool(spans)
    ok = ok and all(
        isinstance(s, list)
        and len(s) == 2
        and all(isinstance(v, int) for v in s)
        and 0 <= s[0] < s[1] <= len(caption)
        for s in spans
    )
    if not ok:
        raise GroundingFormatError(
            f"{where}: 'tokens_positive' must be [[start, end], ...] character spans with "
            f"0 <= start < end <= {len(caption)} (the caption's length), got {spans!r} for "
            f"caption {caption!r}"
        )
    return [list(s) for s in spans]


@DATASETS.register_module()
class ODVGDataset(ClassPromptMixin, VisionDataset):
    """ODVG json lines + image folder (see the module doc).

    Args:
        ann_file: the ``.jsonl`` file, relative to ``data_root`` unless absolute.
        label_map_file: json ``{label: name}`` of the detection lines (relative to
            ``data_root`` unless absolute); needed when there are detection lines.
        pipeline: transforms ending with ``PackInputs``.
        data_prefix: ``img``: the image folder, joined with each line's ``filename``.
        max_tokens: token budget of a training class prompt (see
            :class:`~visionfm.data.datasets.grounding.ClassPrompt`).
        text_model: tokenizer folder for the budget (None: the default MiniLM).
        on_error: 'raise' a :class:`GroundingFormatError` naming the file and line of a
            malformed line (not JSON, missing keys, bad boxes, ``tokens_positive`` outside
            the caption, unknown label), or 'skip' it (counted in ``num_invalid``, logged);
            also for samples whose files fail to load in training.
        **base_args: ``VisionDataset``'s (``data_root``, ``test_mode``, ``indices`` ...).

    Each sample dict has ``img_path``, ``height``, ``width``, ``instances`` (``bbox`` xyxy,
    ``bbox_label``, ``ignore_flag``) and, for grounding lines, ``text``, ``phrases``,
    ``phrase_spans``, ``prompt_type='expression'``. ``metainfo['classes']``: the label map.
    """

    def __init__(
        self,
        ann_file: str,
        label_map_file: str | None = None,
        pipeline: Sequence[dict | Callable] = (),
        data_prefix: dict | None = None,
        max_tokens: int = 256,
        text_model: str | None = None,
        on_error: str = "raise",
        **base_args,
    ) -> None:
        root = base_args.get("data_root", "")
        if label_map_file and root and not os.path.isabs(label_map_file):
            label_map_file = os.path.join(root, label_map_file)
        self.label_map_file = label_map_file
        self.max_tokens = max_tokens
        self.text_model = text_model
        self.num_invalid = 0
        super().__init__(
            pipeline,
            on_error,
            ann_file=ann_file,
            data_prefix=dict(data_prefix or dict(img="")),
            **base_args,
        )

    def load_data_list(self) -> list[dict]:
        classes, self._label_index = [], {}
        if self.label_map_file:
            classes, self._label_index = load_label_map(self.label_map_file)
        self._metainfo["classes"] = tuple(classes)
        if not os.path.isfile(self.ann_file):
            raise FileNotFoundError(f"annotation file not found: {self.ann_file}")
        invalid = InvalidEntries(self.on_error, self.ann_file)
        data_list = []
        with open(self.ann_file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    data_list.append(self._parse_line(line, f"{self.ann_file}, line {lineno}"))
                except GroundingFormatError as err:
                    invalid(err)
        self.num_invalid = invalid.count
        invalid.report()
        return data_list

    def _parse_line(self, line: str, where: str) -> dict:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise GroundingFormatError(f"{where}: not valid JSON ({e})") from e
        if not isinstance(obj, dict):
            raise GroundingFormatError(f"{where}: must be a JSON object, got {line[:80]!r}")
        name, h, w = obj.get("filename"), obj.get("height"), obj.get("width")
        if not isinstance(name, str) or not name:
            raise GroundingFormatError(f"{where}: 'filename' must be a non-empty string")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
            raise GroundingFormatError(
                f"{where}: 'height' and 'width' must be positive integers, got {h!r}, {w!r}"
            )
        info = dict(img_path=os.path.join(self.data_prefix["img"], name), height=h, width=w)
        if isinstance(obj.get("detection"), dict):
            return self._detection(obj["detection"], info, where)
        if isinstance(obj.get("grounding"), dict):
            return self._grounding(obj["grounding"], info, where)
        raise GroundingFormatError(f"{where}: needs a 'detection' or a 'grounding' object")

    def _detection(self, det: dict, info: dict, where: str) -> dict:
        if not self._label_index:
            raise GroundingFormatError(
                f"{where}: a detection line needs the dataset's label_map_file (json {{id: name}})"
            )
        instances = det.get("instances", [])
        if not isinstance(instances, list):
            raise GroundingFormatError(f"{where}: 'detection.instances' must be a list")
        info["instances"] = []
        for i, inst in enumerate(instances):
            at = f"{where}, instance {i}"
            if not isinstance(inst, dict) or str(inst.get("label")) not in self._label_index:
                raise GroundingFormatError(
                    f"{at}: 'label' must be a key of {self.label_map_file}, got "
                    f"{inst.get('label') if isinstance(inst, dict) else inst!r}"
                )
            bbox = xyxy_in_image(inst.get("bbox"), info["height"], info["width"], at)
            label = self._label_index[str(inst["label"])]
            info["instances"].append(dict(bbox=bbox, bbox_label=label, ignore_flag=0))
        info["prompt_type"] = "classes"
        return info

    def _grounding(self, ground: dict, info: dict, where: str) -> dict:
        caption, regions = ground.get("caption"), ground.get("regions")
        if not isinstance(caption, str) or not caption.strip():
            raise GroundingFormatError(f"{where}: 'grounding.caption' must be a non-empty string")
        if not isinstance(regions, list) or not regions:
            raise GroundingFormatError(f"{where}: 'grounding.regions' must be a non-empty list")
        phrase_index: dict[tuple, int] = {}
        phrases, spans, instances = [], [], []
        for i, region in enumerate(regions):
            at = f"{where}, region {i}"
            if not isinstance(region, dict):
                raise GroundingFormatError(f"{at}: must be an object")
            region_spans = check_spans(region.get("tokens_positive"), caption, at)
            bbox = xyxy_in_image(region.get("bbox"), info["height"], info["width"], at)
            key = tuple(map(tuple, region_spans))
            if key not in phrase_index:
                phrase_index[key] = len(phrases)
                phrase = region.get("phrase")
                if not isinstance(phrase, str) or not phrase:
                    phrase = " ".join(caption[s:e] for s, e in region_spans)
                phrases.append(phrase)
                spans.append(region_spans)
            instances.append(dict(bbox=bbox, bbox_label=phrase_index[key], ignore_flag=0))
        info.update(
            text=caption,
            phrases=phrases,
            phrase_spans=spans,
            prompt_type="expression",
            instances=instances,
        )
        return info
