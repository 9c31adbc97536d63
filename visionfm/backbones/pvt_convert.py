"""Published PVT v2 checkpoints -> the layout of :class:`visionfm.backbones.pvt.PyramidVisionTransformerV2`.

Our layout: ``stages.{i}.patch_embed.{proj,norm}``, ``stages.{i}.blocks.{j}.{norm1, attn.q,
attn.kv, attn.sr, attn.norm, attn.proj, norm2, mlp.fc1, mlp.dwconv, mlp.fc2}``,
``stages.{i}.norm``. Recognised by anchor keys, under any prefix (``backbone.``,
``pvt_v2.`` ...; keys outside the prefix are ignored):

- ours: ``stages.0.patch_embed.proj.weight``;
- timm ``pvt_v2_*``: ``patch_embed.`` (first stage), ``stages.{i}.downsample.`` (later ones),
  otherwise our names;
- the original repo (whai362/PVT, classification and detection): ``patch_embed{n}.``,
  ``block{n}.{j}.``, ``norm{n}.`` (1-based stages), ``mlp.dwconv.dwconv.``;
- Hugging Face ``PvtV2Model`` / ``PvtV2Backbone`` (``encoder.layers.{i}.``; under ``pvt_v2.``
  in ``PvtV2ForImageClassification``): ``patch_embedding.layer_norm``, ``layer_norm_{1,2}``,
  ``attention.{query,key,value,proj,spatial_reduction,layer_norm}``, ``mlp.dense{1,2}``;
  separate key / value projections are fused into ``kv``.

Classifier heads are ignored. A checkpoint whose blocks per stage differ from the model's
raises :class:`CheckpointError` naming both; other sizes fail on the shape check of
:func:`~visionfm.backbones.weights.load_converted`.
"""

from __future__ import annotations

import re

import torch

from .weights import CheckpointError, ConvertedCheckpoint, find_prefix

__all__ = ["convert_pvt_v2_checkpoint"]

_ANCHORS = {
    "stages.0.patch_embed.proj.weight": "visionfm",
    "stages.1.downsample.proj.weight": "timm",
    "patch_embed1.proj.weight": "PVT v2 (original repo)",
    "encoder.layers.0.patch_embedding.proj.weight": "Hugging Face PvtV2",
}
_IGNORED = re.compile(r"^(head|classifier|head_drop)(\.|$)")

_ORIGINAL = [  # (pattern, replacement), applied in order
    (r"^patch_embed(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.patch_embed."),
    (r"^block(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.blocks."),
    (r"^norm(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.norm."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
]
_TIMM = [
    (r"^patch_embed\.", "stages.0.patch_embed."),
    (r"^stages\.(\d+)\.downsample\.", r"stages.\1.patch_embed."),
]
_HF = [
    (r"^encoder\.layers\.", "stages."),
    (r"\.patch_embedding\.layer_norm\.", ".patch_embed.norm."),
    (r"\.patch_embedding\.", ".patch_embed."),
    (r"\.layer_norm_1\.", ".norm1."),
    (r"\.layer_norm_2\.", ".norm2."),
    (r"\.attention\.query\.", ".attn.q."),
    (r"\.attention\.key\.", ".attn.k."),
    (r"\.attention\.value\.", ".attn.v."),
    (r"\.attention\.spatial_reduction\.", ".attn.sr."),
    (r"\.attention\.layer_norm\.", ".attn.norm."),
    (r"\.attention\.proj\.", ".attn.proj."),
    (r"\.mlp\.dense1\.", ".mlp.fc1."),
    (r"\.mlp\.dense2\.", ".mlp.fc2."),
    (r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),
    (r"^(stages\.\d+)\.layer_norm\.", r"\1.norm."),
]
_RULES = {"timm": _TIMM, "PVT v2 (original repo)": _ORIGINAL, "Hugging Face PvtV2": _HF}


def _rename(sd: dict[str, torch.Tensor], rules) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in sd.items():
        for pattern, repl in rules:
            name = re.sub(pattern, repl, name)
        out[name] = t
    return out


def _fuse_kv(sd: dict[str, torch.Tensor]) -> None:
    """In place: ``attn.k`` + ``attn.v`` -> ``attn.kv`` (rows [k; v])."""
    for name in [n for n in sd if ".attn.k." in n]:
        value = name.replace(".attn.k.", ".attn.v.")
        if value not in sd:
            raise CheckpointError(f"{name} has no value projection {value} to fuse with")
        sd[name.replace(".attn.k.", ".attn.kv.")] = torch.cat([sd.pop(name), sd.pop(value)], 0)


def _depths(sd: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """Blocks per stage found in a state dict in our layout."""
    found: dict[int, int] = {}
    for name in sd:
        m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", name)
        if m:
            i, j = int(m[1]), int(m[2])
            found[i] = max(found.get(i, 0), j + 1)
    return tuple(found.get(i, 0) for i in range(max(found, default=-1) + 1))


def convert_pvt_v2_checkpoint(sd: dict[str, torch.Tensor], model) -> ConvertedCheckpoint:
    """Convert a timm / original / Hugging Face PVT v2 state dict (see module doc) for ``model``.

    Raises :class:`CheckpointError` when no PVT v2 format is recognised or the number of
    blocks per stage differs from ``model.depths``.
    """
    found = find_prefix(sd.keys(), tuple(_ANCHORS))
    if found is None:
        sample = ", ".join(sorted(sd)[:8])
        raise CheckpointError(
            "not a PVT v2 checkpoint: no key ends with any of "
            f"{', '.join(repr(a) for a in _ANCHORS)} (visionfm / timm / original repo / "
            f"Hugging Face layouts); it has {len(sd)} keys such as: {sample}"
        )
    prefix, anchor = found
    fmt = _ANCHORS[anchor]
    ignored = [k for k in sd if not k.startswith(prefix)]
    sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    ignored += [prefix + k for k in sd if _IGNORED.match(k)]
    sd = {k: v for k, v in sd.items() if not _IGNORED.match(k)}
    sd = _rename(sd, _RULES.get(fmt, []))
    _fuse_kv(sd)
    depths = _depths(sd)
    if depths != tuple(model.depths):
        raise CheckpointError(
            f"this {fmt} checkpoint has {depths} blocks per stage, the model "
            f"{tuple(model.depths)}: a checkpoint of another PVT v2 size? (presets: b0/b1 "
            "(2, 2, 2, 2), b2/b2_li (3, 4, 6, 3), b3 (3, 4, 18, 3), b4 (3, 8, 27, 3), "
            "b5 (3, 6, 40, 3))"
        )
    notes = [f"keys taken from under the prefix {prefix!r}"] if prefix else []
    return ConvertedCheckpoint(sd, fmt, ignored=ignored, notes=notes)
