"""Stop (or skip) a training step whose loss or gradients are NaN/inf before it is applied.

mmengine applies whatever ``OptimWrapper.update_params`` is given: one NaN loss turns
every weight into NaN, the next checkpoint saves them, and the log shows ``loss: nan``
with no hint of which batch caused it. ``NonFiniteLossHook`` (``build_runner`` always
adds it) wraps each optimizer wrapper's ``update_params`` in the running process:

- a non-finite loss is caught before ``backward``; non-finite gradients (plain
  ``OptimWrapper`` kinds; ``AmpOptimWrapper``'s loss scaler already skips those) are
  caught before ``step``. Under DDP the processes agree, so all of them act alike.
- ``policy='raise'`` (the default; config key ``nan_policy``) raises ``NonFiniteLossError``
  naming the iteration, the epoch, the non-finite loss terms and the batch's images
  (``img_path`` of its data samples); nothing of the bad step is applied.
- ``policy='skip'`` drops the step (the whole accumulation window), logs a warning
  saying the same, and at the end of training the number of steps dropped; after
  more than ``max_consecutive_skips`` dropped in a row it raises.

Checkpoints with non-finite weights are refused separately, when saving
(``checkpoint_saving.save_checkpoint``).
"""

from __future__ import annotations

import functools

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict

from visionfm.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """A training step produced a NaN/inf loss or gradient."""


