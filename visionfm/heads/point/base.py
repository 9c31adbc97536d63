"""``PointHead``: the base of the point-cloud heads, and the MLP they share.

A point task model (:class:`~visionfm.models.PointModel`) hands a head the backbone's
features plus the batch's ``offsets``::

    feats = {'points': (N, C_p), 'pooled': (B, C_g), ..., 'offsets': (B,) int64}

A head's ``forward(feats)`` gives logits, one row per cloud ``(B, K)`` (``per_point =
False``) or per input point ``(N, K)`` (``per_point = True``). :meth:`PointHead.predict` is
one pass: softmax, then :meth:`predict_by_scores`, which writes the prediction fields into
the samples. The model calls :meth:`predict_by_scores` itself when it combines several
passes (test-time votes, fragments), with the averaged probabilities mapped onto each
sample's cloud.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from visionfm.data.data_sample import DataSample
from visionfm.ops.point_batch import offsets_to_lengths

from ..base import Head

__all__ = ["PointHead", "point_mlp", "sample_name"]


def point_mlp(in_dim: int, hidden_dims: Sequence[int], dropout: float) -> nn.Sequential:
    """(M, in_dim) -> (M, hidden_dims[-1]) (or in_dim without hidden layers): per hidden width
    Linear - BatchNorm1d - ReLU - Dropout, Point-MAE's ``cls_head_finetune`` layout (so its
    indices 0, 1, 4, 5 are the first two layers' Linear and BatchNorm)."""
    layers: list[nn.Module] = []
    for dim in hidden_dims:
        layers += [nn.Linear(in_dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True)]
        layers.append(nn.Dropout(dropout))
        in_dim = dim
    return nn.Sequential(*layers)


def sample_name(sample: DataSample, i: int) -> str:
    """``'cloud i (file)'`` for error messages."""
    file = sample.metainfo.get("file")
    return f"cloud {i}" + (f" ({file})" if file else "")


class PointHead(Head):
    """Base of the point heads (see the module doc): subclasses give ``forward(feats,
    data_samples=None) -> logits``, ``per_point`` and :meth:`predict_by_scores`."""

    #: logits per input point (N, K) rather than per cloud (B, K).
    per_point: bool = False
    num_classes: int

    @torch.no_grad()
    def predict(
        self, feats: Mapping[str, Tensor], data_samples: Sequence[DataSample], rescale: bool = True
    ) -> list[DataSample]:
        """One pass: ``predict_by_scores(softmax(self(feats)), ...)``, per-point scores split
        into the samples' clouds by ``feats['offsets']``."""
        probs = self(feats, data_samples).softmax(-1)
        if self.per_point:
            probs = list(probs.split(offsets_to_lengths(feats["offsets"]).tolist()))
        return self.predict_by_scores(probs, data_samples)

    def predict_by_scores(
        self, scores: Tensor | Sequence[Tensor], data_samples: Sequence[DataSample]
    ) -> list[DataSample]:
        """Class probabilities -> the samples with the prediction fields filled: (B, K) per
        cloud, or per cloud b its points' (N_b, K) (the network's input points)."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict_by_scores")
