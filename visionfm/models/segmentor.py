"""``Segmentor``: the task model for dense heads, with whole-image or sliding-window inference.

Sliding-window inference runs backbone -> neck -> head on every window of the input, so it
belongs to the task model, which owns all three; the heads stay feature-in / logits-out.
A dense head is a :class:`~visionfm.heads.DenseHead` (every ``SemanticSegHead``,
``DPTDepthHead``): the stitched logits of the whole input go to its ``predict_by_logits``,
which maps them back to the original images exactly as after a whole-image pass.

Config::

    model = dict(
        type='Segmentor', backbone=..., neck=..., head=dict(type='UperNetHead', ...),
        test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor, nn

from visionfm.data.batch import unlabelled_samples
from visionfm.data.data_sample import DataSample
from visionfm.heads.base import DenseHead, Head
from visionfm.registry import MODELS, settings

from .task_model import TaskModel

__all__ = ["Segmentor", "slide_inference", "window_starts"]

_TEST_CFG = MappingProxyType(dict(mode="whole", crop_size=None, stride=None))  # all there are


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Offsets of windows of length ``crop`` every ``stride`` along ``size``; the last window
    ends exactly at ``size`` (one window at 0 when ``crop >= size``)."""
    if crop >= size:
        return [0]
    starts = list(range(0, size - crop + 1, stride))
    if starts[-1] != size - crop:
        starts.append(size - crop)
    return starts


def slide_inference(
    inputs: Tensor,
    fn: Callable[[Tensor], Tensor],
    crop_size: tuple[int, int],
    stride: tuple[int, int],
) -> Tensor:
    """Run ``fn`` on overlapping windows and average the outputs where windows overlap.

    Args:
        inputs: (B, C, H, W).
        fn: window (B, C, h, w) -> dense output (B, K, h', w') covering the window (resized
            bilinearly to (h, w) here when h', w' differ).
        crop_size, stride: (h, w) of the windows and of the steps between them; windows are
            clipped to the input (an input smaller than ``crop_size`` is one window).

    Returns:
        (B, K, H, W): every pixel the mean of the outputs of the windows covering it.
    """
    h, w = inputs.shape[-2:]
    (ch, cw), (sh, sw) = crop_size, stride
    out: Tensor | None = None
    count = inputs.new_zeros(1, 1, h, w)
    for y in window_starts(h, ch, sh):
        for x in window_starts(w, cw, sw):
            crop = inputs[..., y : y + ch, x : x + cw]
            pred = fn(crop)
            if pred.shape[-2:] != crop.shape[-2:]:
                pred = nn.functional.interpolate(
                    pred, size=crop.shape[-2:], mode="bilinear", align_corners=False
                )
            if out is None:
                out = pred.new_zeros(*pred.shape[:2], h, w)
            out[..., y : y + ch, x : x + cw] += pred
            count[..., y : y + ch, x : x + cw] += 1
    return out / count


def _check_test_cfg(test_cfg: Mapping) -> dict:
    cfg = settings(test_cfg, _TEST_CFG, "test_cfg")
    if cfg["mode"] not in ("whole", "slide"):
        raise ValueError(f"Segmentor test_cfg.mode must be 'whole' or 'slide', got {cfg['mode']!r}")
    if cfg["mode"] == "slide":
        for key in ("crop_size", "stride"):
            value = cfg.get(key)
            if value is None or len(value) != 2 or min(value) < 1:
                raise ValueError(
                    f"Segmentor test_cfg mode='slide' needs {key}=(h, w) of positive ints, "
                    f"got {value!r}"
                )
            cfg[key] = (int(value[0]), int(value[1]))
    return cfg


@MODELS.register_module()
class Segmentor(TaskModel):
    """Backbone + optional neck + head(s), like ``TaskModel``, plus a test-time strategy.

    Args:
        backbone, head, neck, data_preprocessor: as ``TaskModel``.
        test_cfg: ``mode='whole'`` (default: one pass over the padded batch) or
            ``mode='slide'`` with ``crop_size=(h, w)`` and ``stride=(h, w)``: the whole
            network runs on each window (see :func:`slide_inference`) and every dense head
            (:class:`~visionfm.heads.DenseHead`) receives the stitched logits. Other heads of
            a multi-head model still predict from one whole-image pass; a model without a
            dense head is refused.

    Training and ``mode='tensor'`` are the same as ``TaskModel``'s.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Head | Mapping[str, Head],
        neck: nn.Module | None = None,
        data_preprocessor: nn.Module | None = None,
        test_cfg: Mapping = _TEST_CFG,
    ) -> None:
        super().__init__(backbone, head, neck, data_preprocessor)
        self.test_cfg = _check_test_cfg(test_cfg)
        if self.test_cfg["mode"] == "slide" and not self._dense_heads():
            heads = [type(h).__name__ for _, h in self.named_heads()]
            raise ValueError(
                "Segmentor test_cfg mode='slide' needs a dense head (a visionfm.heads."
                f"DenseHead, e.g. a SemanticSegHead), but the heads are {heads}: use "
                "mode='whole'"
            )

    def _dense_heads(self) -> list[DenseHead]:
        return [h for h in self.heads_in_prediction_order() if isinstance(h, DenseHead)]

    def forward(
        self,
        inputs: Tensor,
        data_samples: list[DataSample] | None = None,
        mode: str = "tensor",
    ):
        """As ``TaskModel.forward``; ``mode='predict'`` follows ``test_cfg``."""
        if mode != "predict" or self.test_cfg["mode"] == "whole":
            return super().forward(inputs, data_samples, mode)
        if data_samples is None:
            data_samples = unlabelled_samples(inputs)
        return self.slide_predict(inputs, data_samples)

    @torch.no_grad()
    def slide_predict(self, inputs: Tensor, data_samples: Sequence[DataSample]) -> list:
        """inputs (B, 3, H, W): dense heads predict from windowed logits, others from one
        whole-image pass; predictions in original-image coordinates."""
        dense = self._dense_heads()
        sizes: list[int] = []

        def run(window: Tensor) -> Tensor:  # (B, 3, h, w) -> (B, sum K_i, h, w)
            feats = self.extract_feat(window)
            outs = [head(feats) for head in dense]
            outs = [
                nn.functional.interpolate(
                    o, size=window.shape[-2:], mode="bilinear", align_corners=False
                )
                for o in outs
            ]
            sizes[:] = [o.shape[1] for o in outs]
            return torch.cat(outs, dim=1)

        stitched = slide_inference(inputs, run, self.test_cfg["crop_size"], self.test_cfg["stride"])
        data_samples = list(data_samples)
        for head, logits in zip(dense, stitched.split(sizes, dim=1)):
            data_samples = head.predict_by_logits(logits, data_samples)
        others = [h for h in self.heads_in_prediction_order() if not isinstance(h, DenseHead)]
        if others:
            feats = self.extract_feat(inputs)
            for head in others:
                data_samples = head.predict(feats, data_samples)
        return data_samples
