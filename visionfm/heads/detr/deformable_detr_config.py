"""The published Deformable DETR architecture (Zhu et al., 2021, "Deformable DETR: Deformable
Transformers for End-to-End Object Detection"; fundamentalvision/Deformable-DETR, HF
``DeformableDetrForObjectDetection``) as our ``model=`` config (:func:`deformable_detr_model`:
``Detector(TimmBackbone ResNet, DETRHead)``), and the ``config.json`` settings the weights do
not show, compared with a built model (:data:`HF_CONFIG_CHECKS`, for
:func:`visionfm.weights.check_hf_config`). :func:`~.convert_deformable.deformable_detr_model_config`
fills the builder's arguments from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

from visionfm.weights import ConfigEntry

from .convert_common import sine_positions

__all__ = ["HF_CONFIG_CHECKS", "backbone_name", "deformable_detr_model"]


def _attn(m, side: str):
    """The deformable attention op of the first encoder / decoder layer."""
    layer = getattr(m.head, side).layers[0]
    return (layer.self_attn if side == "encoder" else layer.cross_attn).attn


def _proposal_option(name: str):
    return lambda m: getattr(m.head.proposals, name) if m.head.proposals is not None else None


def backbone_name(c: Mapping) -> str:
    """The timm ResNet of a ``config.json`` (or of the original ``args``); ResNet-50 without."""
    return (c.get("backbone_config") or {}).get("backbone") or c.get("backbone") or "resnet50"


HF_CONFIG_CHECKS = {
    "deformable_detr": [
        ConfigEntry("two_stage", lambda c: c.get("two_stage", False),
                    lambda m: m.head.two_stage, lambda v: f"head.two_stage={v}"),
        ConfigEntry("with_box_refine", lambda c: c.get("with_box_refine", False),
                    lambda m: m.head.with_box_refine, lambda v: f"head.with_box_refine={v}"),
        ConfigEntry(
            "num_queries (two_stage_num_proposals with two_stage)",
            lambda c: c.get("two_stage_num_proposals", 300) if c.get("two_stage")
            else c.get("num_queries", 300),
            lambda m: m.head.num_queries, lambda v: f"head.num_queries={v}"),
        ConfigEntry("encoder_attention_heads", lambda c: c.get("encoder_attention_heads", 8),
                    lambda m: _attn(m, "encoder").num_heads,
                    lambda v: f"num_heads={v} in head.encoder.layer.self_attn"),
        ConfigEntry("decoder_attention_heads", lambda c: c.get("decoder_attention_heads", 8),
                    lambda m: _attn(m, "decoder").num_heads,
                    lambda v: f"num_heads={v} in head.decoder.layer.cross_attn and .self_attn"),
        ConfigEntry("encoder_n_points", lambda c: c.get("encoder_n_points", 4),
                    lambda m: _attn(m, "encoder").num_points,
                    lambda v: f"num_points={v} in head.encoder.layer.self_attn"),
        ConfigEntry("decoder_n_points", lambda c: c.get("decoder_n_points", 4),
                    lambda m: _attn(m, "decoder").num_points,
                    lambda v: f"num_points={v} in head.decoder.layer.cross_attn"),
        ConfigEntry(
            "position_embedding_type (normalised sine, offset -0.5, temperature 10000)",
            lambda c: (c.get("position_embedding_type", "sine"), True, -0.5, 10000.0),
            sine_positions,
            lambda v: "head.positional_encoding=dict(type='SinePositionalEncoding', "
            "num_feats=embed_dims // 2, offset=-0.5)" if v[0] == "sine"
            else "(a learned position embedding: not supported)"),
        ConfigEntry("activation_function", lambda c: c.get("activation_function", "relu"),
                    lambda m: type(m.head.encoder.layers[0].ffn.net[1]).__name__.lower(),
                    lambda v: f"act_layer={v!r} in the layers' ffn"),
        ConfigEntry("dilation (DC5: output stride 16)", lambda c: bool(c.get("dilation")),
                    lambda m: max(m.backbone.out_strides.values()) == 16,
                    lambda v: f"backbone.output_stride={16 if v else 32}"),
        ConfigEntry("backbone", backbone_name, lambda m: m.backbone.model_name,
                    lambda v: f"backbone.model_name={v!r}"),
        ConfigEntry(
            "padded pixels read as the backbone gives them (not zeroed)",
            lambda c: False,
            lambda m: m.head.mask_padded_inputs,
            lambda v: f"head.mask_padded_inputs={v}",
        ),
        ConfigEntry(
            "two-stage selection among border / padding tokens too",
            lambda c: True if c.get("two_stage") else None,
            _proposal_option("select_invalid"),
            lambda v: f"head.select_invalid_proposals={v}"),
        ConfigEntry(
            "two-stage top-k by class 0's logit (class-agnostic proposals)",
            lambda c: True if c.get("two_stage") else None,
            _proposal_option("class_agnostic"),
            lambda v: f"head.class_agnostic_proposals={v}"),
    ],
}  # fmt: skip


def deformable_detr_model(
    num_classes: int = 91,
    embed_dims: int = 256,
    backbone: str = "resnet50",
    out_indices: tuple[int, ...] = (2, 3, 4),
    in_channels: Mapping[str, int] | None = None,
    strides: Mapping[str, int] | None = None,
    num_feature_levels: int = 4,
    encoder_layers: int = 6,
    decoder_layers: int = 6,
    ffn_dims: int = 1024,
    decoder_ffn_dims: int | None = None,
    encoder_heads: int = 8,
    decoder_heads: int = 8,
    encoder_points: int = 4,
    decoder_points: int = 4,
    num_queries: int = 300,
    with_box_refine: bool = False,
    two_stage: bool = False,
    dropout: float = 0.1,
) -> dict:
    """Our ``model=`` dict of the published Deformable DETR architecture (defaults: the R50
    model of the paper, ``configs/_base_/models/deformable-detr_r50.py``)."""

    def deform(heads, points):
        return dict(type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=heads,
                    num_levels=num_feature_levels, num_points=points)  # fmt: skip

    def ffn(dims):
        return dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=dims, dropout=dropout)

    head = dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=num_queries,
        in_channels=dict(in_channels or dict(p3=512, p4=1024, p5=2048)),
        strides=dict(strides or dict(p3=8, p4=16, p5=32)),
        num_feature_levels=num_feature_levels,
        input_bias=True,
        positional_encoding=dict(
            type="SinePositionalEncoding", num_feats=embed_dims // 2, offset=-0.5
        ),
        encoder=dict(
            type="DetrEncoder",
            num_layers=encoder_layers,
            layer=dict(
                type="DetrEncoderLayer",
                self_attn=deform(encoder_heads, encoder_points),
                ffn=ffn(ffn_dims),
                dropout=dropout,
            ),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=decoder_layers,
            norm_layer=None,
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(
                    type="DetrMultiheadAttention",
                    embed_dims=embed_dims,
                    num_heads=decoder_heads,
                    dropout=dropout,
                ),
                cross_attn=deform(decoder_heads, decoder_points),
                ffn=ffn(decoder_ffn_dims or ffn_dims),
                dropout=dropout,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        two_stage=two_stage,
        with_box_refine=with_box_refine,
        select_invalid_proposals=two_stage,
        class_agnostic_proposals=two_stage,
        mask_padded_inputs=False,
        loss_cls=2.0,
        loss_bbox=5.0,
        loss_giou=2.0,
        test_cfg=dict(max_per_img=100),
    )
    return dict(
        type="Detector",
        data_preprocessor=dict(type="DataPreprocessor"),
        backbone=dict(type="TimmBackbone", model_name=backbone, out_indices=out_indices,
                      frozen_bn=True, frozen_stages=1),
        neck=None,
        head=head,
    )  # fmt: skip
