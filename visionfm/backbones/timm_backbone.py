"""Any timm model as a visionfm backbone (Wightman, "PyTorch Image Models", github.com/huggingface/pytorch-image-models).

How features are taken (``feature_mode``):

- ``'intermediates'`` (chosen by ``'auto'`` when the model has it: nearly every timm >= 1.0
  model, ViTs included): the plain model, pruned after the last wanted level
  (``prune_intermediate_layers``, head dropped), run through ``forward_intermediates``
  with NCHW outputs. Parameter names stay timm's, so timm's ``group_matcher`` gives
  layer ids and stages and timm checkpoints load by name.
- ``'features_only'`` (the fallback): ``timm.create_model(..., features_only=True)``.

Levels are timm's ``feature_info`` entries; ``out_indices`` index them (negatives count from
the end; for ViTs there is one entry per block, stride = patch size). Default: every level
of stride >= 4 for hierarchical models (ResNet C2-C5, ConvNeXt's four stages), the last
block for plain ViTs. Names: ``block<index>`` for plain ViTs (the block index, as in
:class:`~visionfm.backbones.vit.ViT`), else ``p<log2(stride)>`` (``block<index>`` again in
the rare case that the chosen strides are not distinct powers of two).

ViT-like models (those taking ``dynamic_img_size``) get ``dynamic_img_size=True`` and
``dynamic_img_pad=True`` unless given, so any input size runs; CNNs take any size anyway.

Layer ids for lr decay: timm's fine ``group_matcher`` groups (0 = stem, then one id per
block or stage as timm groups them; ``num_layers`` = the last id). Without a group matcher
(``features_only`` models): 0 for parameters before the first level's module, and one id per
level module after it. ``frozen_stages = k`` freezes the stem and the first ``k`` coarse
groups (ResNet: ``layer1 .. layerk``; ConvNeXt: stages; ViT: blocks).

Weights: this class never downloads. ``checkpoint=`` (a local file) is read with timm's own
``load_state_dict`` (``state_dict`` / ``model`` / EMA containers, ``.safetensors``), passed
through the model family's timm ``checkpoint_filter_fn`` when its names do not fit as they
are (original-repo layouts, resized position embeddings), and loaded strictly: every
backbone tensor must be present with its shape. Tensors of the parts pruned here (the
classifier head, blocks after the last output) are ignored; any other tensor the model has no
place for refuses the load, naming the timm argument to set where :data:`_HINTS` knows it
(a DINOv2 checkpoint into a model built without ``init_values``, say).
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
import torch.nn as nn
from timm.layers import freeze_batch_norm_2d
from timm.models import load_state_dict as timm_load_state_dict
from timm.models._manipulate import group_parameters

from visionfm.registry import MODELS
from visionfm.weights import (
    ArchHint,
    CheckpointError,
    ConvertedCheckpoint,
    LoadReport,
    load_converted,
    read_checkpoint,
)

from .base import Backbone, StagePart, level_name

__all__ = ["TimmBackbone"]

logger = logging.getLogger(__name__)
_MODES = ("auto", "intermediates", "features_only")

# optional parts of timm models, by timm's names (see weights.ArchHint)
_HINTS = (
    ArchHint(r"\.ls[12]\.gamma$", "layer scale", "init_values=1e-5 (any value; the checkpoint's gamma replaces it)", "init_values=None"),
    ArchHint(r"(^|\.)reg_token$", "register tokens", lambda s: f"reg_tokens={next(v[1] for k, v in s.items() if k.endswith('reg_token'))}", "reg_tokens=0"),
    ArchHint(r"\.attn\.[qk]_norm\.", "qk norm", "qk_norm=True", "qk_norm=False"),
    ArchHint(r"(^|\.)cls_token$", "a class token", "class_token=True", "class_token=False"),
    ArchHint(r"\.attn\.qkv\.bias$|\.attn\.[qv]_bias$", "qkv biases", "qkv_bias=True"),
    ArchHint(r"\.attn\.rel_pos_[hw]$", "relative position tables", "use_rel_pos=True"),
)  # fmt: skip


def _create(name: str, meta: bool = False, **kwargs) -> nn.Module:
    """``timm.create_model`` without weights (on the meta device: no memory, for probing)."""
    if meta:
        try:
            with torch.device("meta"):
                return timm.create_model(name, pretrained=False, **kwargs)
        except Exception:  # some inits do not run on meta tensors; probe on the CPU then
            pass
    return timm.create_model(name, pretrained=False, **kwargs)


def _normalized(name: str) -> str:
    """Names made comparable across timm's flattened feature wrappers (``stages_0`` = ``stages.0``)."""
    return name.replace("_", ".")


