"""A whole runnable config for a published checkpoint: the family's model, the reference
preprocessing and the class names, for ``tools/convert_checkpoint.py`` and
``Inferencer(FOLDER)`` (one assembly for both).

Hugging Face's ``preprocessor_config.json`` (``DetrImageProcessor``,
``DeformableDetrImageProcessor``, ``RfDetrImageProcessor``, ``Mask2FormerImageProcessor``,
each also as its ``...Fast`` / ``...Pil`` name) becomes our test pipeline and data
preprocessor by :func:`processor_settings`:

=============================================  ===============================================
preprocessor_config.json                       ours
=============================================  ===============================================
``size: {shortest_edge: S, longest_edge: L}``   ``Resize(scale=(L, S), rounding='transformers')``
(or the old ``size: S, max_size: L``)          (short side rounded, long side floored)
``size: {height: H, width: W}``                ``Resize(scale=(W, H), keep_ratio=False)``
``resample`` 2 / 3 (bilinear / bicubic)        ``Resize(backend='torchvision')``: the
                                               antialiased uint8 resize of transformers'
                                               default (torchvision) processors;
                                               ``'torchvision_float'`` for RF-DETR's (the
                                               float image, no antialiasing)
``size_divisor`` (Mask2Former)                 ``Resize(size_divisor=...)`` (it rounds the
                                               resized size up, as HF's resize does)
``rescale_factor`` r, ``image_mean`` m,        ``DataPreprocessor(mean=m / r, std=s / r)``
``image_std`` s                                (0-255 units; the same arithmetic as the fused
                                               rescale-normalise of the fast processors)
``do_pad`` (bottom / right, ``pixel_mask``)    the preprocessor's bottom / right padding to the
                                               batch's largest image; the padding mask from
                                               ``img_shape``
=============================================  ===============================================

With these, our pipeline gives HF's ``pixel_values`` within float rounding (<= 9.5e-7). The PIL
processors (``...ImageProcessorPil``) resize with PIL and differ from the torchvision ones by up
to one grey level (0.0175 after normalising); we reproduce the torchvision ones, which
``AutoImageProcessor.from_pretrained`` returns by default in transformers 5.

Settings we cannot reproduce (a fixed ``pad_size``, ``max_height`` / ``max_width`` sizes,
``do_reduce_labels``, other resampling filters) are refused naming the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from visionfm.models.published import PublishedFamily, families, find_family
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, read_checkpoint, read_hf_config

__all__ = [
    "COCO_CATEGORY_NAMES",
    "DETR_REFERENCE_PROCESSOR",
    "class_names",
    "find_num_classes",
    "processor_settings",
    "published_config",
    "read_processor_config",
]

PROCESSOR_FILE = "preprocessor_config.json"

# COCO 2017 detection categories in id order (ids 1..90; None: an id without a category)
_COCO_BY_ID = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", None, "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", None, "backpack",
    "umbrella", None, None, "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", None, "wine glass", "cup", "fork", "knife", "spoon", "bowl",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut",
    "cake", "chair", "couch", "potted plant", "bed", None, "dining table", None, None, "toilet",
    None, "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven",
    "toaster", "sink", "refrigerator", None, "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
#: COCO's 80 detection categories: ``{category id: name}``.
COCO_CATEGORY_NAMES: Mapping[int, str] = {
    i: name for i, name in enumerate(_COCO_BY_ID, start=1) if name is not None
}

#: The preprocessing of the original DETR / Deformable DETR / DINO evaluation (shortest edge
#: 800, longest 1333, bilinear, ImageNet mean / std), in preprocessor_config.json's terms:
#: what an original checkpoint without a family-specific one is run with.
DETR_REFERENCE_PROCESSOR: Mapping = dict(
    image_processor_type="DetrImageProcessor",
    size=dict(shortest_edge=800, longest_edge=1333),
    resample=2,
    do_rescale=True,
    rescale_factor=1 / 255,
    do_normalize=True,
    image_mean=[0.485, 0.456, 0.406],
    image_std=[0.229, 0.224, 0.225],
    do_pad=True,
)

_PROCESSORS = ("DetrImageProcessor", "DeformableDetrImageProcessor", "RfDetrImageProcessor")
_RESIZE_DIVIDED = ("Mask2FormerImageProcessor", "MaskFormerImageProcessor")
_FLOAT_RESIZE = ("RfDetrImageProcessor",)
_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's codes, as the json stores them


def read_processor_config(folder: str | os.PathLike) -> dict | None:
    """The ``preprocessor_config.json`` of a Hugging Face folder (or of the folder holding a
    weights file), or None when there is none; ``"_file"`` holds its path."""
    path = Path(folder)
    path = (path if path.is_dir() else path.parent) / PROCESSOR_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a {type(config).__name__}, not a json object")
    return {**config, "_file": str(path)}


def _resize(processor: Mapping, where: str, kind: str) -> dict:
    """``Resize`` settings for the processor's ``size`` / ``max_size`` / ``resample``."""
    size = processor.get("size", dict(shortest_edge=800, longest_edge=1333))
    if isinstance(size, int):  # the old form: size (short side) + max_size
        size = dict(shortest_edge=size, longest_edge=processor.get("max_size", 1333))
    resample = processor.get("resample", 2)
    if resample not in _RESAMPLE:
        raise CheckpointError(
            f"{where}: resample={resample!r} is not reproduced (bilinear 2 or bicubic 3 are); "
            "set resample to one of them"
        )
    # RF-DETR's processor resizes the rescaled float image without antialiasing
    backend = "torchvision_float" if kind in _FLOAT_RESIZE else "torchvision"
    common = dict(type="Resize", interpolation=_RESAMPLE[resample], backend=backend)
    if kind in _RESIZE_DIVIDED and processor.get("size_divisor", 32):
        common["size_divisor"] = int(processor.get("size_divisor", 32))
    if size.get("shortest_edge") and size.get("longest_edge"):
        scale = (int(size["longest_edge"]), int(size["shortest_edge"]))
        return dict(common, scale=scale, keep_ratio=True, rounding="transformers")
    if size.get("height") and size.get("width"):
        return dict(common, scale=(int(size["width"]), int(size["height"])), keep_ratio=False)
    raise CheckpointError(
        f"{where}: size={size!r} is not reproduced; use "
        "{'shortest_edge': S, 'longest_edge': L} or {'height': H, 'width': W}"
    )


