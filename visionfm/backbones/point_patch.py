"""Point-MAE / Point-BERT style patch transformer over packed point clouds.

Each cloud gives ``num_groups`` tokens: farthest-point-sampled centres, their
``group_size`` nearest points expressed relative to the centre, each group encoded by a
mini-PointNet (shared MLP 3 -> 128 -> 256, max-pool, the pooled feature concatenated to every
point, shared MLP 512 -> 512 -> ``encoder_dims``, max-pool). A two-layer MLP of the centre is
the position embedding, added before every block (as Point-MAE). Blocks are the ViT
:class:`~visionfm.backbones.vit_attention.Block`.

Masked pre-training (``visionfm.models.point_mae``) calls :meth:`PointPatchTransformer.group`
and :meth:`PointPatchTransformer.encode_groups` with a mask: only the visible groups are
tokenized and attended to, with the same weights ``forward`` uses.

``convert_checkpoint`` reads Point-MAE's checkpoints: pre-training (``MAE_encoder.*``, the
decoder and mask token ignored) and fine-tuning (``encoder.*``, ``blocks.blocks.N.*``,
``cls_token`` / ``cls_pos``, the ``cls_head_finetune`` classifier ignored), and Point-BERT's
(``tokenizer_dim=256``: its ``reduce_dim`` projection; pre-training's ``transformer_q.*``
kept, the momentum encoder, dVAE, queue and heads ignored).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from visionfm.ops.point_batch import check_coords, check_offsets, offsets_to_lengths
from visionfm.ops.point_sampling import farthest_point_sampling, knn, three_nn_interpolate
from visionfm.registry import MODELS
from visionfm.weights import ArchHint, CheckpointError, ConvertedCheckpoint

from .base import Backbone, register_preset
from .vit_attention import Attention, Block

__all__ = ["POINT_PATCH_PRESETS", "PointGroupTokenizer", "PointPatchTransformer", "group_points"]


def group_points(
    coords: Tensor, offsets: Tensor, num_groups: int, group_size: int
) -> tuple[Tensor, Tensor]:
    """FPS centres and their kNN groups, relative to the centre.

    Args:
        coords: (N, 3) packed points; offsets: (B,) cumulative ends.
        num_groups: G centres per cloud; group_size: K neighbours per centre.

    Returns:
        groups: (B, G, K, 3) neighbour coordinates minus their centre, nearest first.
        centres: (B, G, 3).
    """
    check_coords(coords, offsets, "points[:, :3]")
    lengths = offsets_to_lengths(offsets)
    need = max(num_groups, group_size)
    short = (lengths < need).nonzero()
    if short.numel():
        b = int(short[0])
        raise ValueError(
            f"PointPatchTransformer: cloud {b} has {int(lengths[b])} points, fewer than "
            f"max(num_groups={num_groups}, group_size={group_size}) = {need}; drop or "
            "upsample that cloud, or lower num_groups / group_size"
        )
    centre_idx, centre_offsets = farthest_point_sampling(coords, offsets, num_groups)
    centres = coords[centre_idx]  # (B * G, 3)
    idx, _ = knn(centres, centre_offsets, coords, offsets, group_size)  # (B * G, K)
    groups = coords[idx] - centres[:, None]  # (B * G, K, 3)
    b = offsets.numel()
    return groups.view(b, num_groups, group_size, 3), centres.view(b, num_groups, 3)


def _shared_mlp(c_in: int, c_hidden: int, c_out: int) -> nn.Sequential:
    """Point-wise conv - BN - ReLU - conv on (M, C, K)."""
    return nn.Sequential(
        nn.Conv1d(c_in, c_hidden, 1),
        nn.BatchNorm1d(c_hidden),
        nn.ReLU(inplace=True),
        nn.Conv1d(c_hidden, c_out, 1),
    )


class PointGroupTokenizer(nn.Module):
    """Mini-PointNet: (B, G, K, 3) groups -> (B, G, out_dim) tokens (see module doc)."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.first_conv = _shared_mlp(3, 128, 256)
        self.second_conv = _shared_mlp(512, 512, out_dim)
        self.out_dim = out_dim

    def forward(self, groups: Tensor) -> Tensor:
        b, g, k, _ = groups.shape
        x = self.first_conv(groups.reshape(b * g, k, 3).transpose(1, 2))  # (BG, 256, K)
        pooled = x.amax(2, keepdim=True)  # (BG, 256, 1)
        x = self.second_conv(torch.cat([pooled.expand(-1, -1, k), x], 1))  # (BG, out, K)
        return x.amax(2).view(b, g, self.out_dim)


