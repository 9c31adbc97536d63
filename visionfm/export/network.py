"""The part of a task model that is exported: normalised, padded images -> the heads' raw
outputs, and the heads' own post-processing of those outputs.

:class:`ExportNetwork` wraps a built :class:`~visionfm.models.TaskModel`. Its inputs are what
the model's data preprocessor makes of a batch, as tensors:

- ``images`` (B, 3, H, W) float32, normalised and padded at the bottom / right;
- ``image_sizes`` (B, 2) int64, each image's (h, w) inside the padded batch (``img_shape``);
  DETR-style and Mask2Former heads mask the padding with it (others read only ``images``).

Its outputs are flat tensors, named ``output_names`` (``{head}.{output}`` for a model with
several heads), per head family:

==========================  ===============================================================
``DETRHead``                ``logits`` (B, Q, num_classes), ``boxes`` (B, Q, 4) normalised
                            cxcywh: the last decoder layer (DETR, Deformable DETR, DINO,
                            LW-DETR / RF-DETR)
``Mask2FormerHead``         ``cls_logits`` (B, Q, K + 1), ``mask_logits`` (B, Q, h, w): the
                            last prediction (semantic, instance and panoptic post-processing)
``DenseHead``               ``maps`` (B, K, h, w): semantic logits (UperNet, SegFormer,
                            FCN) or depth (DPT), covering the padded input
``TopDownHeatmapHead``      ``heatmaps`` (B, K, h, w); with flip testing also ``flipped``,
                            the heatmaps of the mirrored crops (one backbone pass on 2B)
==========================  ===============================================================

Exported at one fixed image size (batch still free), naming the reason: models with adaptive
average pooling to more than one bin (UperNet's pyramid pooling, PVTv2-Li's pooled
attention), whose bins depend on the input size in a way ONNX has no operator for
(:func:`fixed_size_reason`).

Refused, naming the reason: prompted heads (a text encoder and tokenizer run in Python),
heads that read other heads' predictions (RoI pose), point models and sliding-window inference
(``Segmentor`` ``test_cfg.mode='slide'``: export ``mode='whole'``, the windows are the
caller's loop).

:meth:`ExportNetwork.predict` turns the outputs (from the eager network, an ONNX Runtime
session or a ``torch.export`` program) into predictions with the heads' own
post-processing (``predict_by_outputs`` / ``predict_by_logits`` / ``predict_by_heatmaps``):
nothing of it is copied here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from visionfm.heads.base import DenseHead, Head
from visionfm.heads.detr import DETRHead
from visionfm.heads.pose import TopDownHeatmapHead
from visionfm.heads.segmentation.mask2former import Mask2FormerHead
from visionfm.heads.segmentation.upernet import PyramidPooling
from visionfm.models import Segmentor, TaskModel, TopDownPoseEstimator

__all__ = [
    "ExportError",
    "ExportNetwork",
    "INPUT_NAMES",
    "fixed_size_reason",
    "padding_from_sizes",
]

INPUT_NAMES = ("images", "image_sizes")


class ExportError(ValueError):
    """A model (or a part of it) that this exporter does not export; the message says why."""


def padding_from_sizes(image_sizes: Tensor, batch_hw: Sequence[int]) -> Tensor:
    """image_sizes (B, 2) int (h, w) -> (B, H, W) bool, True on the padded pixels of a
    (H, W) batch (images at the top left, as ``visionfm.data.batch.padding_mask``)."""
    h, w = batch_hw
    rows = torch.arange(h, device=image_sizes.device)[None, :, None]  # (1, H, 1)
    cols = torch.arange(w, device=image_sizes.device)[None, None, :]  # (1, 1, W)
    return (rows >= image_sizes[:, 0, None, None]) | (cols >= image_sizes[:, 1, None, None])


def fixed_size_reason(model: nn.Module) -> str | None:
    """Why ``model`` is exported at one image size only (names the module), or None when its
    height and width can stay free: adaptive average pooling to more than one bin."""
    for name, module in model.named_modules():
        if isinstance(module, PyramidPooling) and set(module.pool_scales) != {1}:
            return (
                f"{name} (PyramidPooling, pool_scales {module.pool_scales}) pools to bins whose "
                "extent depends on the input size, which ONNX / torch.export cannot keep free"
            )
        if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size not in (1, (1, 1)):
            return (
                f"{name} (AdaptiveAvgPool2d to {module.output_size}) pools to bins whose "
                "extent depends on the input size, which ONNX / torch.export cannot keep free"
            )
    return None


def _outputs_of(head: Head) -> tuple[str, ...]:
    """The names of ``head``'s exported outputs (see the module doc), or ExportError."""
    name = type(head).__name__
    if head.needs_text:
        raise ExportError(
            f"{name} reads text prompts: its text encoder and tokenizer run in Python, so it "
            "is not exported (export a closed-set detector)"
        )
    if head.needs_predictions:
        raise ExportError(
            f"{name} reads other heads' predictions ({list(head.needs_predictions)}), made by "
            "their Python post-processing: not exported"
        )
    if isinstance(head, DETRHead):
        return ("logits", "boxes")
    if isinstance(head, Mask2FormerHead):
        return ("cls_logits", "mask_logits")
    if isinstance(head, DenseHead):
        return ("maps",)
    if isinstance(head, TopDownHeatmapHead):
        return ("heatmaps", "flipped") if head.flip_test else ("heatmaps",)
    raise ExportError(
        f"{name} has no export yet (exported: DETRHead, Mask2FormerHead, dense heads (semantic "
        "segmentation, depth), TopDownHeatmapHead)"
    )


