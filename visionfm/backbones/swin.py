"""Swin Transformer V1 and V2 backbones (shifted-window attention, hierarchical outputs).

Papers: Liu et al. 2021 "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows"; Liu et al. 2022 "Swin Transformer V2: Scaling Up Capacity and Resolution".

Layout: a ``p x p`` patch embedding (conv + norm), then stages ``0 .. S-1``; stage ``i > 0``
starts with patch merging (2 x 2 tokens -> twice the channels), then runs ``depths[i]``
blocks alternating plain and shifted windows. Token maps stay ``(B, H, W, C)`` inside.

Outputs: ``{f"p{log2(stride)}": (B, embed_dim * 2**i, ceil(H / (p * 2**i)), ...)}`` for each
stage ``i`` in ``out_indices``, each through its own norm (``p2 .. p5`` for ``p = 4``, the
level names of the necks and heads). Stages after the last output are not run.

Any input size: the image is zero-padded to a multiple of the patch size, odd maps are
padded before merging, and every stage pads its map to a multiple of the window (padding
tokens take part as keys, as in the reference implementations) and crops back. Along an
axis where the map fits in one window (``size <= window``), the window shrinks to the map
and is not shifted (timm's rule, applied to the actual input; the official and HF models
apply it to square maps); ``always_partition=True`` keeps full, shifted windows everywhere
(the Swin detection repo, mmdet and HF ``SwinBackbone``). The windows, shift masks and
window attention layers live in :mod:`visionfm.backbones.swin_attention`.

V2 differs by residual post-norm, scaled cosine attention with a continuous position bias
(``pretrained_window_sizes`` gives the windows it was trained with, so other windows run;
see :class:`~visionfm.backbones.swin_attention.CosineWindowAttention`), and patch merging
that normalises after the reduction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from visionfm.layers import DropPath, Mlp, PatchEmbed, make_act, make_norm
from visionfm.ops.attention import check_backend
from visionfm.registry import MODELS
from visionfm.weights import ConvertedCheckpoint

from .base import Backbone, StagePart, level_name, register_preset
from .swin_attention import (
    CosineWindowAttention,
    Pair,
    WindowAttention,
    shift_window_mask,
    stage_window,
    window_attention,
)

__all__ = [
    "SWIN_PRESETS",
    "SwinTransformer",
    "SwinTransformerV2",
    "shift_window_mask",
    "stage_window",
    "window_attention",
]


def _per_stage(value: int | Sequence[int], n: int, name: str) -> list[int]:
    values = [int(value)] * n if isinstance(value, int) else [int(v) for v in value]
    if len(values) != n:
        raise ValueError(f"{name} needs one value per stage ({n}), got {value}")
    return values


# -- blocks ------------------------------------------------------------------------------
class SwinBlock(nn.Module):
    """Swin block on a (B, H, W, C) map. Pre-norm (V1): ``x + dp(attn(norm1(x)))``, then
    ``x + dp(mlp(norm2(x)))``; residual post-norm (V2): ``x + dp(norm1(attn(x)))``, then
    ``x + dp(norm2(mlp(x)))``."""

    def __init__(
        self,
        dim: int,
        attn: WindowAttention,
        mlp_hidden_dim: int,
        norm_layer: Callable[[int], nn.Module],
        act_layer: Callable[[], nn.Module],
        drop_path: float = 0.0,
        proj_drop: float = 0.0,
        post_norm: bool = False,
    ) -> None:
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = norm_layer(dim)
        self.attn = attn
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, mlp_hidden_dim, act_layer=act_layer, drop=proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, window: Pair, shift: Pair, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H, W, C); window / shift / mask as in :func:`window_attention`."""
        if self.post_norm:
            x = x + self.drop_path(self.norm1(window_attention(x, self.attn, window, shift, mask)))
            return x + self.drop_path(self.norm2(self.mlp(x)))
        x = x + self.drop_path(window_attention(self.norm1(x), self.attn, window, shift, mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2 x 2 tokens -> one of twice the width: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C).

    Concatenation order (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]) as in the
    references; V1 normalises the 4C vector before the reduction, V2 the 2C one after it.
    """

    def __init__(self, dim: int, norm_layer: Callable[[int], nn.Module], norm_after: bool) -> None:
        super().__init__()
        self.norm_after = norm_after
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(2 * dim if norm_after else 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        x = x.view(b, h2, 2, w2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h2, w2, 4 * c)
        return self.norm(self.reduction(x)) if self.norm_after else self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Optional patch merging, then blocks alternating plain and shifted windows."""

    def __init__(self, downsample: nn.Module | None, blocks: list[SwinBlock], window_size: int):
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)
        self.window_size = window_size

    def forward(
        self, x: torch.Tensor, always_partition: bool = False, grad_checkpointing: bool = False
    ) -> torch.Tensor:
        """x: (B, H, W, C_in) -> (B, H', W', C), H' = ceil(H / 2) after merging."""
        x = self.downsample(x)
        h, w = x.shape[1:3]
        window, shift = stage_window((h, w), self.window_size, always_partition)
        padded = (h + (-h) % window[0], w + (-w) % window[1])
        mask = shift_window_mask(padded, window, shift, x.device)
        for i, blk in enumerate(self.blocks):
            args = (window, shift, mask) if i % 2 else (window, (0, 0), None)
            x = (
                checkpoint(blk, x, *args, use_reentrant=False)
                if grad_checkpointing
                else blk(x, *args)
            )
        return x


