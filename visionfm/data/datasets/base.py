"""The base of visionfm's datasets: mmengine's ``BaseDataset`` with the ``on_error`` switch,
a pipeline built by visionfm's registry and a serialisation that takes empty lists."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from visionfm.data.transforms import Compose

from .bad_samples import SkipBadSamplesMixin

__all__ = ["VisionDataset"]


class VisionDataset(SkipBadSamplesMixin, BaseDataset):
    """A ``BaseDataset`` whose subclasses set what their ``load_data_list`` reads, then call
    this ``__init__`` (which loads the data unless ``lazy_init``). Subclasses pass the
    arguments below that they do not use themselves on as ``**base_args``; the registry
    checks a config's arguments against this signature too.

    Args:
        pipeline: transforms (config dicts built by ``visionfm.registry.TRANSFORMS``, or
            callables), ending with ``PackInputs``.
        on_error: 'raise' or 'skip' a sample whose files fail to load in training (see
            :class:`~visionfm.data.datasets.bad_samples.SkipBadSamplesMixin`).
        data_prefix: folders by kind (``img``, ``seg``, ``depth``), joined to ``data_root``.
        ann_file, metainfo, data_root, indices, test_mode, lazy_init, serialize_data,
            max_refetch: as mmengine's ``BaseDataset`` (``max_refetch`` defaults to 100).
    """

    def __init__(
        self,
        pipeline: Sequence[dict | Callable] = (),
        on_error: str = "raise",
        *,
        data_prefix: dict,
        ann_file: str = "",
        metainfo: dict | None = None,
        data_root: str = "",
        indices: int | Sequence[int] | None = None,
        test_mode: bool = False,
        lazy_init: bool = False,
        serialize_data: bool = True,
        max_refetch: int = 100,
    ) -> None:
        self._init_bad_samples(on_error)
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=data_prefix,
            indices=indices,
            serialize_data=serialize_data,
            pipeline=[],
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch,
        )
        self.pipeline = Compose(pipeline)  # built by OUR registry, with or without a scope

    def _serialize_data(self) -> tuple[np.ndarray, np.ndarray]:
        """Pickle ``data_list`` into one uint8 array + (N,) int64 end offsets, as mmengine
        does, minus its failure on an empty list and its ``gc.collect()`` (about 1 s with
        torch loaded; refcounting frees the dicts anyway)."""
        chunks = [np.frombuffer(pickle.dumps(x, protocol=4), np.uint8) for x in self.data_list]
        address = np.cumsum([len(c) for c in chunks], dtype=np.int64)
        data = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
        self.data_list.clear()
        return data, address
