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
undone through ``homography_matrix``, see :func:`depth_to_original`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionfm.backbones.weights import LoadReport, load_converted, read_checkpoint
from visionfm.registry import MODELS

from .losses import ScaleShiftInvariantLoss, SILogLoss

__all__ = ["DPTDepthHead", "depth_to_original", "original_to_input"]

MODES = ("metric", "relative")
ACTIVATIONS = ("sigmoid", "relu", "softplus", "identity")


def original_to_input(metainfo: Mapping) -> Tensor:
    """(3, 3) float64 map from original-image to network-input pixel coordinates:
    ``homography_matrix``, else ``scale_factor`` (w, h) then the horizontal ``flip``."""
    matrix = metainfo.get("homography_matrix")
    if matrix is not None:
        return torch.as_tensor(matrix, dtype=torch.float64)
    sx, sy = metainfo.get("scale_factor", (1.0, 1.0))[:2]
    out = torch.diag(torch.tensor([sx, sy, 1.0], dtype=torch.float64))
    if metainfo.get("flip", False):
        w = metainfo["img_shape"][1]
        flip = torch.tensor([[-1.0, 0.0, w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        out = flip @ out
    return out


def depth_to_original(
    depth: Tensor, metainfo: Mapping, batch_shape: Sequence[int], rescale: bool = True
) -> Tensor:
    """One image's dense output on the padded batch input -> on its original pixels.

    Args:
        depth: (h, w) covering the padded input of size ``batch_shape`` (H, W), any
            resolution (e.g. the decoder's).
        metainfo: ``img_shape`` (the image's part of the input), ``ori_shape``,
            ``homography_matrix`` (else ``scale_factor`` / ``flip``).
        rescale: False: return the map on the unpadded input (``img_shape``) instead.

    Returns:
        (H0, W0) with (H0, W0) = ``ori_shape`` (``img_shape`` if not ``rescale``): every
        output pixel centre is mapped into the input and ``depth`` sampled bilinearly there
        (``align_corners=False``; equal to ``F.interpolate`` for a plain resize), clamped to
        the image's own part so padding is never read. Pixels that map outside the image's
        part (cropped away, e.g. by ``KBCrop``) are 0 = unknown.

    Unlike :func:`visionfm.ops.geometry.dense_to_original`, the bottom / right border pixels
    never blend in the network's output over the batch padding, and pixels cropped away but
    still inside the padded batch read 0 rather than padding.
    """
    ih, iw = (int(v) for v in metainfo["img_shape"][:2])
    if rescale:
        oh, ow = (int(v) for v in metainfo.get("ori_shape", (ih, iw))[:2])
        matrix = original_to_input(metainfo)
    else:
        (oh, ow), matrix = (ih, iw), torch.eye(3, dtype=torch.float64)
    ys = torch.arange(oh, dtype=torch.float64) + 0.5
    xs = torch.arange(ow, dtype=torch.float64) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack((gx, gy, torch.ones_like(gx)), -1) @ matrix.T  # (H0, W0, 3)
    x, y = points[..., 0] / points[..., 2], points[..., 1] / points[..., 2]
    tol = 1e-6
    inside = (x > -tol) & (x < iw + tol) & (y > -tol) & (y < ih + tol)  # (H0, W0)
    x, y = x.clamp(0.5, iw - 0.5), y.clamp(0.5, ih - 0.5)
    height, width = (int(v) for v in batch_shape[:2])
    grid = torch.stack((2 * x / width - 1, 2 * y / height - 1), -1)  # (H0, W0, 2) in [-1, 1]
    if depth.dtype in (torch.float16, torch.bfloat16):  # autocast outputs
        depth = depth.float()
    grid = grid.to(device=depth.device, dtype=depth.dtype)[None]
    out = F.grid_sample(
        depth[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )[0, 0]
    return out * inside.to(out.device)


def _batch_shape(data_samples: Sequence) -> tuple[int, int]:
    """(H, W) of the padded batch: ``batch_input_shape``, else the largest ``img_shape``."""
    shape = data_samples[0].metainfo.get("batch_input_shape")
    if shape is not None:
        return int(shape[0]), int(shape[1])
    sizes = [s.metainfo["img_shape"][:2] for s in data_samples]
    return max(h for h, _ in sizes), max(w for _, w in sizes)


@MODELS.register_module()
class DPTDepthHead(nn.Module):
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
    def predict(self, feats: Mapping[str, Tensor], data_samples, rescale: bool = True):
        """Fill ``pred_depth`` (metric) or ``pred_disparity`` (relative), (H0, W0), in each
        original image's pixels (``img_shape`` pixels if not ``rescale``)."""
        return self.predict_by_logits(self(feats, data_samples), data_samples, rescale)

    @torch.no_grad()
    def predict_by_logits(self, outputs: Tensor, data_samples, rescale: bool = True):
        """Map (B, 1, h, w) outputs covering the padded batch input to the samples (see
        :meth:`predict`); used by sliding-window inference too."""
        batch_shape = _batch_shape(data_samples)
        for out, sample in zip(outputs[:, 0], data_samples):
            pred = depth_to_original(out, sample.metainfo, batch_shape, rescale)
            if self.mode == "metric":  # 0 stays 0: a pixel cropped away from the input
                clamped = pred.clamp(self.min_depth, self.max_depth)
                sample.pred_depth = torch.where(pred > 0, clamped, pred)
            else:
                sample.pred_disparity = pred
        return list(data_samples)