# -- the models --------------------------------------------------------------------------
@MODELS.register_module()
class SwinTransformer(Backbone):
    """Swin Transformer (V1) backbone; see the module docstring for outputs and input sizes.

    Args:
        patch_size, in_chans, embed_dim: patch embedding (stage ``i`` is ``embed_dim * 2**i`` wide).
        depths, num_heads: blocks and attention heads per stage.
        window_size: window side, one for all stages or one per stage.
        mlp_ratio, qkv_bias: the usual.
        drop_path_rate: stochastic depth, growing linearly to this over all blocks.
        attn_drop, proj_drop: dropout on attention weights / projection outputs.
        always_partition: full shifted windows even where a map fits in one window.
        out_indices: stages whose outputs are returned (negatives count from the end).
        norm_layer, act_layer: factories or names (see ``layers.norm_act``); LayerNorm eps 1e-5.
        pretrained_window_sizes: Swin V2 only (see :class:`SwinTransformerV2`).
        attn_backend: attention backend override for every block (None: automatic).
        frozen_stages: -1 nothing; 0 the patch embedding; k >= 1 also stages 0 .. k-1 and
            their output norms.
        grad_checkpointing: recompute block activations in backward.
        pretrained: checkpoint to load at the end of construction (see ``load_pretrained``).
    """

    version = 1

    def __init__(
        self,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        always_partition: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        norm_layer: str | Callable[[int], nn.Module] = "LN_1e-5",
        act_layer: str | Callable[[], nn.Module] = "gelu",
        pretrained_window_sizes: int | Sequence[int] = 0,
        attn_backend: str | None = None,
        frozen_stages: int = -1,
        grad_checkpointing: bool = False,
        pretrained: str | None = None,
    ) -> None:
        super().__init__(frozen_stages=frozen_stages, grad_checkpointing=grad_checkpointing)
        n = len(depths)
        num_heads = _per_stage(num_heads, n, "num_heads")
        windows = _per_stage(window_size, n, "window_size")
        pretrained_windows = _per_stage(pretrained_window_sizes, n, "pretrained_window_sizes")
        if self.version == 1 and any(pretrained_windows):
            raise ValueError("pretrained_window_sizes is a Swin V2 option: use SwinTransformerV2")
        if patch_size & (patch_size - 1):
            raise ValueError(
                f"patch_size must be a power of two (levels are named by stride), got {patch_size}"
            )
        self.depths = [int(d) for d in depths]
        self.patch_size = patch_size
        self.always_partition = always_partition
        self.out_indices = sorted({i % n for i in out_indices})
        self.widths = [embed_dim * 2**i for i in range(n)]
        check_backend(attn_backend)
        norm_layer, act_layer = make_norm(norm_layer), make_act(act_layer)

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.patch_norm = norm_layer(embed_dim)
        total = sum(self.depths)
        drop_rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(self.widths, self.depths)):
            blocks = []
            for j in range(depth):
                attn = self._make_attn(dim, num_heads[i], windows[i], qkv_bias, attn_drop,
                                       proj_drop, attn_backend, pretrained_windows[i])  # fmt: skip
                blocks.append(
                    SwinBlock(dim, attn, int(dim * mlp_ratio), norm_layer, act_layer,
                              drop_rates[sum(self.depths[:i]) + j], proj_drop, self.version == 2)
                )  # fmt: skip
            merge = PatchMerging(dim // 2, norm_layer, self.version == 2) if i else None
            self.stages.append(SwinStage(merge, blocks, windows[i]))
        self.norms = nn.ModuleDict(
            {self.level_name(i): norm_layer(self.widths[i]) for i in self.out_indices}
        )
        self._init_weights()
        self.freeze_stages()
        if pretrained:
            self.load_pretrained(pretrained)

    def _make_attn(self, dim, heads, window, qkv_bias, attn_drop, proj_drop, backend, _pretrained):
        return WindowAttention(dim, heads, window, qkv_bias, attn_drop, proj_drop, backend)

    def _init_weights(self) -> None:
        """Truncated-normal (std 0.02) linears and bias tables, zero biases (as the references).

        Private on purpose: mmengine's ``init_weights`` would wipe loaded weights.
        """
        for name, p in self.named_parameters():
            if name.endswith("rel_pos_table"):
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- backbone interface --------------------------------------------------------------
    def level_name(self, stage: int) -> str:
        """Output key of stage ``stage``: ``p{log2(stride)}``."""
        return level_name(self.patch_size * 2**stage)

    @property
    def out_channels(self) -> dict[str, int]:
        return {self.level_name(i): self.widths[i] for i in self.out_indices}

    @property
    def out_strides(self) -> dict[str, int]:
        return {self.level_name(i): self.patch_size * 2**i for i in self.out_indices}

    @property
    def num_layers(self) -> int:
        return sum(self.depths)

    def get_layer_id(self, name: str) -> int:
        """0: patch embedding; blocks numbered 1 .. num_layers across stages; a stage's patch
        merging shares the id of the block before it; output norms: num_layers + 1."""
        if name.startswith(("patch_embed.", "patch_norm.")):
            return 0
        hit = re.match(r"stages\.(\d+)\.(?:blocks\.(\d+)|downsample)\.", name)
        if hit is None:
            return self.num_layers + 1
        before = sum(self.depths[: int(hit[1])])
        return before + int(hit[2]) + 1 if hit[2] is not None else before

    def stage_parts(self) -> list[list[StagePart]]:
        parts: list[list[StagePart]] = [[self.patch_embed, self.patch_norm]]
        for i, stage in enumerate(self.stages):
            norm = self.norms[self.level_name(i)] if i in self.out_indices else None
            parts.append([stage] + ([norm] if norm is not None else []))
        return parts

    def convert_checkpoint(
        self, state_dict: dict[str, torch.Tensor], config: Mapping | None = None
    ) -> ConvertedCheckpoint:
        from .swin_convert import convert_swin_checkpoint

        return convert_swin_checkpoint(state_dict, self, config)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, in_chans, H, W) -> ``{level: (B, C_i, h_i, w_i)}`` (see the module doc)."""
        x = self.patch_norm(self.patch_embed(x).permute(0, 2, 3, 1))  # (B, h, w, C)
        use_cp = self.grad_checkpointing and torch.is_grad_enabled()
        outs = {}
        for i in range(self.out_indices[-1] + 1):
            x = self.stages[i](x, self.always_partition, use_cp)
            if i in self.out_indices:
                key = self.level_name(i)
                outs[key] = self.norms[key](x).permute(0, 3, 1, 2).contiguous()
        return outs


@MODELS.register_module()
class SwinTransformerV2(SwinTransformer):
    """Swin Transformer V2 backbone: arguments as :class:`SwinTransformer`, plus
    ``pretrained_window_sizes``: the window each stage's position-bias MLP was trained with
    (0: the window in use), so that a model trained with one window runs with another."""

    version = 2

    def _make_attn(self, dim, heads, window, qkv_bias, attn_drop, proj_drop, backend, pretrained):
        return CosineWindowAttention(
            dim, heads, window, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
            attn_backend=backend, pretrained_window_size=pretrained,
        )  # fmt: skip

    def _init_weights(self) -> None:
        """As V1, then the residual post-norms start at zero (the official recipe)."""
        super()._init_weights()
        for m in self.modules():
            if isinstance(m, CosineWindowAttention):
                nn.init.constant_(m.logit_scale, math.log(10.0))
            if isinstance(m, SwinBlock):
                for norm in (m.norm1, m.norm2):
                    nn.init.zeros_(norm.weight)
                    nn.init.zeros_(norm.bias)


# -- registered variants -----------------------------------------------------------------
_T, _S = (2, 2, 6, 2), (2, 2, 18, 2)  # depths
_HEADS = {96: (3, 6, 12, 24), 128: (4, 8, 16, 32), 192: (6, 12, 24, 48)}  # per embed_dim
_PRESET_TABLE = [  # name, class, embed_dim, depths, window, drop_path_rate
    # drop-path rates of the official detection (V1) and classification (V2) recipes
    ("swin_tiny", SwinTransformer, 96, _T, 7, 0.2),
    ("swin_small", SwinTransformer, 96, _S, 7, 0.3),
    ("swin_base", SwinTransformer, 128, _S, 7, 0.3),
    ("swin_large", SwinTransformer, 192, _S, 7, 0.2),
    ("swin_base_window12", SwinTransformer, 128, _S, 12, 0.3),
    ("swin_large_window12", SwinTransformer, 192, _S, 12, 0.2),
    ("swinv2_tiny", SwinTransformerV2, 96, _T, 8, 0.2),
    ("swinv2_small", SwinTransformerV2, 96, _S, 8, 0.3),
    ("swinv2_base", SwinTransformerV2, 128, _S, 8, 0.5),
    ("swinv2_tiny_window16", SwinTransformerV2, 96, _T, 16, 0.2),
    ("swinv2_small_window16", SwinTransformerV2, 96, _S, 16, 0.3),
    ("swinv2_base_window16", SwinTransformerV2, 128, _S, 16, 0.5),
]
SWIN_PRESETS: dict[str, tuple[type[SwinTransformer], dict]] = {
    name: (cls, dict(embed_dim=dim, depths=depths, num_heads=_HEADS[dim], window_size=window,
                     drop_path_rate=dpr))
    for name, cls, dim, depths, window, dpr in _PRESET_TABLE
}  # fmt: skip


for _name, (_cls, _preset) in SWIN_PRESETS.items():
    register_preset(_name, _cls, _preset, "Swin")
