"""Monocular depth metrics (Eigen et al., NeurIPS 2014), computed per image and averaged
over images, as the BTS (Lee et al., 2019) and AdaBins (Bhat et al., CVPR 2021) evaluation
scripts do (not pooled over all pixels of the dataset).

Per image, on valid pixels (``min_depth < gt < max_depth``, inside the evaluation crop),
with the prediction clamped to ``[min_depth, max_depth]`` (NaN -> min, inf -> max):

=========  ====================================================
abs_rel    mean(|gt - pred| / gt)
sq_rel     mean((gt - pred)^2 / gt)
rmse       sqrt(mean((gt - pred)^2))
rmse_log   sqrt(mean((log gt - log pred)^2))
log10      mean(|log10 gt - log10 pred|)
silog      100 * sqrt(mean(e^2) - mean(e)^2), e = log pred - log gt
d1, d2, d3 fraction with max(gt / pred, pred / gt) < 1.25, 1.25^2, 1.25^3
=========  ====================================================

Evaluation crops (fractions of the ground truth's size; exact pixel rows/columns of the
published scripts at NYU's 480 x 640 and KITTI's frame sizes): ``'nyu'`` -- Eigen's NYU
crop, rows 45:471, columns 41:601 of 480 x 640; ``'garg'`` / ``'eigen'`` -- the KITTI crops
of Garg et al. (2016) and Eigen et al. (2014).

Config::

    val_evaluator = dict(type='DepthMetric')  # crop / range / scale from the dataset's metainfo
    val_evaluator = dict(type='DepthMetric', eval_crop='garg', max_depth=80.0)

The ground truth is read at the ORIGINAL resolution from each sample's ``depth_path``
metainfo (``PackInputs`` keeps it by default) with its ``depth_scale``; without it the
sample's ``gt_depth`` is used when the test pipeline did not resize, flip or crop.
Predictions: ``pred_depth`` (metres) or, for relative models, ``pred_disparity`` with
``align='scale_shift'``. Each process keeps only a small dict of numbers per image, so
results gather cheaply across processes; repeats (padded distributed sampling) are dropped
by image path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement

from visionfm.data.files import read_depth_file
from visionfm.registry import METRICS

__all__ = ["DepthMetric", "depth_errors", "eval_crop_mask", "METRIC_NAMES"]

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")
_ALIGNS = (None, "median", "scale_shift")
# (top, bottom, left, right) as fractions of (H, W)
_CROPS = {
    "nyu": (45 / 480, 471 / 480, 41 / 640, 601 / 640),
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def eval_crop_mask(shape: Sequence[int], crop: str | None) -> np.ndarray:
    """(H, W) bool: True inside the evaluation crop ``crop`` (None: everywhere)."""
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), dtype=bool)
    if crop is None:
        mask[:] = True
        return mask
    if crop not in _CROPS:
        raise ValueError(f"DepthMetric: eval_crop must be None or one of {sorted(_CROPS)}")
    top, bottom, left, right = _CROPS[crop]
    mask[int(top * h) : int(bottom * h), int(left * w) : int(right * w)] = True
    return mask


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The metrics of the module doc for matching 1-d arrays of valid pixels (metres > 0)."""
    pred, gt = pred.astype(np.float64), gt.astype(np.float64)
    ratio = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    log_err = np.log(pred) - np.log(gt)
    return dict(
        abs_rel=float(np.mean(np.abs(diff) / gt)),
        sq_rel=float(np.mean(diff**2 / gt)),
        rmse=float(np.sqrt(np.mean(diff**2))),
        rmse_log=float(np.sqrt(np.mean(log_err**2))),
        log10=float(np.mean(np.abs(np.log10(gt) - np.log10(pred)))),
        silog=float(100 * np.sqrt(max(np.mean(log_err**2) - np.mean(log_err) ** 2, 0.0))),
        d1=float(np.mean(ratio < 1.25)),
        d2=float(np.mean(ratio < 1.25**2)),
        d3=float(np.mean(ratio < 1.25**3)),
    )


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _scale_shift(pred_disp: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Least-squares ``s * pred_disp + t`` fit to ``1 / gt`` (1-d arrays) -> that disparity."""
    a = np.stack([pred_disp, np.ones_like(pred_disp)], axis=1)
    (s, t), *_ = np.linalg.lstsq(a, 1.0 / gt, rcond=None)
    return s * pred_disp + t


@METRICS.register_module()
class DepthMetric(BaseMetric):
    """Per-image depth errors averaged over images (see the module doc).

    Args:
        min_depth, max_depth: valid ground-truth range in metres, also the prediction
            clamp. None: the dataset's (``dataset_meta``), else 1e-3 / 10.
        eval_crop: 'nyu', 'garg', 'eigen', 'none' (no crop), or None: the dataset's.
        depth_scale: of the ground-truth files when a sample carries none; None: the
            dataset's, else 1000.
        align: None (metric depth); 'median': scale the prediction by median(gt) /
            median(pred) per image (scale-ambiguous models); 'scale_shift': least-squares
            scale and shift in disparity space (relative models writing ``pred_disparity``).
        collect_device / prefix / collect_dir: as mmengine's ``BaseMetric``.
    """

    default_prefix = "depth"

    def __init__(
        self,
        min_depth: float | None = None,
        max_depth: float | None = None,
        eval_crop: str | None = None,
        depth_scale: float | None = None,
        align: str | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if align not in _ALIGNS:
            raise ValueError(f"DepthMetric: align must be one of {_ALIGNS}, got {align!r}")
        if eval_crop not in (None, "none", *_CROPS):
            raise ValueError(
                f"DepthMetric: eval_crop must be None, 'none' or one of {sorted(_CROPS)}, "
                f"got {eval_crop!r}"
            )
        self.min_depth, self.max_depth = min_depth, max_depth
        self.eval_crop, self.depth_scale, self.align = eval_crop, depth_scale, align
        self.num_skipped = 0

    def _setting(self, name: str, default: Any) -> Any:
        """This metric's value, else the dataset's metainfo, else ``default``."""
        value = getattr(self, name)
        if value is None:
            value = (self.dataset_meta or {}).get(name)
        return default if value is None else value

    # ---- per batch ----------------------------------------------------------------------
    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Store a small dict per image: ``key`` (image path / id), ``num_pixels`` and the
        metrics (images without a valid pixel are skipped and counted)."""
        lo, hi = float(self._setting("min_depth", 1e-3)), float(self._setting("max_depth", 10.0))
        crop = self._setting("eval_crop", None)
        crop = None if crop == "none" else crop
        for sample in data_samples:
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            gt = self._ground_truth(sample)
            pred = self._prediction(sample, gt.shape)
            valid = (gt > lo) & (gt < hi) & eval_crop_mask(gt.shape, crop)
            if not valid.any():
                self.num_skipped += 1
                continue
            p, g = pred[valid], gt[valid].astype(np.float64)
            if self.align == "scale_shift":
                disp = _scale_shift(p, g)
                p = 1.0 / np.maximum(disp, 1.0 / hi)
            elif self.align == "median":
                p = p * np.median(g) / max(np.median(p), 1e-12)
            p = np.clip(np.nan_to_num(p, nan=lo, posinf=hi, neginf=lo), lo, hi)
            key = sample.get("img_path", sample.get("img_id", len(self.results)))
            self.results.append(dict(key=key, num_pixels=int(valid.sum()), **depth_errors(p, g)))

    def _ground_truth(self, sample: Mapping) -> np.ndarray:
        """(H0, W0) float metres at the original resolution (see the module doc)."""
        path = sample.get("depth_path")
        if path is not None:
            scale = sample.get("depth_scale") or self._setting("depth_scale", 1000.0)
            return read_depth_file(path, float(scale))
        if "gt_depth" in sample:
            h, w = (int(v) for v in sample["img_shape"][:2])
            ori = tuple(int(v) for v in sample.get("ori_shape", (h, w))[:2])
            matrix = sample.get("homography_matrix")
            moved = matrix is not None and not np.allclose(np.asarray(matrix), np.eye(3))
            if (h, w) == ori and not moved and not sample.get("flip", False):
                return _numpy(sample["gt_depth"])[:h, :w]
        raise KeyError(
            "DepthMetric reads the ground truth at the original size from the 'depth_path' "
            "metainfo (keep it in PackInputs' meta_keys), or uses 'gt_depth' when the test "
            f"pipeline leaves the image untransformed; got keys {sorted(sample)}"
        )

    def _prediction(self, sample: Mapping, shape: tuple[int, ...]) -> np.ndarray:
        if "pred_depth" in sample:
            pred = _numpy(sample["pred_depth"])
            if self.align == "scale_shift":  # align in disparity space
                pred = 1.0 / np.maximum(pred, 1e-12)
        elif "pred_disparity" in sample:
            if self.align != "scale_shift":
                raise ValueError(
                    "DepthMetric: a relative model's pred_disparity needs align='scale_shift'"
                )
            pred = _numpy(sample["pred_disparity"])
        else:
            raise KeyError(
                f"DepthMetric: a sample needs 'pred_depth' or 'pred_disparity', got {sorted(sample)}"
            )
        if pred.shape != tuple(shape):
            raise ValueError(
                f"DepthMetric: prediction of {sample.get('img_path')} is {pred.shape} but its "
                f"ground truth is {tuple(shape)} (predictions must be at the original size)"
            )
        return pred

    # ---- whole dataset ------------------------------------------------------------------
    def compute_metrics(self, results: list[dict]) -> dict[str, float]:
        """Mean of each metric over the (de-duplicated) images, rounded to 4 decimals."""
        unique: dict[Any, dict] = {}
        for res in results:
            unique.setdefault(res["key"], res)
        if self.num_skipped:
            print_log(
                f"DepthMetric: {self.num_skipped} images without valid ground-truth pixels "
                "were skipped",
                logger="current",
                level=logging.WARNING,
            )
            self.num_skipped = 0
        if not unique:
            print_log("DepthMetric: no image to evaluate", logger="current", level=logging.WARNING)
            return {name: float("nan") for name in METRIC_NAMES}
        return {
            name: round(float(np.mean([r[name] for r in unique.values()])), 4)
            for name in METRIC_NAMES
        }
