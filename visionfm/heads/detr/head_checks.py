"""The checks :class:`~visionfm.heads.detr.DETRHead` makes at construction: incompatible
options fail there, naming the argument to set.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from visionfm.layers import DeformableMemoryAttention

__all__ = ["check_classification", "check_levels", "check_unprojected"]


def check_levels(levels, num_in, encoder, decoder) -> None:
    """Incompatible options fail here, at construction (queries: ``query_mode``)."""
    if levels < num_in:
        raise ValueError(f"num_feature_levels={levels} is below the {num_in} input levels")
    modules = (*(encoder.modules() if encoder is not None else ()), *decoder.modules())
    for m in modules:
        if isinstance(m, DeformableMemoryAttention) and m.num_levels != levels:
            raise ValueError(
                f"a deformable attention has num_levels={m.num_levels} but the head makes "
                f"{levels} feature levels"
            )


def check_classification(classification: str, matcher: nn.Module, proposals: bool) -> None:
    """``classification`` is known, agrees with the matcher's, and has learned queries."""
    if classification not in ("sigmoid", "softmax"):
        raise ValueError(f"classification must be 'sigmoid' or 'softmax', got {classification!r}")
    theirs = getattr(matcher, "classification", "sigmoid")
    if theirs != classification:
        raise ValueError(
            f"the head's classification={classification!r} but the matcher's is {theirs!r}: "
            f"set matcher=dict(type='HungarianMatcher', classification={classification!r}, ...)"
        )
    if classification == "softmax" and proposals:
        raise ValueError(
            "classification='softmax' (DETR's no-object class) needs learned queries: "
            "two-stage proposals and denoising rank sigmoid scores"
        )


def check_unprojected(in_channels, embed_dims: int, levels: int) -> None:
    """``project_inputs=False``: the inputs are the feature levels as they are."""
    widths = list(in_channels.values() if isinstance(in_channels, Mapping) else in_channels)
    if levels != len(widths) or any(w != embed_dims for w in widths):
        raise ValueError(
            f"project_inputs=False needs every input level {embed_dims} (embed_dims) wide "
            f"and num_feature_levels equal to their number ({len(widths)}); got in_channels="
            f"{in_channels}, num_feature_levels={levels}: set project_inputs=True or "
            f"make the neck give those levels"
        )
