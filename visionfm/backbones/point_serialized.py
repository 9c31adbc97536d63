"""Point Transformer V3 (Wu et al., "Point Transformer V3: Simpler, Faster, Stronger", CVPR
2024): serialized patch attention over voxelised point clouds, in plain PyTorch.

Each cloud is voxelised (``floor(coords / grid_size)`` minus its lowest voxel) and ordered
along space-filling curves (z, z-trans, Hilbert, Hilbert-trans; block i uses order
``i % len(order)``, the orders shuffled per forward in training with ``shuffle_orders``).
Attention runs inside patches of ``patch_size`` consecutive points of that order; a cloud whose
length is not a multiple of the patch size gets its last patch slid back to end at its last
point (PTv3's padding by duplicated indices: the duplicates' outputs are dropped, no masks), a
cloud shorter than a patch is one patch of its own length. Encoder stages are joined by
serialized pooling (stride 2: parent voxel ``grid >> 1``, children max-pooled), decoder stages
by unpooling (parent features gathered back through the cluster map, plus the projected skip).

Positional encoding, ``pos_embed``:

- ``'sparse_conv'`` (default): PTv3's xCPE, a submanifold 3x3x3 sparse conv + linear +
  LayerNorm added before every block, here by hashed neighbour lookup
  (:class:`~visionfm.layers.point_pos.SparseConvPE`) instead of spconv;
- ``'rope'``: 3-D rotary embedding of the voxel coordinates on queries and keys;
- ``None``: none (the stem's conv is the only spatial mixing besides attention).

Default and why: ``'sparse_conv'``. Measured with ``benchmarks/bench_point_pos_embed.py``
(``configs/point_seg/ptv3_synthetic-scenes.py`` with ``pos_embed`` changed, the three trained
in turns for equal minutes on one loaded CPU core, one seed, two validation rooms; results in
``benchmarks/results/point_pos_embed*.md``):

- xyz only (``--features``: geometry alone; the synthetic rooms colour each class): after
  1 / 2 / 3 minutes, validation mIoU 0.48 / 0.58 / 0.63 sparse conv (125 steps), 0.35 /
  0.47 / 0.64 none (242 steps), 0.28 / 0.46 / 0.47 RoPE (193 steps). Per step the conv is
  far ahead (0.58 after 92 steps; none 0.47 after 148), per minute it leads until none's
  cheaper steps (about half the cost) catch up;
- xyz + colour + normal (the config): all three reach 0.97-0.98 within 4 minutes, colour
  giving the classes away.

RoPE on voxel coordinates is the weakest here. The conv is also what PTv3 uses, and Pointcept
reports about 11 mIoU lost on ScanNet without it (Pointcept issue #285). ``pos_embed=None`` is
the cheap choice for short CPU runs on easy data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from visionfm.layers.point_pos import SubmanifoldConv3d
from visionfm.ops.attention import check_backend
from visionfm.ops.point_batch import check_offsets
from visionfm.ops.point_grid import ORDERS, voxelize
from visionfm.registry import MODELS

from .base import Backbone, register_preset
from .point_serialized_blocks import Level, SerializedBlock, SerializedPooling, SerializedUnpooling

__all__ = ["PTV3_PRESETS", "PointTransformerV3"]

POS_EMBEDS = ("sparse_conv", "rope", None)


def _linear_rates(top: float, count: int) -> list[float]:
    """``count`` drop-path rates from 0 to ``top`` (plain floats: builds on the meta device)."""
    return [top * i / max(count - 1, 1) for i in range(count)]


class _Stem(nn.Module):
    """PTv3's embedding: submanifold conv (kernel ``kernel_size``) + BatchNorm + GELU;
    (N, in_channels) -> (N, C)."""

    def __init__(self, in_channels: int, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = SubmanifoldConv3d(in_channels, channels, kernel_size, bias=False)
        self.norm = nn.BatchNorm1d(channels)
        self.act = nn.GELU()

    def forward(self, x: Tensor, level: Level) -> Tensor:
        return self.act(self.norm(self.conv(x, level.voxels)))


class _Stage(nn.Module):
    """Blocks at one resolution, after the pooling (encoder) or unpooling (decoder) into it."""

    def __init__(self, blocks: list[SerializedBlock], **resample: nn.Module | None) -> None:
        super().__init__()
        for name, module in resample.items():  # 'pool' or 'unpool'
            if module is not None:
                self.add_module(name, module)
        self.blocks = nn.ModuleList(blocks)


@MODELS.register_module()
class PointTransformerV3(Backbone):
    """Point Transformer V3 encoder-decoder over packed clouds (see the module doc).

    ``forward(points (N, in_channels), offsets (B,))``: ``points[:, :3]`` are the coordinates
    (voxelised by ``grid_size``), every column (coordinates included) feeds the stem. Returns

    - ``'points'``: (N, dec_channels[0]) per input point, in the input order (with
      ``cls_mode``: (N, enc_channels[-1]), each point's bottleneck voxel's features);
    - ``'pooled'``: (B, enc_channels[-1]) per-cloud mean of the bottleneck features.

    Points of one voxel are told apart by attention but share the convolutions' voxel input
    (their mean): feed clouds grid-sampled at ``grid_size`` (``PointGridSample``), as PTv3.

    Args:
        in_channels: columns of ``points`` (3 coordinates + features).
        grid_size: voxel side at the first level (metres for Pointcept's scenes).
        order: curves cycled over the blocks of a stage; shuffle_orders: permute them at
            every training forward (PTv3).
        enc_depths / enc_channels / enc_num_heads / enc_patch_size: per encoder stage; stage
            s > 0 starts with a stride-2 serialized pooling.
        dec_depths / dec_channels / dec_num_heads / dec_patch_size: per decoder stage (one
            fewer than encoder stages), stage s starts by unpooling into level s.
        mlp_ratio, qkv_bias: blocks' MLP width ratio, qkv bias.
        drop_path_rate: stochastic depth, linear over the encoder blocks and (separately) the
            decoder blocks, largest at the bottleneck.
        pos_embed: ``'sparse_conv'``, ``'rope'`` or None (module doc); rope_theta: RoPE base.
        stem_kernel: the stem conv's kernel (PTv3: 5).
        cls_mode: no decoder (PTv3's classification variant). Use it for classification
            heads: they read ``'pooled'`` only, which leaves a decoder without gradients
            (DDP's unused-parameter error).
        attn_backend: attention backend override; frozen_stages: -1 none, 0 the stem, k
            also the k-th stage (encoder stages, then decoder stages top-down).
        grad_checkpointing: recompute blocks in backward.
    """

    def __init__(
        self,
        in_channels: int = 6,
        grid_size: float = 0.02,
        order: Sequence[str] = ORDERS,
        shuffle_orders: bool = True,
        enc_depths: Sequence[int] = (2, 2, 2, 6, 2),
        enc_channels: Sequence[int] = (32, 64, 128, 256, 512),
        enc_num_heads: Sequence[int] = (2, 4, 8, 16, 32),
        enc_patch_size: Sequence[int] = (1024,) * 5,
        dec_depths: Sequence[int] = (2, 2, 2, 2),
        dec_channels: Sequence[int] = (64, 64, 128, 256),
        dec_num_heads: Sequence[int] = (4, 4, 8, 16),
        dec_patch_size: Sequence[int] = (1024,) * 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.3,
        pos_embed: str | None = "sparse_conv",
        rope_theta: float = 100.0,
        stem_kernel: int = 5,
        cls_mode: bool = False,
        attn_backend: str | None = None,
        frozen_stages: int = -1,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__(frozen_stages=frozen_stages, grad_checkpointing=grad_checkpointing)
        self._check_args(locals())
        self.in_channels, self.grid_size, self.cls_mode = in_channels, grid_size, cls_mode
        self.order, self.shuffle_orders, self.pos_embed = tuple(order), shuffle_orders, pos_embed
        self.stem_kernel = stem_kernel
        self.enc_channels, self.dec_channels = tuple(enc_channels), tuple(dec_channels)
        check_backend(attn_backend)

        def blocks(depths, channels, heads, patch, rates):
            return [
                SerializedBlock(
                    channels,
                    heads,
                    patch,
                    mlp_ratio,
                    qkv_bias,
                    rates[i],
                    pos_embed,
                    rope_theta,
                    attn_backend,
                )  # fmt: skip
                for i in range(depths)
            ]

        self.stem = _Stem(in_channels, enc_channels[0], stem_kernel)
        rates = _linear_rates(drop_path_rate, sum(enc_depths))
        self.enc = nn.ModuleList()
        for s, depth in enumerate(enc_depths):
            done = sum(enc_depths[:s])
            pool = SerializedPooling(enc_channels[s - 1], enc_channels[s]) if s else None
            stage_blocks = blocks(
                depth, enc_channels[s], enc_num_heads[s], enc_patch_size[s], rates[done:]
            )
            self.enc.append(_Stage(stage_blocks, pool=pool))
        self.dec = nn.ModuleList()
        if not cls_mode:
            rates = _linear_rates(drop_path_rate, sum(dec_depths))[::-1]
            above = (*dec_channels[1:], enc_channels[-1])
            for s, depth in enumerate(dec_depths):
                done = sum(dec_depths[:s])
                unpool = SerializedUnpooling(above[s], enc_channels[s], dec_channels[s])
                stage_blocks = blocks(
                    depth, dec_channels[s], dec_num_heads[s], dec_patch_size[s], rates[done:]
                )
                self.dec.append(_Stage(stage_blocks, unpool=unpool))
        self.freeze_stages()

    @staticmethod
    def _check_args(args: dict) -> None:
        stages = len(args["enc_depths"])
        for key in ("enc_channels", "enc_num_heads", "enc_patch_size"):
            if len(args[key]) != stages:
                raise ValueError(f"{key} has {len(args[key])} entries, enc_depths {stages}")
        if not args["cls_mode"]:
            for key in ("dec_depths", "dec_channels", "dec_num_heads", "dec_patch_size"):
                if len(args[key]) != stages - 1:
                    raise ValueError(
                        f"{key} has {len(args[key])} entries; the decoder has one stage fewer "
                        f"than the encoder's {stages} (or set cls_mode=True)"
                    )
        if args["pos_embed"] not in POS_EMBEDS:
            raise ValueError(f"pos_embed must be one of {POS_EMBEDS}, got {args['pos_embed']!r}")
        bad = [o for o in args["order"] if o not in ORDERS]
        if bad or not args["order"]:
            raise ValueError(f"order must be a non-empty sequence of {ORDERS}, got {args['order']}")
        if args["in_channels"] < 3:
            raise ValueError(f"in_channels must be >= 3 (x, y, z first), got {args['in_channels']}")

    # -- the interface -------------------------------------------------------------------
    @property
    def out_channels(self) -> dict[str, int]:
        points = self.enc_channels[-1] if self.cls_mode else self.dec_channels[0]
        return {"points": points, "pooled": self.enc_channels[-1]}

    def _stages(self) -> list[tuple[str, _Stage]]:
        """Stages in execution order, with their parameter-name prefixes."""
        enc = [(f"enc.{s}.", stage) for s, stage in enumerate(self.enc)]
        dec = [(f"dec.{s}.", self.dec[s]) for s in reversed(range(len(self.dec)))]
        return enc + dec

    @property
    def num_layers(self) -> int:
        return sum(len(stage.blocks) for _, stage in self._stages())

    def get_layer_id(self, name: str) -> int:
        """0 for the stem; blocks numbered 1.. in execution order (encoder, then decoder
        top-down), a stage's (un)pooling with its first block; num_layers + 1 otherwise."""
        if name.startswith("stem."):
            return 0
        done = 0
        for prefix, stage in self._stages():
            if name.startswith(prefix):
                rest = name[len(prefix) :]
                return done + 1 + (int(rest.split(".")[1]) if rest.startswith("blocks.") else 0)
            done += len(stage.blocks)
        return self.num_layers + 1

    def stage_parts(self) -> list[list[nn.Module]]:
        return [[self.stem]] + [[stage] for _, stage in self._stages()]

    # -- forward -------------------------------------------------------------------------
    def _run(self, stage: _Stage, x: Tensor, level: Level) -> Tensor:
        use_cp = self.grad_checkpointing and torch.is_grad_enabled()
        for i, blk in enumerate(stage.blocks):
            x = checkpoint(blk, x, level, i, use_reentrant=False) if use_cp else blk(x, level, i)
        return x

    def forward(self, points: Tensor, offsets: Tensor) -> dict[str, Tensor]:
        """points: (N, in_channels) packed, offsets: (B,) cumulative ends -> class doc."""
        if points.dim() != 2 or points.shape[1] != self.in_channels:
            raise ValueError(
                f"PointTransformerV3: points must be (N, in_channels={self.in_channels}) "
                f"(x, y, z then features), got {tuple(points.shape)}; set in_channels to 3 + "
                "the feature channels the pipeline packs (PackPointInputs' features)"
            )
        check_offsets(offsets, points.shape[0])
        batch, grid = voxelize(points[:, :3].detach(), offsets, self.grid_size)
        order = self.order
        if self.shuffle_orders and self.training:
            order = tuple(order[i] for i in torch.randperm(len(order)).tolist())
        depth = max(int(grid.max()).bit_length(), 1)
        level = Level(grid, batch, offsets, depth, order, max(self.stem_kernel // 2, 1))
        x = self.stem(points, level)
        levels, skips, clusters = [level], [], []
        for s, stage in enumerate(self.enc):
            if s:
                skips.append(x)
                x, level, cluster = stage.pool(x, level)
                levels.append(level)
                clusters.append(cluster)
            x = self._run(stage, x, level)
        counts = torch.bincount(level.batch, minlength=len(offsets)).clamp(min=1)
        pooled = x.new_zeros(len(offsets), x.shape[1]).index_add(0, level.batch, x)
        pooled = pooled / counts[:, None].to(x)  # (B, C) mean over the bottleneck's voxels
        if self.cls_mode:
            for cluster in reversed(clusters):
                x = x[cluster]
            return {"points": x, "pooled": pooled}
        for s in reversed(range(len(self.dec))):
            x = self.dec[s].unpool(x, skips[s], clusters[s])
            x = self._run(self.dec[s], x, levels[s])
        return {"points": x, "pooled": pooled}


# Pointcept's published PTv3 (configs/scannet/semseg-pt-v3m1-0-base.py): 5 encoder stages
# 32-512 wide, decoder 64-256, patches of 1024, drop path 0.3, 0.02 m voxels, colour + normal
# in (here after x, y, z: in_channels 9).
PTV3_PRESETS = {
    "ptv3_base": dict(
        in_channels=9,
        grid_size=0.02,
        enc_depths=(2, 2, 2, 6, 2),
        enc_channels=(32, 64, 128, 256, 512),
        enc_num_heads=(2, 4, 8, 16, 32),
        enc_patch_size=(1024,) * 5,
        dec_depths=(2, 2, 2, 2),
        dec_channels=(64, 64, 128, 256),
        dec_num_heads=(4, 4, 8, 16),
        dec_patch_size=(1024,) * 4,
        drop_path_rate=0.3,
    ),
}
for _name, _preset in PTV3_PRESETS.items():
    register_preset(_name, PointTransformerV3, _preset, "PointTransformerV3")
