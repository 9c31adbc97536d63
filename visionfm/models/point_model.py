"""``PointModel``: the task model of point clouds (point backbone -> point head(s)), with
test-time voting over augmented copies and over grid-sampling fragments.

A batch is packed (``visionfm.data.point_batch.PointDataPreprocessor``):
``inputs = dict(points=(N, 3 + C), offsets=(B,))``. The heads read the backbone's features
plus ``'offsets'`` (see :mod:`visionfm.heads.point.base`).

Test time (``mode='predict'``) follows ``test_cfg``:

- ``votes=V`` (> 1): every cloud runs V times, each copy's coordinates scaled per axis by a
  factor drawn from ``vote_scale`` and shifted by one from ``[-vote_translate,
  vote_translate]`` (Point-MAE's ``PointcloudScaleAndTranslate`` voting on ModelNet40), and
  the softmax probabilities of the copies are averaged (per cloud, or per point).
- fragments: a sample whose metainfo holds ``fragments`` (a list of index arrays into its
  cloud, from ``PointGridSample(mode='test', fragments=True)``: each fragment one point per
  voxel, together every point) runs each fragment as a cloud of its own; a per-point head's
  probabilities are averaged per ORIGINAL point over the fragments (and votes) that hold it,
  and the argmax is its prediction (Pointcept's test-time fragment voting), so every point
  gets one; a per-cloud head averages over the fragments.

Votes and fragments multiply (V copies of every fragment); ``max_clouds`` bounds how many of
these clouds go through the network at once. Without either, prediction is one pass, as
``TaskModel``'s.

Config::

    model = dict(
        type='PointModel',
        backbone=dict(type='PointPatchTransformer', ...),
        head=dict(type='PointClsHead', num_classes=40, in_channels=768),
        test_cfg=dict(votes=10))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
from torch import Tensor, nn

from visionfm.data.data_sample import DataSample
from visionfm.data.point_batch import PointDataPreprocessor
from visionfm.heads.base import Head
from visionfm.heads.point import PointHead
from visionfm.heads.point.base import sample_name
from visionfm.ops.point_batch import offsets_to_lengths, offsets_to_starts
from visionfm.registry import MODELS, settings

from .task_model import TaskModel

__all__ = ["PointModel"]

_TEST_CFG = MappingProxyType(
    dict(votes=1, vote_scale=(2 / 3, 3 / 2), vote_translate=0.2, max_clouds=None)
)


def _check_test_cfg(test_cfg: Mapping | None) -> dict:
    cfg = settings(test_cfg, _TEST_CFG, "test_cfg")
    if int(cfg["votes"]) < 1:
        raise ValueError(f"PointModel test_cfg.votes must be >= 1, got {cfg['votes']}")
    lo, hi = cfg["vote_scale"]
    if not 0 < lo <= hi:
        raise ValueError(
            f"PointModel test_cfg.vote_scale must be (lo, hi), 0 < lo <= hi, got {(lo, hi)}"
        )
    if cfg["max_clouds"] is not None and int(cfg["max_clouds"]) < 1:
        raise ValueError(
            f"PointModel test_cfg.max_clouds must be >= 1 or None, got {cfg['max_clouds']}"
        )
    return cfg


@MODELS.register_module()
class PointModel(TaskModel):
    """Point backbone + point head(s) (see the module doc).

    Args:
        backbone: ``(points (N, 3 + C), offsets (B,)) -> {'points': (N, C_p), 'pooled':
            (B, C_g), ...}`` (a point backbone).
        head: a :class:`~visionfm.heads.point.PointHead`, or ``{name: head}``.
        data_preprocessor: default ``PointDataPreprocessor()``.
        test_cfg: ``votes``, ``vote_scale`` (lo, hi), ``vote_translate``, ``max_clouds``
            (clouds per network pass at test time; None: all of the batch's).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: Head | Mapping[str, Head],
        data_preprocessor: nn.Module | None = None,
        test_cfg: Mapping | None = _TEST_CFG,
    ) -> None:
        super().__init__(backbone, head, None, data_preprocessor or PointDataPreprocessor())
        odd = [
            n.rstrip(".") or "head" for n, h in self.named_heads() if not isinstance(h, PointHead)
        ]
        if odd:
            raise TypeError(
                f"PointModel: {odd} must be point heads (visionfm.heads.point.PointHead, e.g. "
                "PointClsHead / PointSegHead)"
            )
        self.test_cfg = _check_test_cfg(test_cfg)

    def extract_feat(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``inputs`` ``points`` (N, 3 + C), ``offsets`` (B,) [, ``names``: B strings for
        errors] -> the backbone's features plus ``'offsets'``."""
        try:
            feats = dict(self.backbone(inputs["points"], inputs["offsets"]))
        except ValueError as err:
            names = inputs.get("names")
            if not names:
                raise
            raise ValueError(f"{err}\n  the batch's clouds: {'; '.join(names)}") from err
        feats["offsets"] = inputs["offsets"]
        return feats

    def forward(
        self,
        inputs: Mapping[str, Tensor],
        data_samples: list[DataSample] | None = None,
        mode: str = "tensor",
    ):
        """inputs ``dict(points=(N, 3 + C), offsets=(B,))`` from the data preprocessor.

        ``'loss'``: dict of losses; ``'predict'``: the samples with predictions (see
        ``test_cfg``); ``'tensor'``: the head's logits (a dict by head name for several).
        """
        offsets = inputs["offsets"]
        if data_samples is None:
            data_samples = [DataSample() for _ in range(len(offsets))]
        names = [sample_name(s, i) for i, s in enumerate(data_samples)]
        inputs = dict(points=inputs["points"], offsets=offsets, names=names)
        fragmented = any(s.metainfo.get("fragments") is not None for s in data_samples)
        if mode == "predict" and (fragmented or self.test_cfg["votes"] > 1):
            return self.vote_predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode)

    def _views(self, inputs: Mapping, data_samples: Sequence[DataSample]) -> list[tuple]:
        """``[(sample index, point indices (n,) into its cloud, points (n, 3 + C), name)]``:
        every fragment of every cloud (the whole cloud without fragments), ``votes`` times,
        each vote with its random scale and shift (none for a single vote)."""
        points, offsets = inputs["points"], inputs["offsets"]
        votes, (lo, hi), shift = (
            self.test_cfg[k] for k in ("votes", "vote_scale", "vote_translate")
        )
        starts = offsets_to_starts(offsets).tolist()
        views = []
        for b, (start, end) in enumerate(zip(starts, offsets.tolist(), strict=True)):
            cloud = points[start:end]
            fragments = data_samples[b].metainfo.get("fragments")
            parts = [torch.arange(len(cloud), device=points.device)] if fragments is None else [
                torch.as_tensor(idx, device=points.device).long() for idx in fragments
            ]  # fmt: skip
            for f, idx in enumerate(parts):
                name = inputs["names"][b] + ("" if fragments is None else f" fragment {f}")
                for _ in range(votes):
                    part = cloud[idx]  # a copy
                    if votes > 1:
                        scale = torch.empty(3, device=part.device).uniform_(lo, hi)
                        move = torch.empty(3, device=part.device).uniform_(-shift, shift)
                        part[:, :3] = part[:, :3] * scale + move
                    views.append((b, idx, part, name))
        return views

    @torch.no_grad()
    def vote_predict(self, inputs: Mapping, data_samples: Sequence[DataSample]) -> list:
        """Predictions averaged over votes and fragments (see the module doc): per head, the
        probabilities summed per cloud (per point for per-point heads) and divided by how
        many views held it."""
        device = inputs["points"].device
        views = self._views(inputs, data_samples)
        heads = self.heads_in_prediction_order()
        lengths = offsets_to_lengths(inputs["offsets"]).tolist()
        sums = [
            [torch.zeros(n if h.per_point else 1, h.num_classes, device=device) for n in lengths]
            for h in heads
        ]
        counts = [torch.zeros(n, device=device) for n in lengths]  # views holding each point
        chunk = self.test_cfg["max_clouds"] or len(views)
        for first in range(0, len(views), chunk):
            group = views[first : first + chunk]
            sizes = [len(part) for _, _, part, _ in group]
            feats = self.extract_feat(
                dict(
                    points=torch.cat([part for _, _, part, _ in group]),
                    offsets=torch.tensor(sizes, device=device).cumsum(0),
                    names=[name for *_, name in group],
                )
            )
            for head, head_sums in zip(heads, sums, strict=True):
                probs = head(feats).softmax(-1)  # (sum n, K) or (views, K)
                parts = probs.split(sizes) if head.per_point else probs[:, None]
                for (b, idx, _, _), p in zip(group, parts, strict=True):
                    if head.per_point:
                        head_sums[b].index_add_(0, idx, p)
                    else:
                        head_sums[b] += p
            for b, idx, _, _ in group:
                counts[b].index_add_(0, idx, torch.ones(len(idx), device=device))
        for b, count in enumerate(counts):
            if bool((count == 0).any()):
                raise ValueError(
                    f"PointModel: {inputs['names'][b]}: {int((count == 0).sum())} of its points "
                    "are in no fragment: the test pipeline's fragments must cover the cloud "
                    "(PointGridSample(mode='test', fragments=True) as its last point-dropping step)"
                )
        views_per_cloud = [sum(v[0] == b for v in views) for b in range(len(lengths))]
        data_samples = list(data_samples)
        for head, head_sums in zip(heads, sums, strict=True):
            if head.per_point:
                scores = [s / c[:, None] for s, c in zip(head_sums, counts, strict=True)]
            else:
                scores = torch.cat([s / n for s, n in zip(head_sums, views_per_cloud, strict=True)])
            data_samples = head.predict_by_scores(scores, data_samples)
        return data_samples
