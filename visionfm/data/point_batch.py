"""Packed point-cloud batches: clouds of different sizes concatenated, no padding.

Datasets are collated with mmengine's ``pseudo_collate`` (lists of ``(N_i, 3 + C)`` clouds
and their ``DataSample``); ``PointDataPreprocessor`` packs them on the model's device into
``points (N_total, 3 + C)`` with ``offsets (B,)`` int64 cumulative ends (cloud b is rows
``offsets[b - 1]:offsets[b]``, see ``visionfm.ops.point_batch``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from visionfm.data.data_sample import DataSample
from visionfm.registry import MODELS

__all__ = ["PointDataPreprocessor", "pack_points"]


def _name(samples: Sequence[DataSample] | None, i: int) -> str:
    file = samples[i].metainfo.get("file") if samples is not None else None
    return f"cloud {i}" + (f" ({file})" if file else "")


def pack_points(
    clouds: Sequence[torch.Tensor], data_samples: Sequence[DataSample] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clouds ``[(N_i, 3 + C)]`` -> ``points (sum N_i, 3 + C)``, ``offsets (B,)`` int64.

    Refuses an empty batch, a cloud that is not 2-D with at least 3 columns or has no
    points, and clouds whose channel counts differ (naming them, with their files when the
    samples' metainfo has ``file``).
    """
    if len(clouds) == 0:
        raise ValueError("pack_points: empty batch")
    for i, c in enumerate(clouds):
        if c.dim() != 2 or c.shape[1] < 3 or c.shape[0] == 0:
            raise ValueError(
                f"pack_points: {_name(data_samples, i)} must be (N > 0, 3 + C), "
                f"got shape {tuple(c.shape)}"
            )
    widths = [c.shape[1] for c in clouds]
    if len(set(widths)) > 1:
        odd = [i for i, w in enumerate(widths) if w != widths[0]]
        raise ValueError(
            f"pack_points: clouds have different channel counts: {_name(data_samples, 0)} has "
            f"{widths[0]}, "
            + ", ".join(f"{_name(data_samples, i)} has {widths[i]}" for i in odd)
            + "; give every sample the same PackPointInputs(features=...)"
        )
    lengths = torch.tensor([len(c) for c in clouds], dtype=torch.int64, device=clouds[0].device)
    return torch.cat(list(clouds)), torch.cumsum(lengths, 0)


@MODELS.register_module()
class PointDataPreprocessor(BaseDataPreprocessor):
    """Collated ``dict(inputs=[float (N_i, 3 + C)], data_samples=[DataSample])`` ->
    ``dict(inputs=dict(points=float32 (N_total, 3 + C), offsets=int64 (B,)),
    data_samples=[DataSample])`` on the model's device (``pack_points``). Normalisation is
    done by the pipeline's transforms (``CentreShift``, ``NormalizeColor``)."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data["inputs"]
        if isinstance(inputs, torch.Tensor):
            inputs = [inputs]
        samples = data.get("data_samples")
        points, offsets = pack_points([c.float() for c in inputs], samples)
        return dict(inputs=dict(points=points, offsets=offsets), data_samples=samples)
