"""Depth losses, all ``(pred (B, H, W), target (B, H, W) depth in metres, valid (B, H, W)
bool) -> scalar or {name: scalar}``, computed on ``valid`` pixels only (the head marks
``target <= 0`` and depths outside ``[min_depth, max_depth]`` invalid).

- :class:`SILogLoss`, for metric depth: the scale-invariant log error of Eigen et al.,
  "Depth Map Prediction from a Single Image using a Multi-Scale Deep Network" (NeurIPS
  2014), in the variance-focus form of BTS (Lee et al., 2019) and AdaBins (Bhat et al.,
  CVPR 2021): ``scale * sqrt(mean(g^2) - lambda * mean(g)^2)``, ``g = log pred - log gt``.
- :class:`ScaleShiftInvariantLoss`, for relative depth (MiDaS: Ranftl et al., "Towards
  Robust Monocular Depth Estimation: Mixing Datasets for Zero-shot Cross-dataset
  Transfer", TPAMI 2020): in disparity (inverse depth) space, per image, the ground truth
  is normalised (median, mean absolute deviation) and the prediction aligned to it by
  least-squares scale and shift; the loss is the mean squared residual plus the
  multi-scale gradient-matching term on the residual (Li and Snavely, MegaDepth, 2018).
  It is invariant to ``pred -> a * pred + b`` and to ``gt disparity -> a * disp + b``
  (a > 0).
"""

from __future__ import annotations

from torch import Tensor, nn

from visionfm.registry import MODELS

__all__ = [
    "SILogLoss",
    "ScaleShiftInvariantLoss",
    "align_scale_shift",
    "gradient_matching_loss",
    "normalize_disparity",
]


def _zero(pred: Tensor) -> Tensor:
    """A zero that keeps ``pred`` in the graph (no valid pixel in the batch)."""
    return pred.sum() * 0.0