def processor_settings(processor: Mapping) -> tuple[list[dict], dict]:
    """A ``preprocessor_config.json`` (dict) -> (test pipeline, ``DataPreprocessor`` config)
    giving the same ``pixel_values`` (see the module doc); refuses what we cannot reproduce,
    naming the key."""
    where = processor.get("_file", PROCESSOR_FILE)
    kind = str(processor.get("image_processor_type", "DetrImageProcessor"))
    kind = kind.removesuffix("Fast").removesuffix("Pil")
    if kind not in (*_PROCESSORS, *_RESIZE_DIVIDED):
        raise CheckpointError(
            f"{where}: image_processor_type {processor.get('image_processor_type')!r} is not "
            f"one we reproduce ({', '.join(_PROCESSORS + _RESIZE_DIVIDED)})"
        )
    for key in ("pad_size", "do_reduce_labels"):
        if processor.get(key):
            raise CheckpointError(
                f"{where}: {key}={processor[key]!r} is not reproduced; remove it (images are "
                "padded to the batch's largest, bottom / right, as with its default)"
            )
    pipeline: list[dict] = [dict(type="LoadImage"), dict(type="LoadAnnotations", with_bbox=True)]
    if processor.get("do_resize", True):
        pipeline.append(_resize(processor, where, kind))
    pipeline.append(dict(type="PackInputs"))
    factor = (
        float(processor.get("rescale_factor", 1 / 255))
        if processor.get("do_rescale", True)
        else 1.0
    )
    if processor.get("do_normalize", True):
        mean = [float(m) / factor for m in processor.get("image_mean", (0.485, 0.456, 0.406))]
        std = [float(s) / factor for s in processor.get("image_std", (0.229, 0.224, 0.225))]
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0 / factor] * 3
    return pipeline, dict(type="DataPreprocessor", mean=mean, std=std)


