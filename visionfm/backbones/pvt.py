"""Pyramid Vision Transformer v2 backbone (PVT v2, including the linear-attention ``b2_li``).

Paper: Wang et al. 2022 "PVT v2: Improved Baselines with Pyramid Vision Transformer"
(Computational Visual Media). Original code: github.com/whai362/PVT.

Four stages (any number works), each: an overlapping patch embedding (a ``k x k`` conv with
stride ``s`` and padding ``k // 2``, then LayerNorm; 7x7 stride 4 for the first stage,
3x3 stride 2 after), ``depths[i]`` transformer blocks and a LayerNorm. A block is pre-norm
``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` with

- spatial-reduction attention: keys / values come from the map reduced by an
  ``sr_ratio x sr_ratio`` strided conv + LayerNorm (``sr_ratio == 1``: the full map), or,
  with ``linear=True``, from the map average-pooled to 7 x 7, then a 1x1 conv + LayerNorm +
  GELU, so the cost is linear in the number of tokens;
- a convolutional feed-forward: ``fc1 -> [ReLU if linear] -> depthwise 3x3 conv -> GELU -> fc2``
  (the depthwise conv replaces position embeddings, so any input size runs).

Outputs: ``{f"p{log2(stride)}": (B, embed_dims[i], H_i, W_i)}`` for each stage ``i`` in
``out_indices``, i.e. ``p2 .. p5`` at strides 4 .. 32 for the usual four stages, named like
the necks' levels. ``H_i = ceil(H_{i-1} / stride_i)`` with ``H_{-1} = H``. Stages after the
last of ``out_indices`` are not run. A stage map smaller than its ``sr_ratio`` (tiny inputs,
where the reference implementations fail) is zero-padded to ``sr_ratio`` for the reduction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from visionfm.layers import DropPath, make_act, make_norm
from visionfm.ops.attention import attention, check_backend
from visionfm.registry import MODELS
from visionfm.weights import ConvertedCheckpoint

from .base import Backbone, StagePart, level_name, register_preset

__all__ = ["PVT_PRESETS", "PyramidVisionTransformerV2"]

HW = tuple[int, int]


def _tokens_to_map(x: torch.Tensor, hw: HW) -> torch.Tensor:
    """(B, h * w, C) -> (B, C, h, w)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *hw)


