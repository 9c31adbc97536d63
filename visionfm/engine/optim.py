"""Optimizer constructors and wrappers: layer-wise lr decay (BEiT / ViTDet style), bf16 autocast.

``LayerDecayOptimWrapperConstructor`` gives every backbone parameter the learning rate
``lr * decay_rate ** (num_layers + 1 - layer_id)`` using the backbone's own
``num_layers`` / ``get_layer_id(name)`` (the backbone contract: ViT, Swin V1/V2, PVTv2 and
TimmBackbone all implement it), so the stem learns slowest and the last blocks fastest;
parameters outside the backbone (neck, heads) keep ``lr``. On top of that it applies
mmengine-style multipliers, all at once (they multiply):

    optim_wrapper = dict(
        type="OptimWrapper",
        optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05),
        constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(
            decay_rate=0.7,                 # layer-wise lr decay over the backbone
            backbone="backbone",            # attribute holding the backbone
            custom_keys={"neck": dict(lr_mult=2.0, decay_mult=0.5)},
            norm_decay_mult=0.0,            # norm layers' weights and biases (default 0)
            bias_decay_mult=0.0,            # other biases (default 0)
            flat_decay_mult=0.0,            # other 1-D parameters, e.g. layer scales (default 0)
            no_decay_keys=("pos_embed", "cls_token", ...),  # names without weight decay
        ),
    )

Unlike mmengine's ``DefaultOptimWrapperConstructor``, where a parameter matched by
``custom_keys`` ignores every other rule (so ``custom_keys={'backbone': ...}`` silently
re-enables weight decay on the backbone's norms, and a longer key such as ``'pos_embed'``
drops the ``'backbone'`` lr_mult), here the longest matching custom key's ``lr_mult`` /
``decay_mult`` multiply the layer decay and the no-decay rules.

Mixed precision: ``AutocastOptimWrapper`` runs the forward under ``torch.autocast`` in
bfloat16 (CPU or GPU; no loss scaling needed, bf16 has fp32's range). float16 needs dynamic
loss scaling, which mmengine's ``AmpOptimWrapper`` provides on CUDA only: on a CPU-only
machine ``AmpOptimWrapper`` fails with mmengine's "only available training on gpu"
assertion, and ``AutocastOptimWrapper(dtype='float16')`` refuses to build.
``tools/train.py --amp`` picks AmpOptimWrapper (fp16) on GPU and this wrapper (bf16) on CPU.
"""

from __future__ import annotations

import difflib
import logging
from contextlib import contextmanager

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from visionfm.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS

NO_DECAY_KEYS = (
    "pos_embed",
    "cls_token",
    "reg_token",
    "register_tokens",
    "rel_pos",
    "mask_token",
    "relative_position_bias_table",
)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm,
          nn.LayerNorm, *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))  # fmt: skip
_PARAMWISE_KEYS = (
    "decay_rate",
    "backbone",
    "custom_keys",
    "norm_decay_mult",
    "bias_decay_mult",
    "flat_decay_mult",
    "no_decay_keys",
)


