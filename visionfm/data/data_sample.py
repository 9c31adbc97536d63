"""``DataSample``: the one per-image container that flows from dataset to head and back.

Ground truth goes in, predictions come back in the same object (see docs/architecture.md,
"Contracts" and "From a config to predictions"):

================  ===================================================================
field             content
================  ===================================================================
gt_instances      ``InstanceData``: ``bboxes`` float (N, 4) xyxy absolute pixels,
                  ``labels`` long (N,), optional ``masks`` bool (N, H, W),
                  optional ``keypoints`` float (N, K, 3) ``[x, y, visibility]``
ignored_instances ``InstanceData`` like ``gt_instances`` for crowd / ignored regions
gt_sem_seg        Tensor (H, W) long, 255 = ignore
gt_depth          Tensor (H, W) float metres, 0 = invalid
text              str: the caption a grounding model reads (class prompt ``"circle .
                  square ."``, ODVG caption or referring expression)
phrases           list[str]: the caption's entities in order (class names, grounding
                  phrases, ``[expression]``); ``gt_instances.labels`` and
                  ``pred_instances.labels`` of a grounding sample index this list
phrase_spans      list[list[list[int]]]: per phrase its ``[start, end)`` character
                  spans in ``text`` (ODVG ``tokens_positive``)
pred_instances    ``InstanceData``: ``bboxes``, ``scores``, ``labels``, [``masks``, ``keypoints``]
pred_sem_seg      Tensor (H, W) long
seg_logits        Tensor (K, H, W) float class logits behind ``pred_sem_seg``
pred_depth        Tensor (H, W) float metres
pred_disparity    Tensor (H, W) float relative inverse depth (unknown scale and shift)
pred_panoptic_seg Tensor (H, W) long ``label * PANOPTIC_LABEL_DIVISOR + instance`` (instance
                  1, 2, ... for things, 0 for stuff: one segment per stuff class), -1 = void
================  ===================================================================

Metainfo (set by the transforms and the data preprocessor): ``img_path``, ``img_id``,
``ori_shape`` (h, w) of the image on disk, ``img_shape`` (h, w) after the transforms,
``scale_factor`` (w_scale, h_scale) accumulated over resizes, ``flip``, ``flip_direction``,
``homography_matrix`` (3, 3) mapping original pixel coordinates to current ones,
``pad_shape`` / ``batch_input_shape`` (h, w) of the padded batch. Grounding samples add
``prompt_type`` ('classes' or 'expression'), for class prompts ``phrase_ids`` (the dataset
class index of each phrase), for referring expressions ``expression_id``, ``dataset_name``,
``split`` and ``held_out`` (the expression names a combination left out of training).

Coordinates are continuous pixel coordinates: pixel (i, j) covers ``[j, j+1) x [i, i+1)``, so a
box around pixel columns 2..5 is ``x1=2, x2=6`` and a keypoint at a pixel's centre is
``(j + 0.5, i + 0.5)``. Predictions are reported in the ORIGINAL image's coordinates.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.structures import BaseDataElement, InstanceData

__all__ = ["DataSample", "PANOPTIC_LABEL_DIVISOR"]

# pred_panoptic_seg packs (label, instance) as label * PANOPTIC_LABEL_DIVISOR + instance.
PANOPTIC_LABEL_DIVISOR = 1000


def _typed_field(name: str, dtype: type | tuple[type, ...], doc: str) -> property:
    """A property stored as the private data field ``_name`` that checks the value's type."""
    private = "_" + name

    def getter(self: BaseDataElement) -> Any:
        return getattr(self, private)

    def setter(self: BaseDataElement, value: Any) -> None:
        self.set_field(value, private, dtype=dtype)

    def deleter(self: BaseDataElement) -> None:
        delattr(self, private)

    return property(getter, setter, deleter, doc)


class DataSample(BaseDataElement):
    """Per-image ground truth, predictions and metainfo; fields are typed (see module doc).

    Example::

        sample = DataSample(metainfo=dict(img_shape=(480, 640)))
        sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
        sample.gt_sem_seg = torch.zeros(480, 640, dtype=torch.long)
    """

    gt_instances = _typed_field("gt_instances", InstanceData, "InstanceData of ground truth.")
    ignored_instances = _typed_field(
        "ignored_instances", InstanceData, "InstanceData of crowd / ignored ground truth."
    )
    pred_instances = _typed_field("pred_instances", InstanceData, "InstanceData of predictions.")
    gt_sem_seg = _typed_field("gt_sem_seg", torch.Tensor, "(H, W) long labels, 255 = ignore.")
    pred_sem_seg = _typed_field("pred_sem_seg", torch.Tensor, "(H, W) long predicted labels.")
    seg_logits = _typed_field("seg_logits", torch.Tensor, "(K, H, W) float class logits.")
    gt_depth = _typed_field("gt_depth", torch.Tensor, "(H, W) float metres, 0 = invalid.")
    pred_depth = _typed_field("pred_depth", torch.Tensor, "(H, W) float predicted metres.")
    pred_disparity = _typed_field(
        "pred_disparity", torch.Tensor, "(H, W) float relative inverse depth (affine-invariant)."
    )
    pred_panoptic_seg = _typed_field(
        "pred_panoptic_seg", torch.Tensor, "(H, W) long label * 1000 + instance, -1 = void."
    )
    text = _typed_field("text", str, "Free text (referring expression / prompt).")
    phrases = _typed_field("phrases", list, "list[str], the entities of ``text`` in order.")
    phrase_spans = _typed_field(
        "phrase_spans", list, "list[list[list[int]]], [start, end) spans of each phrase."
    )

    def __contains__(self, item: str) -> bool:
        """``'gt_instances' in sample`` also finds typed fields (stored as ``_gt_instances``)."""
        return super().__contains__(item) or (
            isinstance(getattr(type(self), item, None), property)
            and super().__contains__("_" + item)
        )