@MODELS.register_module()
class SILogLoss(nn.Module):
    """Scale-invariant log loss (see the module doc), pooled over the batch's valid pixels
    as BTS / AdaBins do.

    Args:
        variance_focus: lambda in [0, 1]; 1 is fully scale-invariant, 0 is the RMSE of log
            depth. BTS / AdaBins: 0.85.
        scale: multiplier (BTS / AdaBins: 10).
        eps: floor of the prediction before the log, and of the value under the root.
    """

    def __init__(self, variance_focus: float = 0.85, scale: float = 10.0, eps: float = 1e-6):
        super().__init__()
        if not 0.0 <= variance_focus <= 1.0:
            raise ValueError(f"variance_focus must be in [0, 1], got {variance_focus}")
        self.variance_focus, self.scale, self.eps = variance_focus, scale, eps

    def forward(self, pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        """pred, target: (B, H, W) metres; valid: (B, H, W) bool -> scalar."""
        if not valid.any():
            return _zero(pred)
        g = pred[valid].clamp_min(self.eps).log() - target[valid].log()  # (N,)
        value = (g * g).mean() - self.variance_focus * g.mean() ** 2
        return self.scale * value.clamp_min(self.eps).sqrt()


def normalize_disparity(disp: Tensor, valid: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Per image: ``(d - median) / mean|d - median|`` over valid pixels.

    Args:
        disp: (B, H, W); valid: (B, H, W) bool.

    Returns:
        the normalised (B, H, W) (invalid pixels 0) and (B,) bool: images usable (at least
        two valid pixels with some spread).
    """
    flat = disp.masked_fill(~valid, float("nan")).flatten(1)  # (B, HW)
    median = flat.nanmedian(dim=1).values.nan_to_num(0.0)  # (B,)
    count = valid.flatten(1).sum(1)  # (B,)
    dev = ((disp - median[:, None, None]).abs() * valid).flatten(1).sum(1) / count.clamp_min(1)
    usable = (count >= 2) & (dev > eps)
    out = (disp - median[:, None, None]) / dev.clamp_min(eps)[:, None, None]
    return out * valid, usable


def align_scale_shift(
    pred: Tensor, target: Tensor, valid: Tensor, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """Least-squares ``s, t`` per image minimising ``sum_valid (s * pred + t - target)^2``.

    pred, target: (B, H, W); valid: (B, H, W) bool -> scale (B,), shift (B,). Where the
    valid predictions are (nearly) constant, s = 0 and t = the mean target. Differentiable.
    """
    m = valid.to(pred.dtype)
    a00 = (m * pred * pred).flatten(1).sum(1)  # (B,)
    a01 = (m * pred).flatten(1).sum(1)
    a11 = m.flatten(1).sum(1)
    b0 = (m * pred * target).flatten(1).sum(1)
    b1 = (m * target).flatten(1).sum(1)
    det = a00 * a11 - a01 * a01
    ok = det > eps * a11.clamp_min(1) ** 2
    safe = det.where(ok, det.new_ones(()))
    scale = ((a11 * b0 - a01 * b1) / safe).where(ok, det.new_zeros(()))
    shift = ((a00 * b1 - a01 * b0) / safe).where(ok, b1 / a11.clamp_min(1))
    return scale, shift


def gradient_matching_loss(residual: Tensor, valid: Tensor, scales: int = 4) -> Tensor:
    """Multi-scale gradient matching (MegaDepth / MiDaS) of a residual map.

    At scale k the residual and mask are subsampled every 2^k pixels; the loss is the sum
    over scales of ``(sum |dx R| + sum |dy R|) / number of valid pixels``, a difference
    counting only where both of its pixels are valid. residual: (B, H, W); valid: (B, H, W)
    bool -> scalar.
    """
    total = residual.new_zeros(())
    for k in range(scales):
        step = 2**k
        r, m = residual[:, ::step, ::step], valid[:, ::step, ::step].to(residual.dtype)
        n = m.sum()
        if n == 0:
            continue
        dx = (r[:, :, 1:] - r[:, :, :-1]).abs() * m[:, :, 1:] * m[:, :, :-1]
        dy = (r[:, 1:] - r[:, :-1]).abs() * m[:, 1:] * m[:, :-1]
        total = total + (dx.sum() + dy.sum()) / n
    return total


@MODELS.register_module()
class ScaleShiftInvariantLoss(nn.Module):
    """MiDaS scale-and-shift-invariant loss in disparity space (see the module doc).

    ``pred`` is the network's relative inverse depth (any scale and shift); ``target`` is
    depth in metres, turned into disparity ``1 / depth`` on valid pixels.

    Args:
        grad_weight: weight of the gradient-matching term (MiDaS: 0.5); 0 leaves it out.
        scales: scales of the gradient-matching term (MiDaS: 4).

    Returns ``{"loss_ssi": mean squared residual, "loss_grad": grad_weight * gradient
    term}``, both pooled over the valid pixels of the usable images of the batch.
    """

    def __init__(self, grad_weight: float = 0.5, scales: int = 4) -> None:
        super().__init__()
        self.grad_weight, self.scales = grad_weight, scales

    def forward(self, pred: Tensor, target: Tensor, valid: Tensor) -> dict[str, Tensor]:
        """pred: (B, H, W) relative disparity; target: (B, H, W) metres; valid: (B, H, W)."""
        disp = target.clamp_min(1e-8).reciprocal() * valid
        disp, usable = normalize_disparity(disp, valid)
        valid = valid & usable[:, None, None]
        losses = {"loss_ssi": _zero(pred)}
        if self.grad_weight:
            losses["loss_grad"] = _zero(pred)
        if not valid.any():
            return losses
        scale, shift = align_scale_shift(pred, disp, valid)
        residual = (scale[:, None, None] * pred + shift[:, None, None] - disp) * valid
        losses["loss_ssi"] = (residual * residual).sum() / valid.sum()
        if self.grad_weight:
            grad = gradient_matching_loss(residual, valid, self.scales)
            losses["loss_grad"] = self.grad_weight * grad
        return losses
