"""Point-cloud datasets, registered in ``DATASETS``: classification (ModelNet40 layout,
ScanObjectNN ``.h5``) and per-point segmentation (Pointcept scene folders or ``.ply``).

Each sample is a results dict of per-point fields (``coord``, ``normal``, ``color``,
``segment``, ``instance``; see ``visionfm.data.transforms.points``) plus ``label`` or
``segment``, ``file`` and ``scene``, run through the pipeline, which ends with
``PackPointInputs`` -> ``dict(inputs=float32 (N, 3 + C), data_samples=DataSample)`` with
``gt_label`` or ``gt_segment`` and metainfo ``file``, ``num_points``, ``scene``. Files are
read per sample; a missing or corrupt one (NaN coordinates, labels out of range) raises an
error naming it, or is skipped and counted with ``on_error='skip'`` (``bad_samples``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from visionfm.data.points_io import (
    read_modelnet40_names,
    read_modelnet40_shape,
    read_modelnet40_split,
    read_points_file,
    read_scanobjectnn_h5,
)
from visionfm.ops.point_sampling import farthest_point_sampling
from visionfm.registry import DATASETS

from .base import VisionDataset

__all__ = ["ModelNetDataset", "PointSceneDataset", "ScanObjectNNDataset", "fixed_size"]


def fixed_size(cloud: dict, num_points: int, sampling: str) -> dict:
    """Bring every per-point field of ``cloud`` to ``num_points`` rows: more points are cut
    by farthest point sampling from the first point (``'fps'``, Point-MAE's ``uniform``
    loader) or a uniform random subset (``'random'``); fewer are padded by repeating
    randomly drawn points (each point kept at least once)."""
    n = len(cloud["coord"])
    if n < num_points:
        keep = np.concatenate([np.arange(n), np.random.randint(n, size=num_points - n)])
    elif n == num_points:
        return cloud
    elif sampling == "fps":
        coord = torch.from_numpy(np.ascontiguousarray(cloud["coord"], np.float32))
        keep = farthest_point_sampling(coord, torch.tensor([n]), num_points)[0].numpy()
    else:
        keep = np.sort(np.random.permutation(n)[:num_points])
    return {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in cloud.items()}


class _PointDataset(VisionDataset):
    """Loads a record's cloud in ``prepare_data`` (``_load``), then runs the pipeline."""

    def _describe(self, idx: int) -> str:
        try:
            return str(self.get_data_info(idx).get("file", f"sample {idx}"))
        except Exception:  # the sample's own record is broken: say which index it was
            return f"sample {idx}"

    def _load(self, info: dict) -> dict:
        raise NotImplementedError

    def prepare_data(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        return self.pipeline({**info, **self._load(info)})


@DATASETS.register_module()
class ModelNetDataset(_PointDataset):
    """ModelNet40 (``modelnet40_normal_resampled`` layout) under ``data_root``: class names
    from ``{prefix}_shape_names.txt``, shapes from ``{prefix}_{split}.txt``. Each shape is
    brought to ``num_points`` (``fixed_size``: ``sampling='fps'`` or ``'random'``; None keeps
    every point). Yields ``coord``, ``normal`` and ``label``."""

    def __init__(
        self,
        data_root: str,
        split: str = "train",
        num_points: int | None = 1024,
        sampling: str = "fps",
        prefix: str = "modelnet40",
        **base_args,
    ) -> None:
        if sampling not in ("fps", "random"):
            raise ValueError(f"sampling must be 'fps' or 'random', got {sampling!r}")
        self.split, self.num_points, self.sampling, self.prefix = (
            split,
            num_points,
            sampling,
            prefix,
        )
        names = read_modelnet40_names(data_root, prefix)
        metainfo = {"classes": tuple(names), **(base_args.pop("metainfo", None) or {})}
        base_args.setdefault("data_prefix", {})
        super().__init__(data_root=data_root, metainfo=metainfo, **base_args)

    def load_data_list(self) -> list[dict]:
        items = read_modelnet40_split(self.data_root, self.split, self.prefix)
        return [
            {"file": str(path), "label": label, "scene": path.stem, "sample_idx": i}
            for i, (path, label) in enumerate(items)
        ]

    def _load(self, info: dict) -> dict:
        cloud = read_modelnet40_shape(info["file"])
        if self.num_points is not None:
            cloud = fixed_size(cloud, self.num_points, self.sampling)
        return cloud


@DATASETS.register_module()
class ScanObjectNNDataset(_PointDataset):
    """ScanObjectNN: one ``.h5`` (``ann_file``, joined to ``data_root``) with ``data``
    (B, P, 3) and ``label`` (B,), read at once; labels must lie in ``[0, num_classes)``.
    Yields ``coord`` and ``label``; ``file`` is ``<h5>:<index>``."""

    def __init__(self, ann_file: str, num_classes: int = 15, **base_args) -> None:
        self.num_classes = num_classes
        base_args.setdefault("data_prefix", {})
        super().__init__(ann_file=ann_file, **base_args)

    def load_data_list(self) -> list[dict]:
        points, labels = read_scanobjectnn_h5(self.ann_file, self.num_classes)
        return [
            {"file": f"{self.ann_file}:{i}", "coord": p, "label": int(y), "scene": str(i)}
            for i, (p, y) in enumerate(zip(points, labels, strict=True))
        ]

    def _load(self, info: dict) -> dict:
        return {"coord": info["coord"]}


@DATASETS.register_module()
class PointSceneDataset(_PointDataset):
    """Scenes for per-point segmentation: the Pointcept scene folders (``coord.npy`` ...) or
    the ``.ply`` files directly under ``data_root/split``, sorted by name. Yields the cloud's
    fields with ``segment`` (ids in ``[-1, num_classes)``, -1 = ignored) and ``scene`` (the
    folder or file name without extension)."""

    def __init__(
        self,
        data_root: str,
        split: str | Sequence[str] = "train",
        num_classes: int | None = None,
        **base_args,
    ) -> None:
        self.split, self.num_classes = split, num_classes
        base_args.setdefault("data_prefix", {})
        super().__init__(data_root=data_root, **base_args)

    def load_data_list(self) -> list[dict]:
        """The scenes of ``data_root / split``, or of each split in turn when ``split`` is a
        list (S3DIS's training areas: ``split=('Area_1', 'Area_2', ...)``)."""
        entries = []
        for split in [self.split] if isinstance(self.split, str) else self.split:
            folder = Path(self.data_root) / split
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder}: no such split folder (data_root / split)")
            found = sorted(p for p in folder.iterdir() if p.is_dir() or p.suffix == ".ply")
            if not found:
                raise FileNotFoundError(f"{folder}: no scene folders or .ply files")
            entries += found
        return [{"file": str(p), "scene": p.stem, "sample_idx": i} for i, p in enumerate(entries)]

    def _load(self, info: dict) -> dict:
        cloud = read_points_file(info["file"], num_classes=self.num_classes)
        if cloud.get("segment") is None:
            raise ValueError(f"{info['file']}: no segment labels for PointSceneDataset")
        return cloud
