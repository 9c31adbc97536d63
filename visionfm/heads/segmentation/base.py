"""``SemanticSegHead``: the base every semantic segmentation head subclasses.

A subclass only maps features to class logits::

    @MODELS.register_module()
    class MyHead(SemanticSegHead):
        def __init__(self, num_classes, in_channels, ..., loss_ce=1.0, loss_dice=0.0,
                     class_weight=None, ignore_index=255, auxiliary=None):
            super().__init__(num_classes, loss_ce, loss_dice, class_weight, ignore_index,
                             auxiliary)
            ...  # layers; SegClassifier(channels, num_classes) for the last 1x1 conv

        def forward(self, feats, data_samples=None):
            # feats: {level: (B, C_l, H_l, W_l)} from the neck / backbone
            return logits  # (B, num_classes, h, w), covering the whole padded batch input

The logits may have any resolution (stride 4 for UperNet / SegFormer, 1 for a decoder that
upsamples itself, e.g. DPT); they must cover the padded input ``(B, 3, H, W)`` the data
preprocessor made, whose top-left ``img_shape`` part is each image. The base then gives

- :meth:`loss`: logits upsampled (bilinear) to ``(H, W)``, cross-entropy against
  ``gt_sem_seg`` (255 = ignore, so the padding is ignored too), optional class weights, an
  optional softmax Dice term, and the loss of an optional ``auxiliary`` head (itself a
  ``SemanticSegHead`` with its own weights, e.g. ``FCNHead(loss_ce=0.4)``), prefixed ``aux_``.
- :meth:`predict` / :meth:`predict_by_logits`: logits mapped back to each ORIGINAL image
  (padding removed, resize / flip / crop undone through ``homography_matrix``, by
  :func:`visionfm.ops.geometry.dense_to_original`), written to
  ``pred_sem_seg`` (H0, W0) long and ``seg_logits`` (K, H0, W0).

Sliding-window inference needs the backbone per window, so it lives in the task model
(:class:`~visionfm.models.Segmentor`), which calls :meth:`predict_by_logits` with the stitched
logits; heads know nothing about windows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.data.batch import batch_input_shape
from visionfm.layers import make_act, make_norm
from visionfm.ops.geometry import dense_to_original

from ..base import DenseHead
from .losses import check_seg_labels, semantic_ce_loss, softmax_dice_loss

__all__ = [
    "ConvNormAct",
    "SegClassifier",
    "SemanticSegHead",
    "make_seg_norm",
    "resize_to",
]

NormSpec = str | Callable[[int], nn.Module] | None


def make_seg_norm(norm_layer: NormSpec) -> Callable[[int], nn.Module] | None:
    """``'BN'`` / ``'SyncBN'`` (batch norm, what decoders use), any name of
    ``layers.make_norm`` (``'GN'``, ``'LN2d'``, ...), a factory ``dim -> module``, or None."""
    if norm_layer is None or callable(norm_layer):
        return norm_layer
    named = {"bn": nn.BatchNorm2d, "syncbn": nn.SyncBatchNorm}
    return named.get(str(norm_layer).lower()) or make_norm(norm_layer)


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """(B, C, h, w) -> (B, C, *size), bilinear (``align_corners=False``); a no-op at size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvNormAct(nn.Sequential):
    """conv (k x k, 'same' padding, no bias when normed) -> norm -> activation:
    (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        norm_layer: NormSpec = "BN",
        act_layer: str | Callable[[], nn.Module] | None = "relu",
    ) -> None:
        norm = make_seg_norm(norm_layer)
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm is None
            )
        ]
        if norm is not None:
            layers.append(norm(out_channels))
        if act_layer is not None:
            layers.append(make_act(act_layer)())
        super().__init__(*layers)


class SegClassifier(nn.Sequential):
    """Dropout + 1x1 conv to class logits: (B, C, h, w) -> (B, num_classes, h, w).
    Weights start small (normal, std 0.01) and biases at 0, so the first logits are ~uniform."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        super().__init__(nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(), conv)