def _names_coco(hf_config: Mapping) -> bool:
    """Whether ``id2label`` names COCO's categories at their category ids."""
    labels = {int(k): v for k, v in (hf_config.get("id2label") or {}).items()}
    return all(labels.get(i) == name for i, name in COCO_CATEGORY_NAMES.items())


def _is_coco_detector(model: Mapping, hf_config: Mapping | None) -> bool:
    """Whether the checkpoint scores COCO's 91 category ids (the published COCO detectors:
    ``id2label`` naming COCO's categories at their ids, or an original checkpoint's 91
    classes)."""
    return find_num_classes(model) == 91 and (hf_config is None or _names_coco(hf_config))


def _set_num_classes(node, num_classes: int) -> None:
    """Every ``num_classes`` of a model config (head, denoising) set to ``num_classes``."""
    if isinstance(node, dict):
        if isinstance(node.get("num_classes"), int):
            node["num_classes"] = num_classes
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            _set_num_classes(value, num_classes)


def class_names(hf_config: Mapping | None, num_classes: int | None) -> tuple[str, ...]:
    """Names of labels 0..num_classes-1: COCO's 80 in id order for a model of 80 classes
    (a published COCO detector, see :func:`published_config`); else the ``config.json``'s
    ``id2label``; for an original checkpoint (no config) COCO's by category id when the head
    has 91 classes; else numbers."""
    n = int(num_classes or 0)
    if n == len(COCO_CATEGORY_NAMES) and (hf_config is None or _names_coco(hf_config)):
        return tuple(COCO_CATEGORY_NAMES.values())
    if hf_config and hf_config.get("id2label"):
        labels = {int(k): str(v) for k, v in hf_config["id2label"].items()}
        n = max(n, max(labels) + 1)
        return tuple(labels.get(i, str(i)) for i in range(n))
    if n == 91:
        return tuple(COCO_CATEGORY_NAMES.get(i, "N/A") for i in range(n))
    return tuple(str(i) for i in range(n))


def find_num_classes(node) -> int | None:
    """The first ``num_classes`` (or ``num_things_classes + num_stuff_classes``) in a model
    config (class names when none are known)."""
    if isinstance(node, Mapping):
        if isinstance(node.get("num_classes"), int):
            return node["num_classes"]
        if isinstance(node.get("num_things_classes"), int):
            return node["num_things_classes"] + int(node.get("num_stuff_classes") or 0)
        node = list(node.values())
    if isinstance(node, (list, tuple)):
        for value in node:
            if (found := find_num_classes(value)) is not None:
                return found
    return None


def _coco_val(model: Mapping, pipeline: list[dict], data_root: str) -> tuple[dict, object]:
    """COCO val2017 test dataset and evaluator for the model's task, by what its head
    ``predicts``: panoptic (images + panoptic PNGs; PQ, and box / mask AP of the things) or
    detection (instances json; box AP)."""
    predicts = getattr(MODELS.get(model["head"]["type"]), "predicts", ())
    if "pred_panoptic_seg" in predicts:  # the metrics read the panoptic PNGs themselves
        dataset = dict(
            type="CocoPanopticDataset",
            data_root=data_root,
            ann_file="annotations/panoptic_val2017.json",
            data_prefix=dict(img="val2017/", seg="annotations/panoptic_val2017/"),
            test_mode=True,
            pipeline=[t for t in pipeline if t["type"] != "LoadAnnotations"],
        )
        evaluator = [
            dict(
                type="PanopticMetric",
                ann_file=data_root + "annotations/panoptic_val2017.json",
                seg_prefix=data_root + "annotations/panoptic_val2017/",
            ),
            dict(
                type="CocoMetric",
                ann_file=data_root + "annotations/instances_val2017.json",
                metric=["bbox", "segm"],
            ),
        ]
        return dataset, evaluator
    dataset = dict(
        type="CocoDataset",
        data_root=data_root,
        ann_file="annotations/instances_val2017.json",
        data_prefix=dict(img="val2017/"),
        test_mode=True,
        pipeline=pipeline,
    )
    return dataset, dict(
        type="CocoMetric", ann_file=data_root + "annotations/instances_val2017.json"
    )


