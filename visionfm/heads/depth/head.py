"""``DPTDepthHead``: monocular depth on top of a :class:`~.dpt_decoder.DPTDecoder`.

DPT's depth output (Ranftl et al., ICCV 2021): conv 3x3 (C -> C/2), bilinear x2
(align_corners=True), conv 3x3 (C/2 -> 32), ReLU, conv 1x1 (32 -> 1), then the output
activation. Two modes:

- ``'metric'``: depth in metres, ``max_depth * sigmoid(x)`` by default (or ``relu`` /
  ``softplus``); trained with :class:`~.losses.SILogLoss`; predictions go to ``pred_depth``
  (H0, W0) float metres, clamped to ``[min_depth, max_depth]``.
- ``'relative'``: an affine-invariant inverse depth (disparity up to scale and shift, as
  MiDaS / DPT-Large), ``relu`` by default; trained with
  :class:`~.losses.ScaleShiftInvariantLoss`; predictions go to ``pred_disparity`` (H0, W0)
  (no unit), which :class:`~visionfm.evaluation.DepthMetric` aligns to the ground truth with
  ``align='scale_shift'``.

Predictions are in the ORIGINAL image's pixels (padding removed, resize / flip / crop
undone through ``homography_matrix`` by :func:`visionfm.ops.geometry.dense_to_original`;
pixels cropped away by the pipeline, e.g. by ``KBCrop``, are 0 = unknown).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.data.batch import batch_input_shape
from visionfm.ops.geometry import dense_to_original
from visionfm.registry import MODELS
from visionfm.weights import LoadReport, load_converted, read_checkpoint

from ..base import DenseHead
from .dpt_decoder import DPTDecoder
from .losses import ScaleShiftInvariantLoss, SILogLoss

__all__ = ["DPTDepthHead"]

MODES = ("metric", "relative")
ACTIVATIONS = ("sigmoid", "relu", "softplus", "identity")


@MODELS.register_module()
class DPTDepthHead(DenseHead):
    """Depth output on a DPT decoder (see the module doc).

    Args:
        decoder: feature dict -> (B, C, h, w) with a ``channels`` attribute (C), e.g.
            :class:`~.dpt_decoder.DPTDecoder`.
        mode: 'metric' or 'relative'.
        max_depth, min_depth: metres. The valid range of ground truth for the loss, the
            clamp of metric predictions, and (``sigmoid``) the output scale.
        activation: 'sigmoid' (x max_depth), 'relu', 'softplus', 'identity'; None: sigmoid
            for metric, relu for relative depth.
        loss: ``(pred (B, H, W), gt depth (B, H, W), valid (B, H, W)) -> scalar or dict``;
            None: ``SILogLoss()`` (metric) or ``ScaleShiftInvariantLoss()`` (relative).
        head_channels: width of the last hidden conv (DPT: 32).
        pretrained: a Hugging Face ``DPTForDepthEstimation`` checkpoint (file, folder or
            state dict) whose decoder and depth output are loaded here (the backbone loads
            its own part: give the ViT the same ``pretrained``); see ``dpt_convert``.
    """

    predicts = ("pred_depth", "pred_disparity")

    def __init__(
        self,
        decoder: nn.Module,
        mode: str = "metric",
        max_depth: float = 10.0,
        min_depth: float = 1e-3,
        activation: str | None = None,
        loss: nn.Module | None = None,
        head_channels: int = 32,
        pretrained: str | os.PathLike | Mapping | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        activation = activation or ("sigmoid" if mode == "metric" else "relu")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
        channels = getattr(decoder, "channels", None)
        if not isinstance(channels, int):
            raise ValueError("the decoder must say its output width as an int `channels`")
        self.decoder = decoder
        self.mode, self.activation = mode, activation
        self.max_depth, self.min_depth = float(max_depth), float(min_depth)
        self.output = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(channels // 2, head_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(head_channels, 1, 1),
        )
        self.loss_fn = loss or (SILogLoss() if mode == "metric" else ScaleShiftInvariantLoss())
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def load_pretrained(self, checkpoint, strict: bool = False) -> LoadReport:
        """Load the decoder + depth output of a HF ``DPTForDepthEstimation`` checkpoint."""
        from .dpt_convert import convert_dpt_checkpoint

        converted = convert_dpt_checkpoint(read_checkpoint(checkpoint), self)
        return load_converted(self, converted, strict=strict)

    @property
    def in_levels(self) -> tuple[str, ...] | None:
        """A ``DPTDecoder``'s named input levels (None: its last levels)."""
        keys = self.decoder.keys if isinstance(self.decoder, DPTDecoder) else None
        return tuple(keys) if keys else None

    # ------------------------------------------------------------------ forward
    def forward(self, feats: Mapping[str, Tensor], data_samples=None) -> Tensor:
        """feats: ``{level: (B, C_l, H_l, W_l)}`` -> (B, 1, h, w) depth in metres (metric) or
        relative disparity, covering the padded batch input (h, w: twice the decoder's)."""
        x = self.output(self.decoder(feats))
        if self.activation == "sigmoid":
            return self.max_depth * x.sigmoid()
        if self.activation == "relu":
            return F.relu(x)
        if self.activation == "softplus":
            return F.softplus(x)
        return x

    # ------------------------------------------------------------------ losses
    def loss(self, feats: Mapping[str, Tensor], data_samples) -> dict[str, Tensor]:
        """The prediction, upsampled (bilinear) to the padded batch (B, H, W), against
        ``gt_depth`` on pixels with ``min_depth < gt < max_depth`` (padding is 0 = invalid).
        Returns ``loss_depth`` (metric) or the loss's own dict (``loss_ssi`` / ``loss_grad``).
        """
        pred = self(feats, data_samples)  # (B, 1, h, w)
        gts = [s.gt_depth.to(pred.device, pred.dtype) for s in data_samples]
        h = max(g.shape[-2] for g in gts)
        w = max(g.shape[-1] for g in gts)
        gt = torch.stack([F.pad(g, (0, w - g.shape[-1], 0, h - g.shape[-2])) for g in gts])
        pred = F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        valid = (gt > self.min_depth) & (gt < self.max_depth)  # (B, H, W)
        out = self.loss_fn(pred, gt, valid)
        return dict(out) if isinstance(out, Mapping) else {"loss_depth": out}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_by_logits(self, outputs: Tensor, data_samples, rescale: bool = True):
        """(B, 1, h, w) outputs covering the padded batch input (one pass, or stitched
        windows) -> each sample's ``pred_depth`` (metric) or ``pred_disparity`` (relative),
        (H0, W0), in the original image's pixels (``img_shape`` pixels if not ``rescale``)."""
        batch_shape = batch_input_shape(data_samples)
        for out, sample in zip(outputs[:, 0], data_samples):
            # (H0, W0); 0 where the original pixel was cropped away from the input
            pred = dense_to_original(out, sample.metainfo, input_shape=batch_shape, rescale=rescale)
            if self.mode == "metric":  # 0 stays 0: a pixel cropped away from the input
                clamped = pred.clamp(self.min_depth, self.max_depth)
                sample.pred_depth = torch.where(pred > 0, clamped, pred)
            else:
                sample.pred_disparity = pred
        return list(data_samples)