class OverlapPatchEmbed(nn.Module):
    """``k x k`` conv, stride ``s``, padding ``k // 2``, then a norm over channels.

    (B, in_chans, H, W) -> tokens (B, h * w, embed_dim) and (h, w) = (ceil(H / s), ceil(W / s))
    (for odd ``k`` and ``k > s``, which PVT v2 always has).
    """

    def __init__(
        self, patch_size: int, stride: int, in_chans: int, embed_dim: int, norm_layer
    ) -> None:
        super().__init__()
        if patch_size <= stride:
            raise ValueError(
                f"overlapping patches need patch_size > stride, got {patch_size}, {stride}"
            )
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = norm_layer(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, HW]:
        x = self.proj(x)  # (B, C, h, w)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys / values come from a reduced copy of the map.

    ``sr_ratio > 1``: ``sr`` is an ``sr_ratio``-strided conv, then ``norm``. ``linear``:
    adaptive average pool to ``pool_size`` x ``pool_size``, 1x1 conv ``sr``, ``norm``, ``act``.
    Otherwise keys / values are the input tokens. Softmax attention runs through
    :func:`visionfm.ops.attention.attention` (``attn_backend`` overrides its choice).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        sr_ratio: int = 1,
        linear: bool = False,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        pool_size: int = 7,
        attn_backend: str | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.sr_ratio = 1 if linear else sr_ratio
        self.attn_drop = attn_drop
        self.attn_backend = check_backend(attn_backend)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.pool = nn.AdaptiveAvgPool2d(pool_size) if linear else None
        self.act = act_layer() if linear else None
        if linear or sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=self.sr_ratio, stride=self.sr_ratio)
            self.norm = norm_layer(dim)
        else:
            self.sr = self.norm = None

    def _reduce(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """Key / value tokens: (B, N, C) -> (B, M, C)."""
        if self.sr is None:
            return x
        m = _tokens_to_map(x, hw)  # (B, C, h, w)
        if self.pool is not None:
            m = self.pool(m)
        r = self.sr_ratio
        pad_h, pad_w = max(r - hw[0], 0), max(r - hw[1], 0)
        if pad_h or pad_w:  # only maps smaller than the kernel; the references fail there
            m = F.pad(m, (0, pad_w, 0, pad_h))
        x = self.norm(self.sr(m).flatten(2).transpose(1, 2))  # (B, M, C)
        return self.act(x) if self.act is not None else x

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """x: (B, h * w, C) tokens in raster order -> (B, h * w, C)."""
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).view(b, n, heads, c // heads).transpose(1, 2)  # (B, heads, N, D)
        kv = self.kv(self._reduce(x, hw))  # (B, M, 2C)
        k, v = kv.view(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)  # (B, heads, M, D)
        drop = self.attn_drop if self.training else 0.0
        x = attention(q, k, v, dropout_p=drop, backend=self.attn_backend)  # (B, heads, N, D)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class ConvMlp(nn.Module):
    """``fc1 -> [ReLU] -> depthwise 3x3 conv -> act -> fc2`` on tokens; (B, h * w, C) -> same."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
        extra_relu: bool = False,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.relu = nn.ReLU() if extra_relu else nn.Identity()
        self.dwconv = nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, groups=hidden_dim)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        # One statement per step: ``x`` is rebound at each, so at most two (B, N, hidden)
        # tensors are alive at once (a nested call would keep fc1's output alive through
        # the activation: a third, the largest activation in the model).
        x = self.relu(_tokens_to_map(self.fc1(x), hw))  # (B, hidden, h, w)
        x = self.dwconv(x).flatten(2).transpose(1, 2)  # (B, h * w, hidden)
        x = self.act(x)
        return self.drop(self.fc2(self.drop(x)))


class PvtBlock(nn.Module):
    """Pre-norm block: ``x + dp(attn(norm1(x)))``, then ``x + dp(mlp(norm2(x)))``."""

    def __init__(
        self,
        dim: int,
        attn: SpatialReductionAttention,
        mlp: ConvMlp,
        norm_layer: Callable[[int], nn.Module],
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn
        self.norm2 = norm_layer(dim)
        self.mlp = mlp
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, hw: HW) -> torch.Tensor:
        """x: (B, h * w, C) -> (B, h * w, C)."""
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x), hw))


class PvtStage(nn.Module):
    """Patch embedding, blocks, norm: (B, C_in, H, W) -> (B, C, ceil(H / s), ceil(W / s))."""

    def __init__(
        self, patch_embed: OverlapPatchEmbed, blocks: list[PvtBlock], norm: nn.Module
    ) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm

    def forward(self, x: torch.Tensor, grad_checkpointing: bool = False) -> torch.Tensor:
        x, hw = self.patch_embed(x)  # (B, h * w, C)
        for blk in self.blocks:
            x = checkpoint(blk, x, hw, use_reentrant=False) if grad_checkpointing else blk(x, hw)
        return _tokens_to_map(self.norm(x), hw)


def _per_stage(value, n: int, name: str) -> tuple:
    values = tuple(value) if isinstance(value, Sequence) else (value,) * n
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} stages: {values}")
    return values


@MODELS.register_module()
class PyramidVisionTransformerV2(Backbone):
    """PVT v2 backbone; see the module docstring for the outputs.

    Args:
        depths, embed_dims, num_heads, sr_ratios, mlp_ratios: per stage (a single
            number is used for every stage where that makes sense).
        patch_sizes, strides: of each stage's overlapping patch embedding. Strides multiply
            to powers of two (level names are ``p<log2(stride)>``).
        in_chans: input channels.
        qkv_bias: bias in the q and kv projections.
        linear: linear spatial-reduction attention (``pvt_v2_b2_li``); ``sr_ratios`` unused.
        drop_path_rate: stochastic depth, increasing linearly to this over all blocks.
        attn_drop, proj_drop: dropout on attention weights / projection and MLP outputs.
        out_indices: stages whose outputs are returned (negatives count from the end).
        norm_layer: norm of the blocks and stage outputs (default LayerNorm eps 1e-6).
        embed_norm_layer: norm of the patch embeddings and of the reduced keys / values
            (timm and the original repo: eps 1e-5; Hugging Face uses ``layer_norm_eps``,
            1e-6 by default, everywhere: pass ``'LN'`` to match it exactly).
        act_layer: activation of the MLPs and of the linear attention's reduction.
        attn_backend: attention backend override for every block (None: automatic).
        frozen_stages: -1 nothing; 0 the first patch embedding; k >= 1 also stages
            0 .. k-1 (blocks, norm and the later stages' downsampling patch embeddings).
        grad_checkpointing: recompute block activations in backward.
        pretrained: checkpoint to load at the end of construction (see ``load_pretrained``).
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 4, 6, 3),
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: int | Sequence[int] = (1, 2, 5, 8),
        sr_ratios: int | Sequence[int] = (8, 4, 2, 1),
        mlp_ratios: float | Sequence[float] = (8.0, 8.0, 4.0, 4.0),
        patch_sizes: int | Sequence[int] = (7, 3, 3, 3),
        strides: int | Sequence[int] = (4, 2, 2, 2),
        in_chans: int = 3,
        qkv_bias: bool = True,
        linear: bool = False,
        drop_path_rate: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        norm_layer: str | Callable[[int], nn.Module] = "LN",
        embed_norm_layer: str | Callable[[int], nn.Module] = "LN_1e-5",
        act_layer: str | Callable[[], nn.Module] = "gelu",
        attn_backend: str | None = None,
        frozen_stages: int = -1,
        grad_checkpointing: bool = False,
        pretrained: str | None = None,
    ) -> None:
        super().__init__(frozen_stages=frozen_stages, grad_checkpointing=grad_checkpointing)
        n = len(depths)
        self.depths = tuple(depths)
        self.embed_dims = _per_stage(embed_dims, n, "embed_dims")
        num_heads = _per_stage(num_heads, n, "num_heads")
        sr_ratios = _per_stage(sr_ratios, n, "sr_ratios")
        mlp_ratios = _per_stage(mlp_ratios, n, "mlp_ratios")
        patch_sizes = _per_stage(patch_sizes, n, "patch_sizes")
        strides = _per_stage(strides, n, "strides")
        self.strides = tuple(math.prod(strides[: i + 1]) for i in range(n))
        if any(s & (s - 1) for s in self.strides):
            raise ValueError(f"stage strides {self.strides} must be powers of two")
        self.linear = linear
        self.out_indices = sorted({i % n for i in out_indices})
        norm_layer, embed_norm = make_norm(norm_layer), make_norm(embed_norm_layer)
        act_layer = make_act(act_layer)

        total = sum(depths)
        dpr = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]
        self.stages = nn.ModuleList()
        prev = in_chans
        for i, (depth, dim) in enumerate(zip(depths, self.embed_dims)):
            blocks = []
            for j in range(depth):
                attn = SpatialReductionAttention(
                    dim, num_heads[i], sr_ratio=sr_ratios[i], linear=linear, qkv_bias=qkv_bias,
                    attn_drop=attn_drop, proj_drop=proj_drop, norm_layer=embed_norm,
                    act_layer=act_layer, attn_backend=attn_backend,
                )  # fmt: skip
                hidden = int(dim * mlp_ratios[i])
                mlp = ConvMlp(dim, hidden, act_layer, proj_drop, extra_relu=linear)
                blocks.append(PvtBlock(dim, attn, mlp, norm_layer, dpr[sum(depths[:i]) + j]))
            embed = OverlapPatchEmbed(patch_sizes[i], strides[i], prev, dim, embed_norm)
            self.stages.append(PvtStage(embed, blocks, norm_layer(dim)))
            prev = dim
        self._init_weights()
        self.freeze_stages()
        if pretrained:
            self.load_pretrained(pretrained)

    def _init_weights(self) -> None:
        """Truncated-normal (std 0.02) linears, fan-out normal convs, zero biases (PVT recipe).

        Private on purpose: mmengine's ``BaseModule.init_weights`` would wipe loaded weights.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_out))
            if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # -- backbone interface --------------------------------------------------------------
    def _key(self, i: int) -> str:
        return level_name(self.strides[i])

    @property
    def out_channels(self) -> dict[str, int]:
        return {self._key(i): self.embed_dims[i] for i in self.out_indices}

    @property
    def out_strides(self) -> dict[str, int]:
        return {self._key(i): self.strides[i] for i in self.out_indices}

    @property
    def num_layers(self) -> int:
        return sum(self.depths)

    def get_layer_id(self, name: str) -> int:
        """Layer id for lr decay: blocks count 1 .. num_layers over all stages.

        ``stages.0.patch_embed`` is the stem (0). A later stage's downsampling patch embedding
        goes with the block before it, a stage norm with its stage's last block, and the
        last stage's norm (the layers after the last block) gets ``num_layers + 1``.
        """
        parts = name.split(".")
        if parts[0] != "stages":
            return self.num_layers + 1
        i = int(parts[1])
        before = sum(self.depths[:i])
        if parts[2] == "patch_embed":
            return before
        if parts[2] == "blocks":
            return before + int(parts[3]) + 1
        return self.num_layers + 1 if i == len(self.depths) - 1 else before + self.depths[i]

    def stage_parts(self) -> list[list[StagePart]]:
        parts: list[list[StagePart]] = [[self.stages[0].patch_embed]]
        for i, stage in enumerate(self.stages):
            parts.append(([stage.patch_embed] if i else []) + [stage.blocks, stage.norm])
        return parts

    def convert_checkpoint(
        self, state_dict: dict[str, torch.Tensor], config: Mapping | None = None
    ) -> ConvertedCheckpoint:
        from .pvt_convert import convert_pvt_v2_checkpoint

        return convert_pvt_v2_checkpoint(state_dict, self, config)

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, in_chans, H, W) -> ``{"p<log2 s_i>": (B, embed_dims[i], H_i, W_i)}``."""
        use_cp = self.grad_checkpointing and torch.is_grad_enabled()
        outs = {}
        for i in range(self.out_indices[-1] + 1):  # stages after the last output are skipped
            x = self.stages[i](x, use_cp)
            if i in self.out_indices:
                outs[self._key(i)] = x
        return outs


# -- registered variants -----------------------------------------------------------------
_B1 = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8))
PVT_PRESETS: dict[str, dict] = {
    "pvt_v2_b0": dict(depths=(2, 2, 2, 2), embed_dims=(32, 64, 160, 256), num_heads=(1, 2, 5, 8)),
    "pvt_v2_b1": dict(depths=(2, 2, 2, 2), **_B1),
    "pvt_v2_b2": dict(depths=(3, 4, 6, 3), **_B1),
    "pvt_v2_b2_li": dict(depths=(3, 4, 6, 3), **_B1, linear=True),
    "pvt_v2_b3": dict(depths=(3, 4, 18, 3), **_B1),
    "pvt_v2_b4": dict(depths=(3, 8, 27, 3), **_B1),
    "pvt_v2_b5": dict(depths=(3, 6, 40, 3), **_B1, mlp_ratios=(4.0, 4.0, 4.0, 4.0)),
}


for _name, _preset in PVT_PRESETS.items():
    register_preset(_name, PyramidVisionTransformerV2, _preset, "PVT v2")