class SemanticSegHead(DenseHead):
    """Base of semantic segmentation heads (see the module doc for the subclass contract).

    Args:
        num_classes: K, labels 0..K-1 (``ignore_index`` marks unlabelled pixels).
        loss_ce: weight of the cross-entropy loss (``loss_ce``).
        loss_dice: weight of the softmax Dice loss (``loss_dice``); 0 leaves it out.
        class_weight: K per-class cross-entropy weights, or None.
        ignore_index: label value of unlabelled / padded pixels.
        auxiliary: another ``SemanticSegHead`` trained on the same features (deep
            supervision, e.g. an ``FCNHead`` on a middle level with ``loss_ce=0.4``); its
            losses are added with an ``aux_`` prefix, and it is not used for prediction.
    """

    predicts = ("pred_sem_seg", "seg_logits")

    def __init__(
        self,
        num_classes: int,
        loss_ce: float = 1.0,
        loss_dice: float = 0.0,
        class_weight: Sequence[float] | None = None,
        ignore_index: int = 255,
        auxiliary: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_weight is not None and len(class_weight) != num_classes:
            raise ValueError(
                f"class_weight has {len(class_weight)} entries but num_classes={num_classes}"
            )
        if auxiliary is not None and not isinstance(auxiliary, SemanticSegHead):
            raise TypeError(f"auxiliary must be a SemanticSegHead, got {type(auxiliary).__name__}")
        self.num_classes = num_classes
        self.loss_weights = dict(loss_ce=loss_ce, loss_dice=loss_dice)
        self.ignore_index = ignore_index
        self.auxiliary = auxiliary
        weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)

    def _use_levels(self, in_channels: Mapping[str, int]) -> list[int]:
        """Keep the ``{level: channels}`` dict's levels (finest first) as ``self.levels``;
        returns their channels. Refuses anything but a non-empty dict, naming the head."""
        if not isinstance(in_channels, Mapping) or not in_channels:
            raise ValueError(
                f"{type(self).__name__}: in_channels must be a non-empty {{level: channels}} "
                f"dict, got {in_channels!r}"
            )
        self.levels = list(in_channels)
        return list(in_channels.values())

    @property
    def in_levels(self) -> tuple[str, ...]:
        """This head's levels, then the auxiliary head's."""
        aux = self.auxiliary.in_levels if self.auxiliary is not None else ()
        return tuple(dict.fromkeys((*self.levels, *aux)))

    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> Tensor:
        """feats ``{level: (B, C_l, H_l, W_l)}`` -> logits (B, num_classes, h, w)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(feats)")

    # ------------------------------------------------------------------ training
    def targets(self, data_samples: Sequence, device: torch.device | str) -> Tensor:
        """(B, H, W) long ``gt_sem_seg`` of the batch; maps of different sizes (no data
        preprocessor) are padded at the bottom / right with ``ignore_index``."""
        maps = [s.gt_sem_seg for s in data_samples]
        h, w = max(m.shape[-2] for m in maps), max(m.shape[-1] for m in maps)
        out = torch.full((len(maps), h, w), self.ignore_index, dtype=torch.long, device=device)
        for i, m in enumerate(maps):
            out[i, : m.shape[-2], : m.shape[-1]] = m.to(device)
        return out

    def loss(self, feats: Mapping[str, Tensor], data_samples: Sequence) -> dict[str, Tensor]:
        """Weighted ``loss_ce`` (+ ``loss_dice``) (+ ``aux_loss_*``), each a scalar."""
        losses = self.loss_by_logits(self(feats, data_samples), data_samples)
        if self.auxiliary is not None:
            aux = self.auxiliary.loss(feats, data_samples)
            losses.update({f"aux_{k}": v for k, v in aux.items()})
        return losses

    def loss_by_logits(self, logits: Tensor, data_samples: Sequence) -> dict[str, Tensor]:
        """logits (B, K, h, w) -> losses against ``gt_sem_seg`` at the padded input size."""
        target = self.targets(data_samples, logits.device)  # (B, H, W)
        check_seg_labels(target, self.num_classes, self.ignore_index)
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(
                logits, size=target.shape[-2:], mode="bilinear", align_corners=False
            )
        weights = self.loss_weights
        losses = {
            "loss_ce": weights["loss_ce"]
            * semantic_ce_loss(logits, target, self.class_weight, self.ignore_index)
        }
        if weights["loss_dice"] > 0:
            losses["loss_dice"] = weights["loss_dice"] * softmax_dice_loss(
                logits, target, self.ignore_index
            )
        return losses

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_by_logits(self, logits: Tensor, data_samples: Sequence, rescale: bool = True):
        """logits (B, K, h, w) covering the padded batch input -> each sample gets
        ``seg_logits`` (K, H0, W0) float and ``pred_sem_seg`` (H0, W0) long, on the original
        image when ``rescale`` (else on the unpadded input, ``img_shape``). Original pixels
        cropped away by the pipeline take the nearest prediction, so every pixel has a label
        (:func:`~visionfm.ops.geometry.dense_to_original` with ``fill=None``)."""
        shape = batch_input_shape(data_samples)
        for sample_logits, sample in zip(logits, data_samples):
            seg_logits = dense_to_original(
                sample_logits.float(),
                sample.metainfo,
                input_shape=shape,
                rescale=rescale,
                fill=None,
            )
            sample.seg_logits = seg_logits
            sample.pred_sem_seg = seg_logits.argmax(dim=0)
        return list(data_samples)
