"""Plain Vision Transformer backbone (ViT, DeiT, DINOv2, DINOv3-style RoPE, ViTDet / SAM).

Papers: Dosovitskiy et al. 2021 "An Image is Worth 16x16 Words"; Oquab et al. 2023
"DINOv2"; Darcet et al. 2024 "Vision Transformers Need Registers"; Li et al. 2022
"Exploring Plain Vision Transformer Backbones for Object Detection" (ViTDet);
Kirillov et al. 2023 "Segment Anything"; Chen et al. 2024 "LW-DETR"; Robinson et al. 2025
"RF-DETR".

Token layout inside the model: ``[class token, register tokens..., h * w patch tokens]``.
The class-token position embedding of published checkpoints is folded into the class
token on load (adding a constant), so ``pos_embed`` covers patches only, stored as a
``(1, h, w, C)`` grid and resized bicubically to every input's grid.

Outputs: ``{f"block{i}": (B, embed_dim, ceil(H / p), ceil(W / p))}`` for each ``i`` in
``out_indices`` (0-based block index, negatives count from the end), i.e. the patch tokens
after block ``i``, passed through the final norm when ``final_norm`` (the norm is shared by
all outputs, as in DINOv2's ``get_intermediate_layers``). Every output has stride
``patch_size``. With ``return_class_token`` each output also comes with
``f"block{i}_cls"``: the class token after block ``i`` (normed like the map), shape
``(B, embed_dim)`` -- a token, not a map, so it is not listed in ``out_channels`` /
``out_strides`` (DPT's readout reads it). Inputs whose sides are not multiples of the patch size are zero-padded
on the right / bottom. Blocks after the last of ``out_indices`` are not run.

Windows of a fixed count (``num_windows`` = n > 1, RF-DETR / LW-DETR): after the position
embedding the patch grid is split once into n x n equal windows, folded into the batch
(``(B * n * n, P + h * w / n**2, C)``), each window with its own copy of the prefix tokens;
windowed blocks attend within a window, the other blocks over every window's tokens of the
image (the n * n prefix copies included, as RF-DETR does). The image is zero-padded so that
the grid divides by n, and the maps are cropped back to ``ceil(H / p) x ceil(W / p)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from visionfm.layers import make_act, make_embed, make_mlp, make_norm, resize_pos_embed
from visionfm.layers.positional import known_same_size
from visionfm.ops.deform_attn_grid import is_exporting
from visionfm.registry import MODELS
from visionfm.weights import ConvertedCheckpoint

from .base import Backbone, StagePart, register_preset
from .vit_attention import (
    Attention,
    Block,
    RotaryEmbedding2d,
    window_partition,
)
from .vit_hf_detr import DETR_VIT_PRESETS

__all__ = ["ViT", "VIT_PRESETS"]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


@MODELS.register_module()
class ViT(Backbone):
    """Plain ViT backbone; see the module docstring for the outputs.

    Args:
        img_size: training image size (int or (H, W)); sets the ``pos_embed`` grid and
            the global relative-position tables. Any input size runs.
        patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio: the usual.
        qkv_bias: bias in the fused qkv projection.
        qk_norm: normalise q and k per head with ``norm_layer``.
        class_token: prepend a class token. reg_tokens: number of register tokens.
            Both are dropped from the output maps.
        abs_pos_embed: learnable absolute position embedding on the patch grid.
        pos_embed_antialias, pos_embed_offset, pos_embed_mode: how ``pos_embed`` is
            resized, see :func:`~visionfm.layers.resize_pos_embed` (timm:
            antialias=True; HF: both off; original DINOv2 repo: offset=0.1; HF DPT:
            mode='bilinear').
        rope_base: enables 2D axial RoPE (DINOv3 form) with this base (DINOv3: 100).
        init_values: layer-scale initial value; None disables layer scale.
        drop_path_rate: stochastic depth, increasing linearly to this over the blocks.
        attn_drop, proj_drop: dropout on attention weights / projection outputs.
        window_size, window_block_indices: blocks in ``window_block_indices`` attend within
            ``window_size`` x ``window_size`` windows (ViTDet), the others globally.
        num_windows: instead of ``window_size``: the patch grid is split into ``num_windows``
            x ``num_windows`` windows (RF-DETR's ``num_windows``; LW-DETR's is the square of
            ours), see the module doc; 1 disables them.
        use_rel_pos: decomposed relative position bias in every block (tables sized for
            the window in windowed blocks, for the ``img_size`` grid in global ones).
        out_indices: blocks whose outputs are returned.
        final_norm: apply the final norm to the outputs (ViTDet / SAM / DPT have none).
        return_class_token: also return each output block's class token (see the module
            doc); needs ``class_token``.
        norm_layer, act_layer, mlp_layer: layer factories or names (see ``layers.norm_act``).
        embed_layer: 'patch' (the usual strided patch projection), 'patch_pad2' (the same
            with 2 px of zero padding around the input, as ViTPose) or 'conv' (a convolutional
            stem, faster to train from scratch) or a factory (patch_size, in_chans, embed_dim).
        attn_backend: attention backend override for every block (None: automatic).
        frozen_stages: -1 nothing; 0 patch / position embeddings and prefix tokens;
            k >= 1 also blocks 0 .. k-1; k == depth also the final norm.
        grad_checkpointing: recompute block activations in backward.
        pretrained: checkpoint to load at the end of construction (see ``load_pretrained``).
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        class_token: bool = True,
        reg_tokens: int = 0,
        abs_pos_embed: bool = True,
        pos_embed_antialias: bool = False,
        pos_embed_offset: float = 0.0,
        pos_embed_mode: str = "bicubic",
        rope_base: float | None = None,
        init_values: float | None = None,
        drop_path_rate: float = 0.0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        window_size: int = 0,
        window_block_indices: Sequence[int] = (),
        num_windows: int = 1,
        use_rel_pos: bool = False,
        out_indices: Sequence[int] = (-1,),
        final_norm: bool = True,
        return_class_token: bool = False,
        norm_layer: str | Callable[[int], nn.Module] = "LN",
        act_layer: str | Callable[[], nn.Module] = "gelu",
        mlp_layer: str | Callable[..., nn.Module] = "mlp",
        embed_layer: str | Callable[..., nn.Module] = "patch",
        attn_backend: str | None = None,
        frozen_stages: int = -1,
        grad_checkpointing: bool = False,
        pretrained: str | None = None,
    ) -> None:
        super().__init__(frozen_stages=frozen_stages, grad_checkpointing=grad_checkpointing)
        self.img_size = _pair(img_size)
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_prefix_tokens = int(class_token) + reg_tokens
        window_block_indices = sorted({i % depth for i in window_block_indices})
        self._check_options(window_size, num_windows, window_block_indices, use_rel_pos, rope_base)
        self.window_block_indices = window_block_indices
        self.num_windows = num_windows
        if return_class_token and not class_token:
            raise ValueError("return_class_token=True needs class_token=True")
        if return_class_token and num_windows > 1:
            raise ValueError(
                "return_class_token=True with num_windows > 1: every window has its own class "
                "token; set num_windows=1 or return_class_token=False"
            )
        if pos_embed_mode not in ("bicubic", "bilinear"):
            raise ValueError(
                f"pos_embed_mode must be 'bicubic' or 'bilinear', got {pos_embed_mode!r}"
            )
        self.return_class_token = return_class_token
        self.out_indices = sorted({i % depth for i in out_indices})
        self.pos_embed_antialias = pos_embed_antialias
        self.pos_embed_offset = pos_embed_offset
        self.pos_embed_mode = pos_embed_mode
        norm_layer, act_layer, mlp_layer = (
            make_norm(norm_layer),
            make_act(act_layer),
            make_mlp(mlp_layer),
        )

        self.patch_embed = make_embed(embed_layer)(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.reg_tokens = (
            nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim)) if abs_pos_embed else None
        self._pos_cache: tuple | None = None  # (key, resized pos_embed), see resized_pos_embed
        self.rope = (
            RotaryEmbedding2d(embed_dim // num_heads, rope_base) if rope_base is not None else None
        )
        drop_rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList()
        for i in range(depth):
            ws = window_size if i in window_block_indices else 0
            attn = Attention(
                embed_dim,
                num_heads,
                qkv_bias=qkv_bias,
                qk_norm_layer=norm_layer if qk_norm else None,
                attn_drop=attn_drop,
                proj_drop=proj_drop,
                window_size=ws,
                rel_pos_size=((ws, ws) if ws else grid) if use_rel_pos else None,
                attn_backend=attn_backend,
            )
            self.blocks.append(
                Block(
                    embed_dim,
                    attn,
                    mlp_hidden_dim=round(embed_dim * mlp_ratio),
                    norm_layer=norm_layer,
                    act_layer=act_layer,
                    mlp_layer=mlp_layer,
                    init_values=init_values,
                    drop_path=drop_rates[i],
                    proj_drop=proj_drop,
                )
            )
        self.norm = norm_layer(embed_dim) if final_norm else nn.Identity()
        self._init_weights()
        self.freeze_stages()
        if pretrained:
            self.load_pretrained(pretrained)

    def _check_options(self, window_size, num_windows, window_blocks, use_rel_pos, rope_base):
        if num_windows < 1:
            raise ValueError(f"num_windows must be >= 1 (1: no windows), got {num_windows}")
        if window_size and num_windows > 1:
            raise ValueError(
                f"window_size={window_size} (windows of a fixed size, ViTDet) and "
                f"num_windows={num_windows} (a fixed number of windows, RF-DETR / LW-DETR) "
                "exclude each other: set one of them"
            )
        if num_windows > 1 and (use_rel_pos or rope_base is not None):
            raise ValueError(
                "num_windows > 1 cannot be combined with use_rel_pos or rope_base (the windows "
                "are folded into the batch): set num_windows=1"
            )
        if bool(window_size) != bool(window_blocks) and num_windows == 1:
            raise ValueError(
                f"window_size={window_size} and window_block_indices={window_blocks} go "
                "together: give both or neither (or num_windows > 1 with the blocks)"
            )
        if (window_size or use_rel_pos) and self.num_prefix_tokens:
            raise ValueError(
                "windowed attention and relative position bias work on the patch grid only: "
                "set class_token=False and reg_tokens=0"
            )
        if rope_base is not None and (window_size or use_rel_pos):
            raise ValueError("rope_base cannot be combined with windowed attention or use_rel_pos")

    def _init_weights(self) -> None:
        """Truncated-normal (std 0.02) linears and tokens, zero biases (ViT / DeiT recipe).

        Private on purpose: mmengine's ``BaseModule.init_weights`` calls its children's
        public ``init_weights`` when training starts, which would wipe loaded weights.
        """
        for p in (self.pos_embed, self.cls_token, self.reg_tokens):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -- backbone interface --------------------------------------------------------------
    def _key(self, i: int) -> str:
        return f"block{i}"

    @property
    def out_channels(self) -> dict[str, int]:
        return {self._key(i): self.embed_dim for i in self.out_indices}

    @property
    def out_strides(self) -> dict[str, int]:
        return {self._key(i): self.patch_size for i in self.out_indices}

    @property
    def num_layers(self) -> int:
        return self.depth

    def get_layer_id(self, name: str) -> int:
        """0 for embeddings and prefix tokens, i + 1 for ``blocks.i.*``, depth + 1 otherwise."""
        if name.startswith(("patch_embed.", "pos_embed", "cls_token", "reg_tokens")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.depth + 1

    def stage_parts(self) -> list[list[StagePart]]:
        stem = [self.patch_embed]
        stem += [p for p in (self.pos_embed, self.cls_token, self.reg_tokens) if p is not None]
        parts: list[list[StagePart]] = [stem] + [[blk] for blk in self.blocks]
        parts[-1] = parts[-1] + [self.norm]
        return parts

    def convert_checkpoint(
        self, state_dict: dict[str, torch.Tensor], config: Mapping | None = None
    ) -> ConvertedCheckpoint:
        from .vit_convert import convert_vit_checkpoint

        return convert_vit_checkpoint(state_dict, self, config)

    # -- forward -------------------------------------------------------------------------
    def resized_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """``pos_embed`` for an h x w patch grid, flattened: (1, h * w, C).

        When no gradient is needed (inference) the resized table is cached for the last grid;
        the cache key includes the parameter's version counter, so in-place updates
        (optimizer steps, ``load_state_dict``) and ``.to()`` invalidate it.
        """
        pos = self.pos_embed
        if known_same_size(pos.shape[1:3], hw):
            return pos.reshape(1, -1, pos.shape[-1])
        # not while exporting: a traced parameter has no data pointer, and the program must
        # compute the table for whatever grid it gets
        cacheable = not (torch.is_grad_enabled() and pos.requires_grad) and not is_exporting()
        key = None
        if cacheable:
            key = (tuple(hw), pos._version, pos.data_ptr(), pos.dtype, pos.device)
            key += (torch.is_inference_mode_enabled(),)
            if self._pos_cache is not None and self._pos_cache[0] == key:
                return self._pos_cache[1]
        resized = resize_pos_embed(
            pos,
            hw,
            antialias=self.pos_embed_antialias,
            offset=self.pos_embed_offset,
            mode=self.pos_embed_mode,
        ).reshape(1, -1, pos.shape[-1])
        self._pos_cache = (key, resized.detach()) if cacheable else None
        return resized

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (B, in_chans, H, W) -> ``{"block{i}": (B, embed_dim, ceil(H/p), ceil(W/p))}``
        (+ ``"block{i}_cls"``: (B, embed_dim) with ``return_class_token``)."""
        p, n = self.patch_size, self.num_windows
        out_hw = (-(-x.shape[-2] // p), -(-x.shape[-1] // p))
        pad = ((-x.shape[-1]) % (p * n), (-x.shape[-2]) % (p * n))
        if any(pad):  # whole windows: zero-pad the image to multiples of p * n
            x = F.pad(x, (0, pad[0], 0, pad[1]))
        x = self.patch_embed(x)  # (B, C, h, w)
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, h*w, C)
        if self.pos_embed is not None:
            x = x + self.resized_pos_embed((h, w))
        if n > 1:
            x = window_partition(x.view(b, h, w, c), (h // n, w // n))[0]  # (B*n*n, h*w/n², C)
        prefix = [t for t in (self.cls_token, self.reg_tokens) if t is not None]
        if prefix:  # (B', P + N, C), one copy per window
            x = torch.cat([t.expand(x.shape[0], -1, -1) for t in prefix] + [x], dim=1)
        rope = self.rope((h, w), x.device, x.dtype) if self.rope is not None else None

        outs = {}
        use_cp = self.grad_checkpointing and torch.is_grad_enabled()
        for i in range(self.out_indices[-1] + 1):  # blocks after the last output are skipped
            blk, tokens = self.blocks[i], x.shape
            if n > 1 and i not in self.window_block_indices:  # global: all windows together
                x = x.reshape(b, -1, c)  # (B, n*n * (P + h*w/n²), C)
            if use_cp:
                x = checkpoint(blk, x, (h, w), rope, use_reentrant=False)
            else:
                x = blk(x, (h, w), rope)
            x = x.reshape(tokens)
            if i in self.out_indices:
                y = self.norm(x)  # (B', P + h*w / n², C); contiguous input: no copy for the norm
                outs[self._key(i)] = self._to_map(y[:, self.num_prefix_tokens :], (h, w), out_hw)
                if self.return_class_token:
                    outs[self._key(i) + "_cls"] = y[:, 0]  # (B, C)
        return outs

    def _to_map(self, y: torch.Tensor, hw: tuple[int, int], out_hw: tuple[int, int]):
        """Patch tokens (B * n*n, h*w / n², C), windows in the batch (a view is fine) -> map
        (B, C, *out_hw), in one copy."""
        n, (h, w), c = self.num_windows, hw, y.shape[-1]
        y = y.view(-1, n, n, h // n, w // n, c)  # (B, window row, window column, h/n, w/n, C)
        y = y.permute(0, 5, 1, 3, 2, 4).reshape(-1, c, h, w)  # (B, C, h, w)
        return y[..., : out_hw[0], : out_hw[1]].contiguous()


# -- registered variants -----------------------------------------------------------------
def _arch(embed_dim: int, depth: int, num_heads: int, **kwargs) -> dict:
    return dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, **kwargs)


def _vitdet(embed_dim: int, depth: int, num_heads: int, drop_path: float, global_blocks) -> dict:
    """ViTDet: windows of 14 except in ``global_blocks``, rel pos, no class token / final norm."""
    windowed = [i for i in range(depth) if i not in global_blocks]
    return _arch(
        embed_dim, depth, num_heads, img_size=1024, patch_size=16, class_token=False,
        use_rel_pos=True, window_size=14, window_block_indices=windowed, final_norm=False,
        drop_path_rate=drop_path,
    )  # fmt: skip


# original DINOv2 repo: patch 14 at 518 px, layer scale, pos_embed resized with offset 0.1
_DINOV2 = dict(patch_size=14, img_size=518, init_values=1e-5, pos_embed_offset=0.1)
_GIANT_MLP = dict(mlp_ratio=4096 / 1536, mlp_layer="gated", act_layer="silu")  # SwiGLU 4096
_DINOV3 = dict(
    reg_tokens=4, abs_pos_embed=False, rope_base=100.0, init_values=1e-5, norm_layer="LN_1e-5"
)

VIT_PRESETS: dict[str, dict] = {
    "vit_tiny_patch16": _arch(192, 12, 3),
    "vit_small_patch16": _arch(384, 12, 6),
    "vit_base_patch16": _arch(768, 12, 12),
    "vit_large_patch16": _arch(1024, 24, 16),
    "vit_huge_patch14": _arch(1280, 32, 16, patch_size=14),
    "vit_small_patch14_dinov2": _arch(384, 12, 6, **_DINOV2),
    "vit_base_patch14_dinov2": _arch(768, 12, 12, **_DINOV2),
    "vit_large_patch14_dinov2": _arch(1024, 24, 16, **_DINOV2),
    "vit_giant_patch14_dinov2": _arch(1536, 40, 24, **_DINOV2, **_GIANT_MLP),
    "vit_small_patch14_reg4_dinov2": _arch(384, 12, 6, **_DINOV2, reg_tokens=4),
    "vit_base_patch14_reg4_dinov2": _arch(768, 12, 12, **_DINOV2, reg_tokens=4),
    "vit_large_patch14_reg4_dinov2": _arch(1024, 24, 16, **_DINOV2, reg_tokens=4),
    "vit_giant_patch14_reg4_dinov2": _arch(1536, 40, 24, **_DINOV2, **_GIANT_MLP, reg_tokens=4),
    "vit_small_patch16_dinov3": _arch(384, 12, 6, **_DINOV3),
    "vit_base_patch16_dinov3": _arch(768, 12, 12, **_DINOV3),
    "vit_large_patch16_dinov3": _arch(1024, 24, 16, **_DINOV3),
    "vitdet_base_patch16": _vitdet(768, 12, 12, 0.1, global_blocks=(2, 5, 8, 11)),
    "vitdet_large_patch16": _vitdet(1024, 24, 16, 0.4, global_blocks=(5, 11, 17, 23)),
    "vitdet_huge_patch16": _vitdet(1280, 32, 16, 0.5, global_blocks=(7, 15, 23, 31)),
    **DETR_VIT_PRESETS,  # RF-DETR / LW-DETR backbones, see vit_hf_detr
}


for _name, _preset in VIT_PRESETS.items():
    register_preset(_name, ViT, _preset, "ViT")