@MODELS.register_module()
class PointPatchTransformer(Backbone):
    """Point-MAE / Point-BERT patch transformer.

    ``forward(points (N, 3 + C), offsets (B,))`` uses the coordinates ``points[:, :3]`` only
    (extra channels are ignored, as in Point-MAE) and returns

    - ``'tokens'``: (B, G, embed_dim) normed group-token features (class token excluded);
    - ``'centres'``: (B, G, 3) the FPS centres of those tokens;
    - ``'pooled'``: (B, 2 * embed_dim) ``[class token, max over tokens]`` (Point-MAE's
      classifier input), or (B, embed_dim) the max over tokens when ``class_token=False``;
    - ``'points'``: (N, embed_dim) per input point, the token features interpolated from the
      3 nearest centres of its cloud (PointNet++ feature propagation, parameter-free), so
      per-point heads read the same contract as from a per-point backbone.

    Args:
        num_groups: G tokens per cloud; group_size: K points per group.
        embed_dim, depth, num_heads, mlp_ratio, qkv_bias: transformer (Point-MAE: 384, 12,
            6, 4, False).
        tokenizer_dim: width of the group tokenizer's output, projected to ``embed_dim`` by a
            linear ``reduce_dim`` (Point-BERT: 256); None: the tokenizer gives ``embed_dim``
            and there is no projection (Point-MAE).
        class_token: prepend a learned class token with its learned position.
        drop_path_rate: stochastic depth, linear over the blocks.
        frozen_stages: -1 none; 0 tokenizer, position MLP and class token; i also block i-1.
        grad_checkpointing: recompute block activations in backward.
        pretrained: a Point-MAE / Point-BERT checkpoint (their released ``.pth``, or a state
            dict file) loaded at the end of construction (``load_pretrained``); Point-MAE's
            pre-training file has no class token: use it with ``class_token=False``.
    """

    def __init__(
        self,
        num_groups: int = 64,
        group_size: int = 32,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        tokenizer_dim: int | None = None,
        class_token: bool = True,
        drop_path_rate: float = 0.0,
        frozen_stages: int = -1,
        grad_checkpointing: bool = False,
        pretrained: str | None = None,
    ) -> None:
        super().__init__(frozen_stages=frozen_stages, grad_checkpointing=grad_checkpointing)
        if num_groups < 3 or group_size < 1:
            raise ValueError(
                f"num_groups must be >= 3 (per-point features interpolate from the 3 nearest "
                f"centres) and group_size >= 1, got {num_groups}, {group_size}"
            )
        self.num_groups, self.group_size, self.embed_dim = num_groups, group_size, embed_dim
        self.tokenizer = PointGroupTokenizer(tokenizer_dim or embed_dim)
        self.reduce_dim = nn.Linear(tokenizer_dim, embed_dim) if tokenizer_dim else None
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, embed_dim))
        if class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, embed_dim))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            nn.init.trunc_normal_(self.cls_pos, std=0.02)
        else:
            self.cls_token = self.cls_pos = None
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # meta-safe
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                Attention(embed_dim, num_heads, qkv_bias=qkv_bias),
                mlp_hidden_dim=round(embed_dim * mlp_ratio),
                norm_layer=nn.LayerNorm,
                act_layer=nn.GELU,
                drop_path=rates[i],
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.freeze_stages()
        if pretrained:
            self.load_pretrained(pretrained)

    # -- the interface -------------------------------------------------------------------
    @property
    def out_channels(self) -> dict[str, int]:
        pooled = 2 * self.embed_dim if self.cls_token is not None else self.embed_dim
        return {"tokens": self.embed_dim, "pooled": pooled, "points": self.embed_dim}

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def get_layer_id(self, name: str) -> int:
        """0 for tokenizer (and its projection), position MLP and class token, i + 1 for ``blocks.i.*``,
        depth + 1 for the final norm."""
        if name.startswith(("tokenizer.", "reduce_dim.", "pos_embed.", "cls_token", "cls_pos")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1

    def stage_parts(self) -> list[list[nn.Module | nn.Parameter]]:
        stem = [self.tokenizer, self.pos_embed]
        if self.reduce_dim is not None:
            stem.append(self.reduce_dim)
        if self.cls_token is not None:
            stem += [self.cls_token, self.cls_pos]
        return [stem] + [[blk] for blk in self.blocks]

    def convert_checkpoint(
        self, state_dict: dict[str, Tensor], config: Mapping | None = None
    ) -> ConvertedCheckpoint:
        """Point-MAE / Point-BERT pre-training or fine-tuning state dict -> this model's names.

        ``module.`` / ``MAE_encoder.`` / ``transformer_q.`` / ``base_model.`` prefixes are
        stripped; decoders, momentum encoder, dVAE, queue, mask token and heads are ignored
        (listed); any other unknown key is refused, naming it. Point-MAE's pre-training
        encoder has no class token: into a model with one (Point-MAE's fine-tuning model) it
        loads unless ``strict``, the class token and its position keeping their initial
        values (noted), as Point-MAE fine-tunes.
        """
        if config is not None:
            raise CheckpointError(
                "PointPatchTransformer: Point-MAE checkpoints come without a config.json; "
                "got one, so this is probably another family's checkpoint"
            )
        out, ignored, unknown = {}, [], []
        for key, value in state_dict.items():
            name = key.removeprefix("module.")
            for prefix in ("MAE_encoder.", "transformer_q.", "base_model."):
                name = name.removeprefix(prefix)
            if name.startswith(_IGNORED):
                ignored.append(key)
                continue
            if name.startswith("encoder."):
                name = "tokenizer." + name[len("encoder.") :]
            elif name.startswith("blocks.blocks."):
                name = name[len("blocks.") :]
            elif not name.startswith(
                ("reduce_dim.", "pos_embed.", "norm.", "cls_token", "cls_pos")
            ):
                unknown.append(key)
                continue
            out[name] = value
        if unknown:
            raise CheckpointError(
                f"PointPatchTransformer: {len(unknown)} checkpoint keys are not of the Point-MAE "
                f"/ Point-BERT encoder layout: {unknown[:8]}; is this a checkpoint of that family?"
            )
        notes = (
            [f"ignored {len(ignored)} decoder / dVAE / mask-token / head keys"] if ignored else []
        )
        hints = _HINTS
        pretraining = any("MAE_encoder." in key for key in state_dict)
        if pretraining and self.cls_token is not None and "cls_token" not in out:
            hints = _HINTS[:1] + (ArchHint(_HINTS[1].pattern, "class token", "class_token=True"),)
            notes.append(
                "Point-MAE pre-training has no class token: cls_token / cls_pos keep their "
                "initial values (as Point-MAE's fine-tuning starts)"
            )
        return ConvertedCheckpoint(out, "point_mae", ignored=ignored, notes=notes, hints=hints)

    # -- forward -------------------------------------------------------------------------
    def group(self, points: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
        """points: (N, 3 + C), offsets: (B,) -> groups (B, G, K, 3) centre-relative, centres
        (B, G, 3) (:func:`group_points` on the coordinates)."""
        if points.dim() != 2 or points.shape[1] < 3:
            raise ValueError(f"points must be (N, 3 + C), got {tuple(points.shape)}")
        check_offsets(offsets, points.shape[0])
        return group_points(points[:, :3], offsets, self.num_groups, self.group_size)

    def encode_groups(self, groups: Tensor, centres: Tensor, mask: Tensor | None = None) -> Tensor:
        """Tokenize and transform the visible groups only (Point-MAE's masked encoder).

        Args:
            groups: (B, G, K, 3) centre-relative; centres: (B, G, 3).
            mask: (B, G) bool, True = masked (neither tokenized nor attended to), the same
                number per cloud; None: every group is visible.

        Returns:
            (B, [1 +] V, embed_dim) normed tokens: the class token first (when the model has
            one), then the visible groups' in group order.
        """
        b, g = centres.shape[:2]
        if mask is not None:
            if mask.shape != (b, g) or mask.dtype != torch.bool:
                raise ValueError(
                    f"mask must be bool (B, G) = ({b}, {g}), got {mask.dtype} {tuple(mask.shape)}"
                )
            counts = (~mask).sum(1)
            if bool((counts != counts[0]).any()) or int(counts[0]) == 0:
                raise ValueError(
                    f"mask must leave the same number (>= 1) of visible groups in every cloud, "
                    f"got {counts.tolist()}"
                )
            v = int(counts[0])
            groups = groups[~mask].view(b, v, *groups.shape[2:])  # (B, V, K, 3)
            centres = centres[~mask].view(b, v, 3)
        x = self.tokenizer(groups)  # (B, V, tokenizer_dim or C)
        if self.reduce_dim is not None:
            x = self.reduce_dim(x)  # (B, V, C)
        pos = self.pos_embed(centres)  # (B, V, C)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(b, -1, -1), x], 1)
            pos = torch.cat([self.cls_pos.expand(b, -1, -1), pos], 1)
        hw = (1, x.shape[1])  # no grid: global attention only reads the token count
        use_cp = self.grad_checkpointing and torch.is_grad_enabled()
        for blk in self.blocks:
            x = checkpoint(blk, x + pos, hw, use_reentrant=False) if use_cp else blk(x + pos, hw)
        return self.norm(x)

    def forward(self, points: Tensor, offsets: Tensor) -> dict[str, Tensor]:
        """points: (N, 3 + C) packed, offsets: (B,) cumulative ends -> see the class doc."""
        groups, centres = self.group(points, offsets)
        x = self.encode_groups(groups, centres)  # (B, [1 +] G, C)
        tokens = x[:, 1:] if self.cls_token is not None else x
        pooled = tokens.amax(1)
        if self.cls_token is not None:
            pooled = torch.cat([x[:, 0], pooled], 1)
        b, g = tokens.shape[:2]
        centre_offsets = torch.arange(1, b + 1, device=offsets.device) * g
        per_point = three_nn_interpolate(
            tokens.reshape(b * g, -1), centres.reshape(b * g, 3), centre_offsets,
            points[:, :3], offsets,
        )  # fmt: skip
        return {"tokens": tokens, "centres": centres, "pooled": pooled, "points": per_point}


_HINTS = (
    ArchHint(
        r"^reduce_dim\.",
        "Point-BERT's tokenizer projection",
        lambda shapes: f"tokenizer_dim={shapes['reduce_dim.weight'][1]}",
        "tokenizer_dim=None",
    ),
    ArchHint(r"^cls_(token|pos)$", "class token", "class_token=True", "class_token=False"),
)
_IGNORED = (
    "transformer_k.",
    "dvae.",
    "queue",
    "lm_head.",
    "cls_head.",
    "MAE_decoder.",
    "decoder_pos_embed.",
    "mask_token",
    "increase_dim.",
    "cls_head_finetune.",
)

# The published models' settings (Point-MAE cfgs/*.yaml, Point-BERT cfgs/*.yaml): 64 groups of
# 32 points, 384 wide, 12 blocks of 6 heads; Point-BERT's tokenizer is 256 wide.
POINT_PATCH_PRESETS = {
    "point_mae_base": dict(num_groups=64, group_size=32, embed_dim=384, depth=12, num_heads=6),
    "point_bert_base": dict(
        num_groups=64, group_size=32, embed_dim=384, depth=12, num_heads=6, tokenizer_dim=256
    ),
}
for _name, _preset in POINT_PATCH_PRESETS.items():
    register_preset(_name, PointPatchTransformer, _preset, "PointPatchTransformer")
