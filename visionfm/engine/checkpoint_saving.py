"""Crash-safe checkpoint writing: atomic files, finite weights, removal after saving.

mmengine 0.10.x writes a checkpoint by streaming it into the final path, writes the
``last_checkpoint`` pointer with a plain ``open(..., "w")`` and deletes the oldest kept
(or the previous best) checkpoint *before* saving the new one. A crash, a full disk or
a SIGKILL in the middle leaves a truncated ``epoch_N.pth``, an empty pointer, or no
complete checkpoint at all. Here:

- ``atomic_write`` writes to a hidden temporary file in the same folder
  (``.<name>.<pid>.<token>.tmp``), flushes and fsyncs it, then ``os.replace``s it onto
  the final name and fsyncs the folder: a file named like a checkpoint is always whole.
- ``save_checkpoint`` (installed in place of mmengine's by ``checkpoint.install``) refuses
  to write a model with NaN/inf weights or buffers, then saves atomically.
- ``SafeCheckpointHook`` (used by ``build_runner`` wherever a config asks for
  ``CheckpointHook``) writes the pointer atomically and removes outdated and previous-best
  checkpoints only once the new one is complete.
"""

from __future__ import annotations

import os
import os.path as osp
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO

import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.hooks import CheckpointHook
from mmengine.runner import checkpoint as mm_checkpoint

from visionfm.registry import HOOKS

_MMENGINE_SAVE = mm_checkpoint.save_checkpoint  # kept for remote (non-local) back ends
_TMP_PATTERN = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")


class NonFiniteCheckpointError(RuntimeError):
    """A checkpoint was about to be saved with NaN/inf weights; nothing was written."""


def _fsync_dir(directory: str) -> None:
    """Persist a rename in ``directory`` (no-op where folders cannot be opened, e.g. Windows)."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it onto ``path``.

    Readers see either the old ``path`` or the complete new one, never a partial file; on
    any error (including KeyboardInterrupt) the temporary file is removed and ``path`` is
    left as it was.
    """
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f".{osp.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def atomic_write_text(path: str, text: str) -> None:
    """``atomic_write`` for a small text file such as ``last_checkpoint``."""
    atomic_write(path, lambda f: f.write(text.encode()))


def remove_stale_temporaries(directory: str) -> list[str]:
    """Delete temporary files that an interrupted ``atomic_write`` (SIGKILL) left behind.

    Only call it where no other process is saving into ``directory``. Returns their paths.
    """
    if not osp.isdir(directory):
        return []
    stale = [osp.join(directory, n) for n in os.listdir(directory) if _TMP_PATTERN.match(n)]
    for path in stale:
        with suppress(OSError):
            os.remove(path)
    return stale


def non_finite_entries(state_dict: dict) -> list[str]:
    """Names of the floating-point tensors in ``state_dict`` holding a NaN or an inf."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor)
        and (value.is_floating_point() or value.is_complex())
        and not bool(torch.isfinite(value).all())
    ]


def save_checkpoint(checkpoint: dict, filename: str, file_client_args=None, backend_args=None):
    """Drop-in for ``mmengine.runner.save_checkpoint``: refuses non-finite weights, and
    writes local files atomically (other back ends go to mmengine's writer).

    Raises NonFiniteCheckpointError naming the file and the non-finite tensors.
    """
    bad = non_finite_entries(checkpoint.get("state_dict", {}))
    if bad:
        shown = ", ".join(bad[:8]) + (f" ... ({len(bad)} in all)" if len(bad) > 8 else "")
        raise NonFiniteCheckpointError(
            f"refusing to save checkpoint {filename}: the model has NaN/inf values in {shown}. "
            "The checkpoints already on disk are kept. Training diverged: lower the learning "
            "rate or clip gradients (optim_wrapper.clip_grad=dict(max_norm=1.0)); "
            "nan_policy='skip' drops steps whose loss or gradients are not finite."
        )
    is_local = file_client_args is None and isinstance(
        get_file_backend(filename, backend_args=backend_args), LocalBackend
    )
    if not is_local:
        return _MMENGINE_SAVE(checkpoint, filename, file_client_args, backend_args)
    atomic_write(filename, lambda f: torch.save(checkpoint, f))


class _RemovalsAfterSave:
    """File back-end proxy that records ``remove`` / ``rmtree`` instead of doing them."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.pending: list[str] = []

    def remove(self, path) -> None:
        self.pending.append(str(path))

    def rmtree(self, path) -> None:
        self.pending.append(str(path))

    def __getattr__(self, name: str):
        return getattr(self._backend, name)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that never leaves the work dir without a complete
    checkpoint: files are written atomically (see module doc), ``last_checkpoint`` is
    replaced atomically after the checkpoint it names is complete, and outdated
    (``max_keep_ckpts``) and previous-best checkpoints are deleted only after that.

    Same arguments as ``CheckpointHook``. For checkpoints inside an epoch (which
    ``ResumableEpochBasedTrainLoop`` resumes exactly) use ``by_epoch=False, interval=N``.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, LocalBackend):
            for folder in {str(self.out_dir), runner.work_dir}:
                for path in remove_stale_temporaries(folder):
                    runner.logger.warning(f"removed {path}, left by an interrupted save")

    @contextmanager
    def _removals_after_save(self) -> Iterator[None]:
        if isinstance(self.file_backend, _RemovalsAfterSave):  # nested: the outer one removes
            yield
            return
        backend, self.file_backend = self.file_backend, _RemovalsAfterSave(self.file_backend)
        try:
            yield
            pending = self.file_backend.pending
        finally:
            self.file_backend = backend
        keep = {str(self.last_ckpt), str(getattr(self, "best_ckpt_path", None))}
        keep |= {str(p) for p in getattr(self, "best_ckpt_path_dict", {}).values()}
        for path in pending:
            if path in keep:
                continue
            if backend.isfile(path):
                backend.remove(path)
            elif backend.isdir(path):  # deepspeed checkpoints are folders
                backend.rmtree(path)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        # mmengine's version, with removals deferred and an atomic pointer file
        with self._removals_after_save():
            if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step
            ):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    old = self.keep_ckpt_ids.popleft()
                    if is_main_process():
                        self.file_backend.remove(
                            self.file_backend.join_path(
                                self.out_dir, self.filename_tmpl.format(old)
                            )
                        )
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
            filename = self.filename_tmpl.format(step)
            self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
            runner.message_hub.update_info("last_ckpt", self.last_ckpt)
            runner.save_checkpoint(
                self.out_dir,
                filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args,
            )
            if is_main_process():
                atomic_write_text(osp.join(runner.work_dir, "last_checkpoint"), self.last_ckpt)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not hasattr(self, "file_backend"):  # validation without training: nothing to save
            return
        with self._removals_after_save():
            super()._save_best_checkpoint(runner, metrics)