def _custom_key(name: str, keys: list[str]) -> str | None:
    """The longest of ``keys`` contained in ``name`` (ties: alphabetical), as mmengine picks."""
    hits = [k for k in keys if k in name]
    return min(hits, key=lambda k: (-len(k), k)) if hits else None


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups with layer-wise lr decay over the backbone, custom-key multipliers and
    no-decay rules (see the module doc). Frozen parameters (``requires_grad=False``) are left
    out. Each group records its ``lr_scale`` (lr / base lr)."""

    def _validate_cfg(self) -> None:
        super()._validate_cfg()
        unknown = sorted(set(self.paramwise_cfg) - set(_PARAMWISE_KEYS))
        for key in unknown:
            close = difflib.get_close_matches(key, _PARAMWISE_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"LayerDecayOptimWrapperConstructor: unknown paramwise_cfg key {key!r}.{hint} "
                f"It accepts: {', '.join(_PARAMWISE_KEYS)}."
            )

    def _decay_mult(self, name: str, param: nn.Parameter, is_norm: bool, cfg: dict) -> float:
        """Weight-decay multiplier from the no-decay rules (before custom keys)."""
        if any(k in name for k in cfg.get("no_decay_keys", NO_DECAY_KEYS)):
            return 0.0
        if is_norm:
            return float(cfg.get("norm_decay_mult", 0.0))
        if name.endswith(".bias") or name == "bias":
            return float(cfg.get("bias_decay_mult", 0.0))
        if param.ndim <= 1:
            return float(cfg.get("flat_decay_mult", 0.0))
        return 1.0

    def add_params(self, params: list[dict], module: nn.Module, **kwargs) -> None:
        if is_model_wrapper(module):
            module = module.module
        cfg = dict(self.paramwise_cfg or {})
        decay_rate = float(cfg.get("decay_rate", 0.75))
        backbone_name = cfg.get("backbone", "backbone")
        backbone = getattr(module, backbone_name, None)
        if backbone is None or not hasattr(backbone, "get_layer_id"):
            raise ValueError(
                f"LayerDecayOptimWrapperConstructor: the model has no backbone "
                f"'{backbone_name}' with get_layer_id/num_layers"
            )
        custom = dict(cfg.get("custom_keys") or {})
        top = backbone.num_layers + 1
        prefix = backbone_name + "."
        groups: dict[tuple[float, float | None], dict] = {}
        seen: set[int] = set()
        for mod_name, mod in module.named_modules():
            is_norm = isinstance(mod, _NORMS)
            for pname, param in mod.named_parameters(recurse=False):
                name = f"{mod_name}.{pname}" if mod_name else pname
                if not param.requires_grad or id(param) in seen:  # frozen / shared
                    continue
                seen.add(id(param))
                scale = 1.0
                if name.startswith(prefix):
                    scale = decay_rate ** (top - backbone.get_layer_id(name[len(prefix) :]))
                wd_mult = self._decay_mult(name, param, is_norm, cfg)
                key = _custom_key(name, sorted(custom))
                if key is not None:
                    scale *= float(custom[key].get("lr_mult", 1.0))
                    wd_mult *= float(custom[key].get("decay_mult", 1.0))
                wd = None if self.base_wd is None else self.base_wd * wd_mult
                group = groups.get((scale, wd))
                if group is None:
                    group = dict(params=[], lr=self.base_lr * scale, lr_scale=scale)
                    if wd is not None:
                        group["weight_decay"] = wd
                    groups[(scale, wd)] = group
                group["params"].append(param)
        params.extend(groups.values())
        scales = [g["lr_scale"] for g in groups.values()]
        print_log(
            f"LayerDecayOptimWrapperConstructor: {len(groups)} parameter groups, lr scales "
            f"{min(scales, default=1):.3g} .. {max(scales, default=1):.3g}",
            logger="current",
            level=logging.DEBUG,
        )


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision without loss scaling: the forward runs under ``torch.autocast`` in
    ``dtype`` on ``device_type`` (matmuls and convolutions in bf16, weights, gradients and
    optimizer state stay fp32). For CPUs, where mmengine's ``AmpOptimWrapper`` (CUDA only)
    cannot run. Only bfloat16: float16 overflows without a loss scaler (use mmengine's
    ``AmpOptimWrapper`` with ``loss_scale='dynamic'`` on GPU). Gradient accumulation and
    clipping work as in ``OptimWrapper``."""

    def __init__(
        self,
        *args,
        dtype: str | torch.dtype = "bfloat16",
        device_type: str = "cpu",
        **kwargs,
    ):
        given = dtype
        dtype = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
        if dtype == torch.float16:
            raise ValueError(
                "AutocastOptimWrapper(dtype='float16'): float16 needs loss scaling, which this "
                "wrapper does not do. Use dtype='bfloat16' (CPU or GPU), or on a GPU "
                "optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic') "
                "(tools/train.py --amp picks it when CUDA is available)."
            )
        if dtype != torch.bfloat16:
            raise ValueError(f"AutocastOptimWrapper: dtype must be 'bfloat16', got {given!r}")
        super().__init__(*args, **kwargs)
        self.dtype = dtype
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast(self.device_type, dtype=self.dtype):
            yield
