"""visionfm.layers: building blocks shared by backbones, necks and heads; nothing
task-specific lives here.

- ``norm_act``: norm and activation factories by name (``make_norm``, ``make_act``),
  channels-first ``LayerNorm2d``; MLPs (``Mlp``, ``GatedMlp``, ``make_mlp``), drop path,
  layer scale, patch embeddings and the resizing of position embeddings;
- ``positional``: sine positional encodings of feature maps and of coordinates;
- ``deformable``: the multi-scale memory of transformer heads (:class:`Memory`) and
  multi-scale deformable attention into it.

The registered ones (``SinePositionalEncoding``, ``DeformableMemoryAttention``) are in
``MODELS``, whose ``locations`` name this package.
"""

from .deformable import DeformableMemoryAttention, Memory, flatten_levels
from .norm_act import (
    ConvStemEmbed,
    DropPath,
    GatedMlp,
    LayerNorm2d,
    LayerScale,
    Mlp,
    PatchEmbed,
    act_name,
    grid_from_length,
    make_act,
    make_embed,
    make_mlp,
    make_norm,
    resize_pos_embed,
)
from .positional import SinePositionalEncoding, sine_encoding

__all__ = [
    "ConvStemEmbed",
    "DeformableMemoryAttention",
    "DropPath",
    "GatedMlp",
    "LayerNorm2d",
    "LayerScale",
    "Memory",
    "Mlp",
    "PatchEmbed",
    "SinePositionalEncoding",
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