def _family_of(state, hf_config, source) -> PublishedFamily:
    family = find_family(state, hf_config)
    if family is None:
        known = ", ".join(f.name for f in families()) or "none"
        what = f"model_type {hf_config.get('model_type')!r}, " if hf_config else ""
        example = ", ".join(sorted(state)[:4])
        raise CheckpointError(
            f"{source}: {what}a layout no published family knows (keys such as {example}); "
            f"known families: {known}"
        )
    if family.model_config is None:
        raise CheckpointError(
            f"{source}: the {family.name!r} family converts weights into a model you build, "
            "but cannot describe that model itself; write a config for it and pass the "
            "checkpoint to tools/test.py / Inferencer(config, checkpoint) / load_from"
        )
    return family


def published_config(
    source: str | os.PathLike, data_root: str | None = None, state: Mapping | None = None
) -> tuple[dict, PublishedFamily]:
    """``(config dict, family)`` for the published checkpoint at ``source`` (a Hugging Face
    folder, its weights file, or an original repository's file).

    The dict holds ``model`` (the family's ``model_config`` with the processor's data
    preprocessor; a published COCO detector, which scores COCO's 91 category ids, is built
    with ``num_classes=80``: its family converter keeps the 80 categories' rows, so labels
    index COCO's categories as ``CocoDataset`` / ``CocoMetric`` number them),
    ``metainfo`` (``classes`` from ``id2label`` / COCO), ``test_pipeline`` and
    ``test_dataloader`` / ``test_evaluator`` / ``test_cfg`` reading COCO val2017 under
    ``data_root`` (``annotations/instances_val2017.json``, ``val2017/``; for a panoptic head
    ``annotations/panoptic_val2017.json`` and its PNGs too; move it with
    ``--cfg-options data_root=...``; default ``data/coco/``, a point family's own benchmark
    root for its ``data_config``). ``state``: the checkpoint's tensors when already read
    (``read_checkpoint(source)``)."""
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    hf_config = read_hf_config(path)
    if path.is_dir() and hf_config is None:
        raise CheckpointError(
            f"{path} is a folder without a Hugging Face config.json: save the model with "
            "model.save_pretrained(folder) (it writes config.json beside the weights), or "
            "give an original checkpoint file"
        )
    state = read_checkpoint(path) if state is None else state
    family = _family_of(state, hf_config, path)
    model = dict(family.model_config(state, hf_config))
    if family.data_config is not None:  # not an image model: its benchmark's data
        return dict(model=model, **family.data_config(model, data_root)), family
    data_root = os.path.join(data_root or "data/coco", "")  # ends in "/": paths are root + name
    processor = read_processor_config(path) if hf_config is not None else None
    if hf_config is not None and processor is None:
        raise CheckpointError(
            f"{path} has no {PROCESSOR_FILE}: save the image processor beside the model "
            "(AutoImageProcessor.from_pretrained(hub_id).save_pretrained(folder))"
        )
    if processor is None:  # an original checkpoint: its repository's evaluation settings
        processor = family.processor or DETR_REFERENCE_PROCESSOR
    pipeline, preprocessor = processor_settings(processor)
    if hf_config is None:  # the original model pads as its family builds it (Mask2Former: to /32)
        preprocessor = {**model.get("data_preprocessor", {}), **preprocessor}
    model["data_preprocessor"] = preprocessor
    if _is_coco_detector(model, hf_config):  # evaluate / draw over COCO's 80 categories
        _set_num_classes(model, len(COCO_CATEGORY_NAMES))
    classes = class_names(hf_config, find_num_classes(model))
    dataset, evaluator = _coco_val(model, pipeline, data_root)
    config = dict(
        model=model,
        metainfo=dict(classes=classes),
        data_root=data_root,
        test_pipeline=dataset["pipeline"],
        test_dataloader=dict(
            batch_size=1,
            num_workers=2,
            drop_last=False,
            sampler=dict(type="DefaultSampler", shuffle=False),
            dataset=dataset,
        ),
        test_evaluator=evaluator,
        test_cfg=dict(type="TestLoop"),
    )
    return config, family