class ExportNetwork(nn.Module):
    """``model``'s backbone -> neck -> heads from preprocessed tensors to raw outputs (see
    the module doc). The model is shared, not copied: export it in ``eval()`` mode."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, TaskModel):
            raise ExportError(
                f"{type(model).__name__} is not an image task model (TaskModel): point models "
                "and pre-training models are not exported"
            )
        if isinstance(model, Segmentor) and model.test_cfg["mode"] != "whole":
            raise ExportError(
                "the config's Segmentor test_cfg.mode is 'slide': export the whole-image "
                "network (--cfg-options model.test_cfg.mode=whole) and run the windows around it"
            )
        self.model = model
        self.heads = [(prefix, head, _outputs_of(head)) for prefix, head in model.named_heads()]
        self.output_names = tuple(
            f"{prefix}{name}" for prefix, _, names in self.heads for name in names
        )
        self.flip = isinstance(model, TopDownPoseEstimator) and any(
            head.flip_test for _, head, _ in self.heads
        )
        self.fixed_size_reason = fixed_size_reason(model)

    def forward(self, images: Tensor, image_sizes: Tensor) -> tuple[Tensor, ...]:
        """images (B, 3, H, W), image_sizes (B, 2) -> the tensors of ``output_names``."""
        flipped = None
        if self.flip:  # as TopDownPoseEstimator: one pass over the crops and their mirrors
            both = self.model.extract_feat(torch.cat((images, images.flip(-1))))
            b = images.shape[0]
            feats = {k: v[:b] for k, v in both.items()}
            flipped = {k: v[b:] for k, v in both.items()}
        else:
            feats = self.model.extract_feat(images)
        outputs: list[Tensor] = []
        for _, head, _ in self.heads:
            if isinstance(head, DETRHead):
                padding = padding_from_sizes(image_sizes, images.shape[-2:])
                out = head(feats, None, padding=padding)
                outputs += [out["logits"][-1], out["boxes"][-1]]
            elif isinstance(head, Mask2FormerHead):
                padding = padding_from_sizes(image_sizes, images.shape[-2:])
                cls_logits, mask_logits = head.predictions(feats, None, padding)
                outputs += [cls_logits[-1], mask_logits[-1]]
            else:  # a dense head, or top-down heatmaps (and the mirrored crops')
                outputs.append(head(feats))
                if isinstance(head, TopDownHeatmapHead) and head.flip_test:
                    outputs.append(head(flipped))
        return tuple(outputs)

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, Tensor], data_samples: Sequence) -> list:
        """``{output name: tensor}`` (as ``forward`` returns them, from any backend) -> the
        samples with every head's predictions, in original-image coordinates."""
        missing = [name for name in self.output_names if name not in outputs]
        if missing:
            raise ExportError(f"outputs {missing} are missing (got {sorted(outputs)})")
        samples = list(data_samples)
        for prefix, head, _ in self.heads:  # none reads another's predictions (refused)
            out = {name: outputs[prefix + name] for name in _outputs_of(head)}
            if isinstance(head, DETRHead):
                samples = head.predict_by_outputs(out["logits"], out["boxes"], samples)
            elif isinstance(head, Mask2FormerHead):
                samples = head.predict_by_outputs(out["cls_logits"], out["mask_logits"], samples)
            elif isinstance(head, DenseHead):
                samples = head.predict_by_logits(out["maps"], samples)
            else:
                samples = head.predict_by_heatmaps(out["heatmaps"], samples, out.get("flipped"))
        return samples
