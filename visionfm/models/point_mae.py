"""Point-MAE: masked point modelling pre-training (Pang et al., "Masked Autoencoders for Point
Cloud Self-supervised Learning", ECCV 2022).

Each cloud is cut into ``G`` groups of ``K`` points (the backbone's FPS + kNN grouping);
``mask_ratio`` of the groups are masked (``'rand'``: uniformly; ``'block'``: the nearest
centres to a random one). The encoder (a :class:`~visionfm.backbones.PointPatchTransformer`)
sees only the visible groups. A light decoder takes the visible tokens plus one shared mask
token per masked group, each with a position MLP of its centre added before every block,
and a linear layer predicts the ``K`` points of every masked group relative to its centre.
The loss is the Chamfer distance between predicted and true masked groups
(``visionfm.ops.chamfer``, L2 as Point-MAE's recipe).

The encoder's weights are the state dict's ``backbone.*``, in the names a
:class:`~visionfm.models.PointModel` with the same backbone has: fine-tuning with
``load_from=`` the pre-training checkpoint takes them and leaves the decoder
(``mask_token``, ``decoder_pos_embed.*``, ``decoder.*``, ``decoder_norm.*``,
``increase_dim.*``) unused, listed in the log.

Config::

    model = dict(
        type='PointMAE',
        backbone=dict(type='PointPatchTransformer', class_token=False, ...),
        decoder_depth=4, decoder_num_heads=6, mask_ratio=0.6)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from mmengine.model import BaseModel
from torch import Tensor, nn

from visionfm.backbones.point_patch import PointPatchTransformer
from visionfm.backbones.vit_attention import Attention, Block
from visionfm.data.data_sample import DataSample
from visionfm.data.point_batch import PointDataPreprocessor
from visionfm.ops.chamfer import chamfer_distance
from visionfm.registry import MODELS

__all__ = ["PointMAE", "block_mask", "random_mask"]


def _num_masked(num_groups: int, ratio: float) -> int:
    m = int(ratio * num_groups)  # Point-MAE's count
    if not 1 <= m < num_groups:
        raise ValueError(
            f"mask_ratio={ratio} masks {m} of {num_groups} groups; it must mask at least one "
            "and leave at least one visible"
        )
    return m


def random_mask(
    num_clouds: int, num_groups: int, ratio: float, device=None, generator=None
) -> Tensor:
    """(B, G) bool, True = masked: ``int(ratio * G)`` groups per cloud, uniformly at random."""
    m = _num_masked(num_groups, ratio)
    noise = torch.rand(num_clouds, num_groups, device=device, generator=generator)
    return noise.argsort(1).argsort(1) < m  # each row's rank < m


def block_mask(centres: Tensor, ratio: float, generator=None) -> Tensor:
    """centres (B, G, 3) -> (B, G) bool: in every cloud the ``int(ratio * G)`` centres nearest
    to a random one (Point-MAE's ``'block'`` mask)."""
    b, g = centres.shape[:2]
    m = _num_masked(g, ratio)
    seed = torch.randint(g, (b,), device=centres.device, generator=generator)
    dist = (centres - centres[torch.arange(b, device=centres.device), seed][:, None]).norm(dim=-1)
    return dist.argsort(dim=1, stable=True).argsort(1) < m


@MODELS.register_module()
class PointMAE(BaseModel):
    """Masked point-group reconstruction (see the module doc).

    Args:
        backbone: the encoder, a :class:`PointPatchTransformer` (Point-MAE pre-trains it
            without a class token).
        decoder_depth, decoder_num_heads: the decoder's blocks (Point-MAE: 4 blocks, 6 heads,
            the encoder's width, MLP ratio 4).
        mask_ratio: fraction of each cloud's groups masked (``int(ratio * G)`` of them).
        mask_type: ``'rand'`` or ``'block'``.
        loss: Chamfer ``'l2'`` (Point-MAE's ``cdl2``) or ``'l1'``.
        drop_path_rate: the decoder's stochastic depth, linear over its blocks.
        data_preprocessor: default ``PointDataPreprocessor()``.

    ``forward(inputs=dict(points (N, 3 + C), offsets (B,)), data_samples, mode)``:

    - ``'loss'``: ``{'loss_chamfer': scalar}``;
    - ``'predict'``: every sample gains ``pred_points`` (M * K, 3) the reconstructed masked
      groups and ``visible_points`` (V * K, 3) the visible groups, in the cloud's
      coordinates (for drawing);
    - ``'tensor'``: ``dict(pred=(B, M, K, 3), target=(B, M, K, 3), mask=(B, G),
      centres=(B, G, 3))``, groups relative to their centres.
    """

    def __init__(
        self,
        backbone: PointPatchTransformer,
        decoder_depth: int = 4,
        decoder_num_heads: int = 6,
        mask_ratio: float = 0.6,
        mask_type: Literal["rand", "block"] = "rand",
        loss: Literal["l2", "l1"] = "l2",
        drop_path_rate: float = 0.1,
        data_preprocessor: nn.Module | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor or PointDataPreprocessor())
        if not isinstance(backbone, PointPatchTransformer):
            raise TypeError(
                f"PointMAE: the backbone must be a PointPatchTransformer (it groups the cloud "
                f"and encodes the visible groups), got {type(backbone).__name__}"
            )
        if mask_type not in ("rand", "block") or loss not in ("l2", "l1"):
            raise ValueError(
                f"PointMAE: mask_type must be 'rand' or 'block' and loss 'l2' or 'l1', got "
                f"{mask_type!r}, {loss!r}"
            )
        _num_masked(backbone.num_groups, mask_ratio)
        self.backbone = backbone
        self.mask_ratio, self.mask_type, self.loss_norm = mask_ratio, mask_type, loss
        dim, k = backbone.embed_dim, backbone.group_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        rates = [drop_path_rate * i / max(decoder_depth - 1, 1) for i in range(decoder_depth)]
        self.decoder = nn.ModuleList(
            Block(
                dim,
                Attention(dim, decoder_num_heads, qkv_bias=False),
                mlp_hidden_dim=4 * dim,
                norm_layer=nn.LayerNorm,
                act_layer=nn.GELU,
                drop_path=rates[i],
            )
            for i in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dim)
        self.increase_dim = nn.Linear(dim, 3 * k)  # Point-MAE's Conv1d(dim, 3K, 1)
        for module in (self.decoder, self.decoder_norm, self.increase_dim):
            module.apply(_xavier)  # as Point-MAE's decoder
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def init_weights(self) -> None:
        """No-op: the parts initialised themselves when built (see ``TaskModel``)."""

    def make_mask(self, centres: Tensor) -> Tensor:
        """centres (B, G, 3) -> (B, G) bool, True = masked (``mask_type``, ``mask_ratio``)."""
        if self.mask_type == "block":
            return block_mask(centres, self.mask_ratio)
        return random_mask(*centres.shape[:2], self.mask_ratio, device=centres.device)

    def reconstruct(self, groups: Tensor, centres: Tensor, mask: Tensor) -> Tensor:
        """groups (B, G, K, 3) centre-relative, centres (B, G, 3), mask (B, G) -> the masked
        groups' predicted points (B, M, K, 3), relative to their centres, in group order. The
        masked groups' points are never read (only their centres)."""
        x = self.backbone.encode_groups(groups, centres, mask)  # (B, [1 +] V, C)
        if self.backbone.cls_token is not None:
            x = x[:, 1:]
        b, v, c = x.shape
        m = centres.shape[1] - v
        pos = torch.cat(
            [centres[~mask].view(b, v, 3), centres[mask].view(b, m, 3)], 1
        )  # visible first, as the tokens
        pos = self.decoder_pos_embed(pos)  # (B, G, C)
        x = torch.cat([x, self.mask_token.expand(b, m, -1)], 1)  # (B, G, C)
        hw = (1, x.shape[1])
        for blk in self.decoder:
            x = blk(x + pos, hw)
        x = self.decoder_norm(x[:, v:])  # (B, M, C): the mask tokens
        return self.increase_dim(x).view(b, m, self.backbone.group_size, 3)

    def forward(
        self,
        inputs: Mapping[str, Tensor],
        data_samples: list[DataSample] | None = None,
        mode: str = "tensor",
    ):
        """inputs ``dict(points=(N, 3 + C), offsets=(B,))``; see the class doc for ``mode``."""
        if mode not in ("loss", "predict", "tensor"):
            raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
        groups, centres = self.backbone.group(inputs["points"], inputs["offsets"])
        mask = self.make_mask(centres)
        pred = self.reconstruct(groups, centres, mask)  # (B, M, K, 3)
        b, m = pred.shape[:2]
        target = groups[mask].view(b, m, *groups.shape[2:])
        if mode == "loss":
            loss = chamfer_distance(pred.flatten(0, 1), target.flatten(0, 1), self.loss_norm)
            return {"loss_chamfer": loss}
        if mode == "tensor":
            return dict(pred=pred, target=target, mask=mask, centres=centres)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(b)]
        v = groups.shape[1] - m
        absolute = pred + centres[mask].view(b, m, 1, 3)
        visible = (groups + centres[:, :, None])[~mask].view(b, v, -1, 3)
        for i, sample in enumerate(data_samples):
            sample.pred_points = absolute[i].reshape(-1, 3).detach()
            sample.visible_points = visible[i].reshape(-1, 3).detach()
        return data_samples


def _xavier(module: nn.Module) -> None:
    """Point-MAE's decoder init: Xavier-uniform linear weights, zero biases, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