def _batch_images(data_batch) -> str:
    samples = data_batch.get("data_samples") if isinstance(data_batch, dict) else None
    names = []
    for sample in samples or []:
        name = getattr(sample, "img_path", None) or getattr(sample, "sample_idx", None)
        if name is not None:
            names.append(str(name))
    return ", ".join(names) if names else "unknown (the batch's data_samples carry no img_path)"


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise on, or skip, training steps with a non-finite loss or gradient (module doc).

    Args:
        policy: ``'raise'`` or ``'skip'``.
        max_consecutive_skips: with ``'skip'``, the most steps in a row that may be dropped;
            one more raises (the run has diverged).
        check_grads: also check the gradients before each optimizer step.
    """

    priority = "VERY_HIGH"  # records the batch before other hooks see it

    def __init__(
        self, policy: str = "raise", max_consecutive_skips: int = 10, check_grads: bool = True
    ) -> None:
        if policy not in ("raise", "skip"):
            raise ValueError(f"nan_policy must be 'raise' or 'skip', got {policy!r}")
        self.policy = policy
        self.max_consecutive_skips = max_consecutive_skips
        self.check_grads = check_grads
        self.skipped = 0
        self._consecutive = 0
        self._batch = None
        self._batch_idx = 0
        self._terms: dict = {}
        self._param_names: dict[int, str] = {}

    # -- wiring --------------------------------------------------------------------------
    def before_train(self, runner) -> None:
        self._runner = runner
        self.skipped = runner.message_hub.get_info("nan_skipped", 0)
        optim = runner.optim_wrapper
        wrappers = (
            optim._optim_wrappers.values() if isinstance(optim, OptimWrapperDict) else [optim]
        )
        for wrapper in wrappers:  # instance attributes: the class's methods stay as they are
            wrapper.update_params = functools.partial(self._update_params, wrapper)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._param_names = {id(p): name for name, p in model.named_parameters()}
        if hasattr(type(model), "parse_losses"):  # records the loss terms for the message
            parse = type(model).parse_losses

            def parse_losses(losses):
                loss, log_vars = parse(model, losses)
                self._terms = log_vars
                return loss, log_vars

            model.parse_losses = parse_losses

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._batch, self._batch_idx, self._terms = data_batch, batch_idx, {}

    def after_train(self, runner) -> None:
        if self.skipped:
            runner.logger.warning(
                f"{self.skipped} training steps were skipped because of a NaN/inf loss or "
                "gradient (nan_policy='skip')"
            )

    # -- the guarded update -------------------------------------------------------------
    def _update_params(self, wrapper, loss: torch.Tensor, step_kwargs=None, zero_kwargs=None):
        """``OptimWrapper.update_params`` that checks the loss and the gradients first."""
        step_kwargs, zero_kwargs = step_kwargs or {}, zero_kwargs or {}
        bad_loss = self._all_agree_bad(not bool(torch.isfinite(loss).all()), loss.device)
        own = type(wrapper).update_params
        if own is not OptimWrapper.update_params:  # a subclass's own update: loss check only
            if bad_loss:
                self._bad_step(self._loss_problem(loss))
                return None
            self._consecutive = 0
            return own(wrapper, loss, step_kwargs, zero_kwargs)
        if bad_loss:
            wrapper._inner_count += 1  # keep the accumulation windows aligned
            wrapper._nan_poisoned = True
            self._bad_step(self._loss_problem(loss))
        else:
            wrapper.backward(wrapper.scale_loss(loss))
        if not wrapper.should_update():
            return
        poisoned, wrapper._nan_poisoned = getattr(wrapper, "_nan_poisoned", False), False
        if not poisoned and self.check_grads and not hasattr(wrapper, "loss_scaler"):
            bad = self._non_finite_grads(wrapper)
            if self._all_agree_bad(bool(bad), loss.device):
                poisoned = True
                names = ", ".join(bad[:8]) + (f" ... ({len(bad)} in all)" if len(bad) > 8 else "")
                self._bad_step(f"non-finite gradients of {names or 'another process'}")
        if not poisoned:
            wrapper.step(**step_kwargs)
            self._consecutive = 0
        wrapper.zero_grad(**zero_kwargs)

    def _all_agree_bad(self, bad: bool, device: torch.device) -> bool:
        if get_world_size() == 1:
            return bad
        flag = torch.tensor([float(bad)], device=device)
        all_reduce(flag, op="max")
        return bool(flag.item())

    def _loss_problem(self, loss: torch.Tensor) -> str:
        terms = [
            f"{k}={v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v}"
            for k, v in self._terms.items()
            if isinstance(v, torch.Tensor) and not bool(torch.isfinite(v).all())
        ]
        if len(terms) > 1:  # name the parts, not their sum
            terms = [t for t in terms if not t.startswith("loss=")]
        if terms:
            return "non-finite loss terms " + ", ".join(terms)
        if bool(torch.isfinite(loss).all()):
            return "non-finite loss in another process"
        return f"non-finite loss {loss.detach().float().mean().item()}"

    def _non_finite_grads(self, wrapper) -> list[str]:
        """Names of the parameters whose gradient holds a NaN/inf (one sync when none)."""
        params = [
            p
            for group in wrapper.optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not params:
            return []
        norms = torch.stack([torch.linalg.vector_norm(p.grad.detach().float()) for p in params])
        if bool(torch.isfinite(norms).all()):
            return []
        finite = torch.isfinite(norms).tolist()
        return [self._param_names.get(id(p), "?") for p, ok in zip(params, finite) if not ok]

    def _bad_step(self, problem: str) -> None:
        runner = self._runner
        where = (
            f"iteration {runner.iter + 1} (epoch {runner.epoch + 1}, batch {self._batch_idx + 1} "
            f"of the epoch): {problem}. Images in the batch: {_batch_images(self._batch)}"
        )
        if self.policy == "raise":
            raise NonFiniteLossError(
                f"{where}. The step was not applied and no checkpoint was written after it. "
                "Check those images and their annotations; lower the learning rate or clip "
                "gradients (optim_wrapper.clip_grad=dict(max_norm=1.0)); or set "
                "nan_policy='skip' to drop such steps."
            )
        self.skipped += 1
        self._consecutive += 1
        runner.message_hub.update_info("nan_skipped", self.skipped)
        runner.logger.warning(f"skipped the training step at {where}")
        if self._consecutive > self.max_consecutive_skips:
            raise NonFiniteLossError(
                f"{self._consecutive} training steps in a row had a NaN/inf loss or gradient "
                f"(max_consecutive_skips={self.max_consecutive_skips}); the last at {where}. "
                "Training has diverged: lower the learning rate or clip gradients, and resume "
                "from the last checkpoint."
            )