def _modules_and_params(model: nn.Module, names: set[str]) -> list[StagePart]:
    """The largest submodules whose parameters are all in ``names``, plus leftover parameters."""
    owners: dict[str, set[bool]] = {}  # module name -> {param in names?} over its subtree
    for pname, _ in model.named_parameters():
        parts = pname.split(".")
        for k in range(1, len(parts)):
            owners.setdefault(".".join(parts[:k]), set()).add(pname in names)
    items: list[StagePart] = []
    taken: list[str] = []
    for mname, module in model.named_modules():
        if (
            mname
            and owners.get(mname) == {True}
            and not any(mname.startswith(t + ".") for t in taken)
        ):
            items.append(module)
            taken.append(mname)
    for pname, p in model.named_parameters():
        if pname in names and not any(pname.startswith(t + ".") for t in taken):
            items.append(p)
    return items


@MODELS.register_module()
class TimmBackbone(Backbone):
    """A timm model returning ``{level: (B, C, H_l, W_l)}``; see the module docstring.

    Args:
        model_name: a timm model name (``timm.list_models()``).
        pretrained: load weights; needs ``checkpoint`` (nothing is ever downloaded).
        checkpoint: local weights file for this timm model (implies ``pretrained``).
        out_indices: ``feature_info`` levels to return (None: see the module docstring).
        feature_mode: 'auto', 'intermediates' or 'features_only'.
        norm: apply the model's final norm to intermediate outputs (``forward_intermediates``'s
            ``norm``; ViTs); otherwise that norm is pruned.
        frozen_stages, grad_checkpointing: see :class:`~visionfm.backbones.base.Backbone`.
        frozen_bn: every ``BatchNorm2d`` becomes timm's ``FrozenBatchNorm2d`` (statistics and
            affine fixed, buffers not parameters; the same eps), as DETR-family ResNets train.
        **timm_kwargs: passed to ``timm.create_model`` (``img_size``, ``drop_path_rate``,
            ``output_stride`` ...), which checks them.
    """

    forwards_kwargs = True  # the registry leaves **timm_kwargs to timm

    def __init__(
        self,
        model_name: str,
        pretrained: bool = False,
        checkpoint: str | os.PathLike | None = None,
        out_indices: Sequence[int] | None = None,
        feature_mode: str = "auto",
        norm: bool = False,
        frozen_stages: int = -1,
        grad_checkpointing: bool = False,
        frozen_bn: bool = False,
        **timm_kwargs,
    ) -> None:
        super().__init__(frozen_stages=frozen_stages, grad_checkpointing=grad_checkpointing)
        if feature_mode not in _MODES:
            raise ValueError(f"feature_mode must be one of {_MODES}, got {feature_mode!r}")
        if pretrained and checkpoint is None:
            raise ValueError(
                f"TimmBackbone({model_name!r}, pretrained=True) needs checkpoint='<local file>': "
                "it never downloads. Fetch the weights once, e.g. `hf download "
                f"timm/{model_name}.<tag> model.safetensors`, and pass that file."
            )
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise CheckpointError(f"checkpoint file not found: {checkpoint} (for {model_name!r})")
        self.model_name = model_name
        probe = _create(model_name, meta=True, **timm_kwargs)
        self._unpruned = {_normalized(k) for k in probe.state_dict()}  # names before pruning
        if "dynamic_img_size" in inspect.signature(type(probe)).parameters:
            timm_kwargs = {"dynamic_img_size": True, "dynamic_img_pad": True, **timm_kwargs}
        has_intermediates = all(
            hasattr(probe, a)
            for a in ("forward_intermediates", "prune_intermediate_layers", "feature_info")
        )
        if feature_mode == "auto":
            feature_mode = "intermediates" if has_intermediates else "features_only"
        elif feature_mode == "intermediates" and not has_intermediates:
            raise ValueError(
                f"timm model {model_name!r} has no forward_intermediates / feature_info; "
                "use feature_mode='features_only'"
            )
        self.feature_mode = feature_mode
        if feature_mode == "features_only":
            probe = _create(model_name, meta=True, features_only=True, **timm_kwargs)
            info = list(probe.feature_info.info)
        else:
            info = list(probe.feature_info)
        del probe
        self.out_indices = self._resolve_indices(out_indices, info)
        self._info = [info[i] for i in self.out_indices]
        self._plain = len({d["reduction"] for d in info}) == 1  # ViT-like: one stride throughout

        if feature_mode == "intermediates":
            self.model = _create(model_name, **timm_kwargs)
            self.model.prune_intermediate_layers(
                self.out_indices, prune_norm=not norm, prune_head=True
            )
            params = inspect.signature(self.model.forward_intermediates).parameters
            self._fi_kwargs = {"intermediates_only": True}
            self._fi_kwargs.update(
                {k: v for k, v in (("norm", norm), ("output_fmt", "NCHW")) if k in params}
            )
        else:
            self.model = _create(
                model_name, features_only=True, out_indices=self.out_indices, **timm_kwargs
            )
        if frozen_bn:
            self.model = freeze_batch_norm_2d(self.model)
        self._fine_ids, self._coarse_ids = self._group_ids(info)
        if checkpoint is not None:
            self.load_pretrained(checkpoint, strict=True)
        if grad_checkpointing:
            self.set_grad_checkpointing(True)
        self.freeze_stages()

    # -- construction helpers ------------------------------------------------------------
    @staticmethod
    def _resolve_indices(out_indices: Sequence[int] | None, info: list[dict]) -> list[int]:
        n = len(info)
        if out_indices is None:
            strides = [d["reduction"] for d in info]
            if len(set(strides)) == 1:  # plain ViT: the last block
                return [n - 1]
            return [i for i, s in enumerate(strides) if s >= 4] or list(range(n))
        bad = [i for i in out_indices if not -n <= i < n]
        if bad:
            raise ValueError(f"out_indices {bad} out of range: the model has {n} feature levels")
        return sorted({i % n for i in out_indices})

    def _group_ids(self, info: list[dict]) -> tuple[dict[str, int], dict[str, int]]:
        """``{parameter name: id}`` for lr decay (fine) and for frozen stages (coarse)."""
        names = [n for n, _ in self.model.named_parameters()]
        matcher = getattr(self.model, "group_matcher", None)
        if self.feature_mode == "intermediates" and matcher is not None:
            fine = group_parameters(self.model, matcher(coarse=False), reverse=True)
            coarse = group_parameters(self.model, matcher(coarse=True), reverse=True)
            return fine, coarse
        prefixes = [_normalized(d["module"]) + "." for d in info]
        ids, current = {}, 0
        for name in names:  # positional: stem, then one id per level module
            hit = next((j for j, p in enumerate(prefixes) if _normalized(name).startswith(p)), None)
            if hit is not None:
                current = hit + 1
            ids[name] = current
        dense = {v: k for k, v in enumerate(sorted(set(ids.values())))}
        ids = {n: dense[v] for n, v in ids.items()}
        return ids, ids

    # -- backbone interface --------------------------------------------------------------
    def _keys(self) -> list[str]:
        strides = [d["reduction"] for d in self._info]
        distinct = len(set(strides)) == len(strides) and all(s & (s - 1) == 0 for s in strides)
        if distinct and not self._plain:
            return [level_name(s) for s in strides]
        return [f"block{i}" for i in self.out_indices]

    @property
    def out_channels(self) -> dict[str, int]:
        return {k: d["num_chs"] for k, d in zip(self._keys(), self._info)}

    @property
    def out_strides(self) -> dict[str, int]:
        return {k: d["reduction"] for k, d in zip(self._keys(), self._info)}

    @property
    def num_layers(self) -> int:
        return max(self._fine_ids.values(), default=0)

    def get_layer_id(self, name: str) -> int:
        """timm's group id of ``model.<name>`` (see module docstring); unknown names: the top."""
        return self._fine_ids.get(name.removeprefix("model."), self.num_layers + 1)

    def stage_parts(self) -> list[list[StagePart]]:
        groups: dict[int, set[str]] = {}
        for name, gid in self._coarse_ids.items():
            groups.setdefault(gid, set()).add(name)
        return [_modules_and_params(self.model, groups[g]) for g in sorted(groups)]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's own ``set_grad_checkpointing`` (per block / stage, as the model supports)."""
        super().set_grad_checkpointing(enable)
        self.model.set_grad_checkpointing(enable)

    # -- weights -------------------------------------------------------------------------
    def load_pretrained(
        self, checkpoint: str | os.PathLike | Mapping[str, torch.Tensor], strict: bool = False
    ) -> LoadReport:
        """Load a checkpoint of this timm model (a file read by timm's reader, or a dict)."""
        if isinstance(checkpoint, Mapping):
            sd = read_checkpoint(checkpoint)
        else:
            if not Path(checkpoint).is_file():
                raise CheckpointError(f"checkpoint file not found: {checkpoint}")
            try:
                sd = timm_load_state_dict(str(checkpoint))
            except Exception as exc:
                raise CheckpointError(
                    f"timm cannot read checkpoint {checkpoint}: {type(exc).__name__}: {exc}"
                ) from exc
        return load_converted(self, self.convert_checkpoint(sd), strict=strict)

    def _match(self, sd: Mapping[str, torch.Tensor]) -> tuple[dict, list[str]]:
        """Our names for ``sd``'s keys (timm's, maybe flattened or under ``model.``), and the
        keys of parts pruned here (ignored). Other keys stay as they are: unexpected."""
        own = {k: v for k, v in self.state_dict().items()}
        by_norm = {_normalized(k.removeprefix("model.")): k for k in own}
        matched, ignored = {}, []
        for k, v in sd.items():
            name = _normalized(k.removeprefix("model."))
            target = k if k in own else by_norm.get(name)
            if target is not None:
                matched[target] = v
            elif name in self._unpruned:
                ignored.append(k)
            else:
                matched[k] = v
        return matched, ignored

    def _fits(self, matched: dict) -> bool:
        own = self.state_dict()
        return set(matched) == set(own) and all(
            tuple(matched[k].shape) == tuple(own[k].shape) for k in own
        )

    def _known(self, matched: dict) -> int:
        """How many of ``matched``'s names are the model's."""
        own = self.state_dict()
        return sum(k in own for k in matched)

    def convert_checkpoint(
        self, state_dict: dict[str, torch.Tensor], config: Mapping | None = None
    ) -> ConvertedCheckpoint:
        """timm names -> ours (``model.`` prefix); keys of pruned parts (the head) are ignored.
        ``config`` is unused: timm checkpoints carry no Hugging Face ``config.json``.

        When the names or shapes do not all fit, the model family's timm
        ``checkpoint_filter_fn`` (original-repo layouts, position-embedding resizing) is
        tried first.
        """
        fmt = f"timm {self.model_name}"
        matched, ignored = self._match(state_dict)
        notes = []
        filter_fn = getattr(
            sys.modules.get(type(self.model).__module__), "checkpoint_filter_fn", None
        )
        if (
            not self._fits(matched)
            and filter_fn is not None
            and self.feature_mode == "intermediates"
        ):
            try:
                filtered = filter_fn(dict(state_dict), self.model)
            except Exception as exc:  # a foreign layout the filter does not know either
                notes.append(f"timm's checkpoint_filter_fn failed ({type(exc).__name__}: {exc})")
            else:
                again = self._match(filtered)
                if self._known(again[0]) >= self._known(matched):
                    (matched, ignored), fmt = again, fmt + " (via timm's checkpoint_filter_fn)"
        if not self._known(matched):
            raise CheckpointError(
                f"not a checkpoint of timm model {self.model_name!r}: none of its {len(state_dict)} "
                f"keys (such as {', '.join(sorted(state_dict)[:6])}) names one of the model's tensors "
                f"(such as {', '.join(list(self.state_dict())[:4])})"
            )
        return ConvertedCheckpoint(matched, fmt, ignored=ignored, notes=notes, hints=_HINTS)

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, C_in, H, W) -> ``{level: (B, out_channels[level], H_l, W_l)}``."""
        if self.feature_mode == "intermediates":
            feats = self.model.forward_intermediates(x, indices=self.out_indices, **self._fi_kwargs)
        else:
            feats = self.model(x)
            feats = list(feats.values()) if isinstance(feats, Mapping) else list(feats)
        return dict(zip(self._keys(), feats))
