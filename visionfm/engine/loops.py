"""Epoch-based training that resumes exactly in the middle of an epoch.

mmengine 0.10's ``EpochBasedTrainLoop`` restores the epoch and iteration counters
from a checkpoint but always starts the epoch from its first batch. A checkpoint saved
inside an epoch (``CheckpointHook(by_epoch=False, interval=N)``) therefore trains the
already-seen batches a second time, runs past ``max_iters`` and never matches an
uninterrupted run. ``ResumableEpochBasedTrainLoop`` (``build_runner`` uses it for every
``by_epoch=True`` config) continues with the first batch not yet trained, in the same
shuffled order (``DefaultSampler`` shuffles by ``seed + epoch``), and with the same
random streams:

- the main process's random states are those of the checkpoint (``RNGStateHook``); the
  fast-forward below happens with them saved and put back afterwards, so neither
  creating the data iterator nor skipping consumes them;
- with ``num_workers=0`` the trained batches are skipped by advancing the sampler only
  (no data is loaded): their augmentation draws came from the main process's stream,
  which the checkpoint holds;
- with worker processes the trained batches are loaded again and dropped, so each
  worker (re-seeded at every epoch by mmengine's ``worker_init_fn``) reaches the next
  batch in the random state it had in the uninterrupted run. With
  ``persistent_workers=True`` the workers' streams run on across epochs and cannot be
  replayed; such a run resumes with different augmentations (a warning says so).

``ResumableIterBasedTrainLoop`` (for ``by_epoch=False`` configs) keeps mmengine's replay
of all trained batches but does it with the checkpoint's random states saved and put
back, which mmengine's loop does not: there, with ``num_workers=0``, the replayed
augmentations consume the restored stream and every later draw differs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from .hooks import rng_state, set_rng_state


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run the body without changing the python / numpy / torch random states."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes a checkpoint saved mid-epoch at the next batch.

    Same arguments as mmengine's loop; see the module doc for how the batches already
    trained are skipped.
    """

    def run(self):
        per_epoch = len(self.dataloader)
        done = self._iter - self._epoch * per_epoch
        if not 0 <= done <= per_epoch:
            self.runner.logger.warning(
                f"checkpoint at iteration {self._iter}, epoch {self._epoch} does not fit "
                f"{per_epoch} batches per epoch (dataset or batch size changed?): the epoch "
                "restarts from its first batch"
            )
            done = 0
        self._batches_done = done
        return super().run()

    def run_epoch(self) -> None:
        skip, self._batches_done = getattr(self, "_batches_done", 0), 0
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        batches = self._skip_trained(skip) if skip else iter(self.dataloader)
        for idx, data_batch in enumerate(batches, start=skip):
            self.run_iter(idx, data_batch)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1

    def _skip_trained(self, skip: int) -> Iterator:
        """Iterator over this epoch's batches from batch ``skip`` on (random states kept)."""
        if skip >= len(self.dataloader):
            return iter(())  # only the end-of-epoch hooks were left to run
        start = time.perf_counter()
        loader = self.dataloader
        with preserved_rng():
            iterator = iter(loader)
            sampler_iter = getattr(iterator, "_sampler_iter", None)  # torch's index iterator
            if loader.num_workers == 0 and sampler_iter is not None:
                how = "sampler advanced, no data loaded"
                for _ in range(skip):
                    next(sampler_iter)
            else:
                how = "batches loaded again and dropped, to replay the workers' random streams"
                if getattr(loader, "persistent_workers", False):
                    self.runner.logger.warning(
                        "persistent_workers=True: the data workers' random streams cannot be "
                        "replayed, so augmentations after this resume differ from an "
                        "uninterrupted run"
                    )
                for _ in range(skip):
                    next(iterator)
        self.runner.logger.info(
            f"resuming inside epoch {self._epoch + 1}: skipped the {skip} batches already "
            f"trained ({how}, {time.perf_counter() - start:.1f} s)"
        )
        return iterator


class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` whose fast-forward on resume leaves the random states alone."""

    def run(self):
        # mmengine's run(), with the fast-forward inside preserved_rng()
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        if self._iter > 0:
            start = time.perf_counter()
            with preserved_rng():
                for _ in range(self._iter):
                    next(self.dataloader_iterator)
            self.runner.logger.info(
                f"resuming at iteration {self._iter + 1}: replayed the {self._iter} batches "
                f"already trained ({time.perf_counter() - start:.1f} s)"
            )
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            self._decide_current_val_interval()
            if (
                self.runner.val_loop is not None
                and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)
            ):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model
