"""visionfm.layers: building blocks shared by backbones, necks and heads; nothing
task-specific lives here.

- ``norm_act``: norm and activation factories by name (``make_norm``, ``make_act``),
  channels-first ``LayerNorm2d``;
- ``mlp``: a block's feed-forward network (``Mlp``, ``GatedMlp``, ``make_mlp``) and DETR's
  linear stack ``MLP``;
- ``residual``: drop path, layer scale and the base of post-norm layers (``PostNormLayer``);
- ``patch_embed``: patch embeddings (``PatchEmbed``, ``ConvStemEmbed``, ``make_embed``);
- ``positional``: sine positional encodings of feature maps and of coordinates, and the
  resizing of learned position-embedding grids;
- ``point_pos``: positional encodings of voxelised point clouds (hashed submanifold sparse
  conv ``SubmanifoldConv3d`` / ``SparseConvPE`` over a ``VoxelHash``, 3-D RoPE ``Rope3d``);
- ``deformable``: the multi-scale memory of transformer heads (``Memory``) and multi-scale
  deformable attention into it.

The registered ones (``DetrMLP``, ``SinePositionalEncoding``, ``DeformableMemoryAttention``)
are in ``MODELS``, whose ``locations`` name this package.
"""

from .deformable import DeformableMemoryAttention, Memory, flatten_levels
from .mlp import MLP, GatedMlp, Mlp, make_mlp
from .norm_act import LayerNorm2d, act_name, make_act, make_norm
from .patch_embed import ConvStemEmbed, PatchEmbed, make_embed
from .point_pos import Rope3d, SparseConvPE, SubmanifoldConv3d, VoxelHash
from .positional import SinePositionalEncoding, grid_from_length, resize_pos_embed, sine_encoding
from .residual import DropPath, LayerScale, PostNormLayer

__all__ = [
    "MLP",
    "ConvStemEmbed",
    "DeformableMemoryAttention",
    "DropPath",
    "GatedMlp",
    "LayerNorm2d",
    "LayerScale",
    "Memory",
    "Mlp",
    "PatchEmbed",
    "PostNormLayer",
    "Rope3d",
    "SinePositionalEncoding",
    "SparseConvPE",
    "SubmanifoldConv3d",
    "VoxelHash",
    "act_name",
    "flatten_levels",
    "grid_from_length",
    "make_act",
    "make_embed",
    "make_mlp",
    "make_norm",
    "resize_pos_embed",
    "sine_encoding",
]
