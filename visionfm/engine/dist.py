"""Distributed training on mmengine 0.10: DDP and FSDP, with nccl on GPUs and gloo on CPU.

    torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch

Every process builds the same model (same seed), the ``DefaultSampler`` gives process r
the samples ``r, r + N, r + 2N, ...`` of the (shuffled) epoch order, and gradients are
averaged over processes, so N processes of batch b take the steps of one process of batch
N * b, as long as a loss is a mean over the whole batch: DETR losses divide by the number
of boxes averaged over processes (``visionfm.heads.losses.average_num_boxes``). Models
with BatchNorm see per-process statistics (set ``sync_bn='torch'`` in the config for
SyncBatchNorm); ours use LayerNorm / GroupNorm, which are per sample.

The wrapper is mmengine's ``model_wrapper_cfg``: by default
``dict(type='MMDistributedDataParallel')``, or fully sharded data parallel with
``dict(type='MMFullyShardedDataParallel', ...)`` (keyword arguments of
``torch.distributed.fsdp.FullyShardedDataParallel``, e.g. ``sharding_strategy``,
``auto_wrap_policy``).

mmengine 0.10.7 workarounds, kept here (``setup_distributed`` runs before the runner is
built, ``adapt_runner_to_fsdp`` right after):

- its ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, so on a machine
  without CUDA the gloo process group is initialised here (from torchrun's environment);
  the runner then skips its own initialisation;
- it passes ``device_ids=[LOCAL_RANK]`` to DDP, which DDP refuses for a CPU module: on
  CPU the wrapper gets ``device_ids=None``; FSDP gets ``device_id='cpu'`` (without it,
  torch's FSDP refuses to run where there is no accelerator);
- its ``Runner`` (unlike ``FlexibleRunner``) knows nothing of FSDP: it would broadcast
  rank 0's parameter shards over the others' after ``init_weights``, save rank 0's flat
  shard as the checkpoint, and clip gradients by each rank's local norm. With FSDP the
  model is initialised before it is wrapped, checkpoints hold the full (unsharded) model
  and optimizer state, gathered from all processes, and gradients are clipped by the
  global norm (``FullyShardedDataParallel.clip_grad_norm_``). Loading a checkpoint into
  an FSDP run (``load_from`` / ``resume``) and ``EMAHook`` are not supported: they fail
  with an error. Checkpoints of an FSDP run load like any other (e.g. resume with DDP).
"""

from __future__ import annotations

import datetime
import functools
import os
import types

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner
from torch.distributed.fsdp import (
    FullOptimStateDictConfig,
    FullStateDictConfig,
    OptimStateKeyType,
    StateDictType,
)
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "adapt_runner_to_fsdp",
    "init_weights_before_sharding",
    "is_fsdp_config",
    "setup_distributed",
]


def _wrapper_class(wrapper_cfg: dict | None) -> type:
    kind = (wrapper_cfg or {}).get("type", "MMDistributedDataParallel")
    cls = MODEL_WRAPPERS.get(kind) if isinstance(kind, str) else kind
    if cls is None:
        raise KeyError(f"model_wrapper_cfg: unknown model wrapper {kind!r}")
    return cls


def is_fsdp_config(cfg: Config) -> bool:
    """Whether ``cfg`` trains distributed with a fully sharded (FSDP) model wrapper."""
    if cfg.get("launcher", "none") == "none" or cfg.get("model_wrapper_cfg") is None:
        return False
    return issubclass(_wrapper_class(cfg.model_wrapper_cfg), FSDP)


def _check_fsdp_support(cfg: Config) -> None:
    """What mmengine's Runner cannot do with a sharded model fails here, before training."""
    if cfg.get("resume") or cfg.get("load_from"):
        raise NotImplementedError(
            "model_wrapper_cfg=MMFullyShardedDataParallel: load_from / resume are not "
            "supported (mmengine's Runner loads checkpoints into the sharded model); resume "
            "with MMDistributedDataParallel (FSDP checkpoints hold the full model and "
            "optimizer state)"
        )
    ema = [h for h in cfg.get("custom_hooks") or [] if "EMA" in str(h.get("type", ""))]
    if ema:
        raise NotImplementedError(
            f"model_wrapper_cfg=MMFullyShardedDataParallel: {ema[0]['type']} averages the "
            "model's parameters, which FSDP shards; remove it from custom_hooks or train "
            "with MMDistributedDataParallel"
        )


def setup_distributed(cfg: Config) -> None:
    """Prepare ``cfg`` (in place) for its ``launcher``; on CPU also start the process group.

    Nothing to do for ``launcher='none'``. Without CUDA: the ``gloo`` back end, the model
    wrapper placed on CPU (see the module doc) and, for the ``pytorch`` launcher
    (torchrun), ``torch.distributed`` initialised from the environment. With FSDP,
    ``load_from`` / ``resume`` and an EMA hook raise (not supported).
    """
    launcher = cfg.get("launcher", "none")
    if launcher == "none":
        return
    if is_fsdp_config(cfg):
        _check_fsdp_support(cfg)
    optim_wrapper = cfg.get("optim_wrapper") or {}
    if is_fsdp_config(cfg) and optim_wrapper.get("type") == "AmpOptimWrapper":
        optim_wrapper.setdefault("use_fsdp", True)  # a loss scaler that sees all shards
    if torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault("env_cfg", {})
    dist_cfg = env_cfg.setdefault("dist_cfg", {})
    if dist_cfg.get("backend", "nccl") == "nccl":  # nccl needs GPUs
        dist_cfg["backend"] = "gloo"
    wrapper_cfg = cfg.get("model_wrapper_cfg")
    if wrapper_cfg is None:  # mmengine's default wrapper, placed on CPU
        cfg.model_wrapper_cfg = dict(
            type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False
        )
    elif issubclass(_wrapper_class(wrapper_cfg), DistributedDataParallel):
        wrapper_cfg.setdefault("device_ids", None)
    elif issubclass(_wrapper_class(wrapper_cfg), FSDP):
        wrapper_cfg.setdefault("device_id", "cpu")
    if dist.is_initialized():
        return
    if launcher != "pytorch":
        raise ValueError(
            f"launcher {launcher!r} needs CUDA in mmengine 0.10 (its init_dist selects a GPU); "
            "on CPU start the processes with torchrun and --launcher pytorch"
        )
    kwargs = {k: v for k, v in dist_cfg.items() if k != "backend"}
    if "timeout" in kwargs:  # seconds, as mmengine's init_dist takes it
        kwargs["timeout"] = datetime.timedelta(seconds=kwargs["timeout"])
    os.environ.setdefault("LOCAL_RANK", "0")
    dist.init_process_group(backend=dist_cfg["backend"], **kwargs)


