"""Skipping samples whose files fail to load, inside DataLoader workers.

``SkipBadSamplesMixin`` goes before mmengine's ``BaseDataset`` in a dataset's bases and
gives it an ``on_error`` switch for errors raised while a sample is loaded
(``__getitem__``: reading and decoding the image, masks, depth, the transforms):

- ``'raise'`` (default): the error propagates, with a note naming the sample index and
  its file. In a worker, PyTorch re-raises it in the main process with the worker's
  traceback (notes included), so the message still names the file.
- ``'skip'``: only in training (not ``test_mode``: evaluation must see every image). An
  ``OSError`` or ``ValueError`` (what the readers raise for missing, unreadable, truncated
  or corrupt files and for annotations that do not fit the image) is logged as
  ``skipping <file>: <reason>`` and the next index (``idx + 1``, wrapping) is loaded
  instead, so the replacement is deterministic. Other exceptions (bugs) still propagate,
  and so does the ``max_refetch``-th failure in a row (a wrong data folder, not a few bad
  files).

Counting across processes: each worker process holds its own copy of the dataset, so the
count lives in a small shared-memory tensor (one slot per worker, no lock needed) created
with the dataset; workers forked or spawned by the DataLoader write to it, and the main
process reads the sum (``num_skipped_samples``). ``visionfm.engine.SkippedSamplesHook``
(``custom_hooks=[dict(type='SkippedSamplesHook')]``) logs it at the end of each training
epoch; without it, each skip is still logged where it happens, with the running count of
its process. Counts are per rank (in DDP every rank counts its own samples), and a
``copy.deepcopy`` of the dataset gets its own counter.
"""

from __future__ import annotations

import logging

import torch
from mmengine.logging import print_log
from torch.utils.data import get_worker_info

__all__ = ["ON_ERROR", "SKIPPABLE_ERRORS", "SkipBadSamplesMixin"]

ON_ERROR = ("raise", "skip")
SKIPPABLE_ERRORS = (OSError, ValueError)
_SLOTS = 64  # slot 0: the main process; 1..63: DataLoader workers (id modulo 63)


class SkipBadSamplesMixin:
    """``on_error`` for a ``BaseDataset`` (see the module doc). Call
    ``self._init_bad_samples(on_error)`` in ``__init__`` before ``BaseDataset.__init__``."""

    on_error: str = "raise"

    def _init_bad_samples(self, on_error: str) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        # shared with the DataLoader workers (forked or spawned); only needed for skipping
        slots = torch.zeros(_SLOTS, dtype=torch.int64)
        self._skip_slots = slots.share_memory_() if on_error == "skip" else None

    @property
    def num_skipped_samples(self) -> int:
        """Samples skipped so far by this dataset, over the main process and its workers."""
        slots = getattr(self, "_skip_slots", None)
        return int(slots.sum()) if slots is not None else 0

    def _describe(self, idx: int) -> str:
        try:
            info = self.get_data_info(idx)
        except Exception:  # the sample's own record is broken: say which index it was
            return f"sample {idx}"
        return str(info.get("img_path") or info.get("seg_map_path") or f"sample {idx}")

    def _count_skip(self) -> int:
        worker = get_worker_info()
        slot = 0 if worker is None else 1 + worker.id % (_SLOTS - 1)
        self._skip_slots[slot] += 1
        return int(self._skip_slots[slot])

    def __getitem__(self, idx: int) -> dict:
        skip = self.on_error == "skip" and not getattr(self, "test_mode", False)
        if not skip:
            try:
                return super().__getitem__(idx)
            except Exception as err:
                hint = (
                    " (on_error='skip' would skip it in training)"
                    if isinstance(err, SKIPPABLE_ERRORS)
                    else ""
                )
                err.add_note(
                    f"while loading sample {idx} of {type(self).__name__}: "
                    f"{self._describe(idx)}{hint}"
                )
                raise
        limit = max(int(getattr(self, "max_refetch", 100)), 1)
        last: Exception | None = None
        current = idx
        for attempt in range(limit):
            current = (idx + attempt) % len(self)
            try:
                return super().__getitem__(current)
            except SKIPPABLE_ERRORS as err:
                count = self._count_skip()
                print_log(
                    f"skipping {self._describe(current)}: {err} "
                    f"({count} skipped by this process so far)",
                    logger="current",
                    level=logging.WARNING,
                )
                last = err
        raise RuntimeError(
            f"{type(self).__name__}: {limit} samples in a row failed to load, from index {idx} "
            f"(last: {self._describe(current)}: {last}); check the data paths"
        ) from last
