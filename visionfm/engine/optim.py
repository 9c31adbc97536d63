"""Optimizer constructors: layer-wise lr decay for backbones (BEiT / ViTDet style).

``LayerDecayOptimWrapperConstructor`` gives every backbone parameter the learning rate
``lr * decay_rate ** (num_layers + 1 - layer_id)`` using the backbone's own
``num_layers`` / ``get_layer_id(name)`` (the backbone contract), so the stem learns
slowest and the last blocks fastest; parameters outside the backbone (neck, heads) keep
``lr``. Biases, norms, position embeddings and tokens get no weight decay.

    optim_wrapper = dict(
        type="OptimWrapper",
        optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05),
        constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(decay_rate=0.7, backbone="backbone"),
    )
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn

from visionfm.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS

_NO_DECAY_KEYWORDS = (
    "pos_embed",
    "cls_token",
    "reg_token",
    "register_tokens",
    "rel_pos",
    "mask_token",
)


def _no_weight_decay(name: str, param: nn.Parameter) -> bool:
    return param.ndim <= 1 or any(k in name for k in _NO_DECAY_KEYWORDS)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Parameter groups with layer-wise lr decay over the backbone (see module doc).

    paramwise_cfg keys: ``decay_rate`` (default 0.75), ``backbone`` (attribute name of the
    backbone in the model, default "backbone").
    """

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
        top = backbone.num_layers + 1
        prefix = backbone_name + "."
        groups: dict[tuple[float, float], dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            scale = 1.0
            if name.startswith(prefix):
                scale = decay_rate ** (top - backbone.get_layer_id(name[len(prefix) :]))
            wd = 0.0 if _no_weight_decay(name, param) else self.base_wd
            key = (scale, wd)
            group = groups.setdefault(
                key, dict(params=[], lr=self.base_lr * scale, weight_decay=wd, lr_scale=scale)
            )
            group["params"].append(param)
        params.extend(groups.values())


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision without loss scaling: the forward runs under ``torch.autocast`` in
    ``dtype`` (bfloat16 by default) on ``device_type``. For CPUs, where mmengine's
    ``AmpOptimWrapper`` (CUDA only) cannot run; bf16 keeps fp32's range, so no scaler."""

    def __init__(self, *args, dtype: str = "bfloat16", device_type: str = "cpu", **kwargs):
        super().__init__(*args, **kwargs)
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast(self.device_type, dtype=self.dtype):
            yield
