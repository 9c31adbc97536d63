"""``SkippedSamplesHook``: how many training samples were skipped because their files failed
to load (datasets built with ``on_error='skip'``, see
:mod:`visionfm.data.datasets.bad_samples`)."""

from __future__ import annotations

import logging

from mmengine.hooks import Hook

from visionfm.registry import HOOKS

__all__ = ["SkippedSamplesHook", "skipped_samples"]


def skipped_samples(dataset) -> int:
    """Samples skipped so far by ``dataset`` and the datasets it wraps (Concat / Repeat ...)."""
    total = int(getattr(dataset, "num_skipped_samples", 0) or 0)
    for inner in getattr(dataset, "datasets", None) or []:
        total += skipped_samples(inner)
    inner = getattr(dataset, "dataset", None)
    if inner is not None and inner is not dataset:
        total += skipped_samples(inner)
    return total


@HOOKS.register_module()
class SkippedSamplesHook(Hook):
    """At the end of each training epoch, log (WARNING) how many samples the training
    dataset skipped in that epoch and in all, when any were. The count covers the main
    process and its DataLoader workers of this rank."""

    priority = "LOW"

    def __init__(self) -> None:
        self._reported = 0

    def after_train_epoch(self, runner) -> None:
        total = skipped_samples(runner.train_dataloader.dataset)
        if total > self._reported:
            runner.logger.log(
                logging.WARNING,
                f"epoch {runner.epoch + 1}: {total - self._reported} training samples skipped "
                f"because their files failed to load ({total} since the start; each is logged "
                f"as 'skipping <file>: <reason>')",
            )
            self._reported = total