def init_weights_before_sharding(model: torch.nn.Module) -> None:
    """``model.init_weights()`` for an FSDP run: before the runner wraps (shards) the model.

    mmengine's ``Runner`` calls it in ``train()`` on the wrapped model's ``module`` and then
    broadcasts rank 0's parameters, which under FSDP are rank 0's shards;
    ``adapt_runner_to_fsdp`` turns that call off. Every process builds the model from the
    same seed, so the initial weights agree without a broadcast.
    """
    if hasattr(model, "init_weights"):
        model.init_weights()


def adapt_runner_to_fsdp(runner: Runner) -> None:
    """Make mmengine's ``Runner`` handle its FSDP-wrapped model (see the module doc).

    Call right after building the runner from a model that went through
    ``init_weights_before_sharding``. No-op if the model is not wrapped by FSDP.
    """
    if not isinstance(runner.model, FSDP):
        return
    runner._init_model_weights = lambda: None
    runner.save_checkpoint = types.MethodType(_save_full_checkpoint, runner)
    runner.register_hook(_FSDPGradClipHook(), priority="VERY_HIGH")


def _save_full_checkpoint(self: Runner, *args, **kwargs) -> None:
    """``Runner.save_checkpoint`` with the full (unsharded) FSDP model and optimizer state.

    Runs on every process, as ``CheckpointHook`` calls it (gathering is collective); rank 0
    writes the file. Both states have the layout of an unwrapped model's, so the checkpoint
    loads like any other (into one process, or DDP).
    """
    model: FSDP = self.model
    optim = self.optim_wrapper if kwargs.get("save_optimizer", True) else None
    with FSDP.state_dict_type(
        model,
        StateDictType.FULL_STATE_DICT,
        FullStateDictConfig(offload_to_cpu=True, rank0_only=True),
        FullOptimStateDictConfig(offload_to_cpu=True, rank0_only=True),
    ):
        state = model.state_dict()
        if isinstance(optim, OptimWrapperDict):
            optim = {name: _full_optim_state(model, w) for name, w in optim.items()}
        elif isinstance(optim, OptimWrapper):
            optim = _full_optim_state(model, optim)
        else:  # not built yet (a checkpoint before training)
            optim = None
    if dist.get_rank() != 0:
        return
    hook = _FullStateHook(state, optim)
    self._hooks.append(hook)  # last: after every other before_save_checkpoint
    try:
        Runner.save_checkpoint(self, *args, **kwargs)
    finally:
        self._hooks.remove(hook)


def _full_optim_state(model: FSDP, wrapper: OptimWrapper) -> dict | None:
    """``wrapper.state_dict()`` with the optimizer state gathered from all shards and keyed
    by parameter index, as ``torch.optim.Optimizer.state_dict()`` of the unwrapped model.

    Collective; returns the state on rank 0, None elsewhere."""
    full = FSDP.optim_state_dict(model, wrapper.optimizer)  # keyed by parameter name
    if dist.get_rank() != 0:
        return None
    full = FSDP.rekey_optim_state_dict(full, OptimStateKeyType.PARAM_ID, model)
    out = wrapper.state_dict()  # e.g. the loss scaler's state of AmpOptimWrapper
    out.update(state=full["state"], param_groups=full["param_groups"])
    return out


class _FullStateHook(Hook):
    """One-off: the gathered full state in place of the runner's sharded one."""

    def __init__(self, state: dict, optim: dict | None) -> None:
        self.state, self.optim = state, optim

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        checkpoint["state_dict"] = self.state
        if self.optim is not None:
            checkpoint["optimizer"] = self.optim


class _FSDPGradClipHook(Hook):
    """Gradient clipping by norm over all shards: ``FSDP.clip_grad_norm_`` in place of
    ``torch.nn.utils.clip_grad_norm_`` (each process would clip by its own shard's norm)."""

    def before_train(self, runner: Runner) -> None:
        wrappers = runner.optim_wrapper
        if isinstance(wrappers, OptimWrapperDict):
            wrappers = list(wrappers.values())
        else:
            wrappers = [wrappers]
        for wrapper in wrappers:
            if getattr(wrapper, "clip_func", None) is torch.nn.utils.clip_grad_norm_:
                wrapper.clip_func = functools.partial(_clip_global_norm, runner.model)


def _clip_global_norm(
    model: FSDP, params, max_norm: float, norm_type: float = 2.0, **kwargs
) -> torch.Tensor:
    """``clip_grad_norm_(params, max_norm, norm_type)`` signature; clips all of ``model``."""
    return model.clip_grad_norm_(max_norm, norm_type)
