"""The published DINO architecture (Zhang et al., 2022, "DINO: DETR with Improved DeNoising
Anchor Boxes for End-to-End Object Detection"; IDEA-Research/DINO, detrex) as our ``model=``
config: ``TaskModel(TimmBackbone ResNet, DETRHead)`` with contrastive denoising and mixed
query selection (:func:`dino_model`), and the settings its weights do not show, compared
with a built model per layout (:data:`SETTINGS_CHECKS`, for
:func:`visionfm.weights.check_hf_config`). :func:`~.convert_dino.dino_model_config` fills the
builder's arguments from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

from visionfm.weights import ConfigEntry

__all__ = ["DETREX", "IDEA", "SETTINGS_CHECKS", "dino_model"]

IDEA, DETREX = "IDEA-Research DINO", "detrex DINO"  # the layouts read


def _positions(m) -> tuple:
    pe = m.head.positional_encoding
    return (pe.temperature, getattr(pe, "offset", None), getattr(pe, "normalize", None))


def _proposals(name: str):
    return lambda m: getattr(m.head.proposals, name, None)


_COMMON = [
    ConfigEntry("two-stage mixed query selection", lambda c: ("mixed", True),
                lambda m: (m.head.queries.mode, m.head.proposals is not None),
                lambda v: "head.two_stage=True, head.mixed_query_selection=True"),
    ConfigEntry("two-stage selection among border / padding tokens too", lambda c: True,
                _proposals("select_invalid"), lambda v: f"head.select_invalid_proposals={v}"),
    ConfigEntry("box refinement from the raw decoder output", lambda c: "raw",
                lambda m: m.head.decoder.refine_from,
                lambda v: f"head.decoder.refine_from={v!r}"),
    ConfigEntry("look forward twice", lambda c: (True, True),
                lambda m: (m.head.with_box_refine, m.head.look_forward_twice),
                lambda v: "head.with_box_refine=True, head.look_forward_twice=True"),
    ConfigEntry("padding as the original code (backbone values on padded pixels, query "
                "positions on level 0's padded map)", lambda c: (False, "padded"),
                lambda m: (m.head.mask_padded_inputs, m.head.decoder.query_pos_frame),
                lambda v: "head.mask_padded_inputs=False, head.decoder.query_pos_frame='padded'"),
    ConfigEntry("inverse sigmoid clamp of the references (eps)", lambda c: 1e-3,
                lambda m: m.head.decoder.logit_eps, lambda v: f"head.decoder.logit_eps={v}"),
    ConfigEntry("nheads", lambda c: c.get("nheads", 8),
                lambda m: m.head.decoder.layers[0].self_attn.num_heads,
                lambda v: f"num_heads={v} in the head's attentions"),
]  # fmt: skip
SETTINGS_CHECKS = {  # per layout: the settings the weights do not show
    IDEA: [
        *_COMMON,
        ConfigEntry("pe_temperatureH / W, no offset, normalised",
                    lambda c: (float(c.get("pe_temperatureH", 20)), 0.0, True), _positions,
                    lambda v: f"head.positional_encoding=dict(type='SinePositionalEncoding', "
                    f"num_feats=embed_dims // 2, temperature={v[0]:g})"),
        ConfigEntry("one class / box head shared by the decoder layers "
                    "(dec_pred_class_embed_share)",
                    lambda c: c.get("dec_pred_class_embed_share", True),
                    lambda m: len(m.head.cls_heads) == 1,
                    lambda v: f"head.share_pred_heads={v}"),
    ],
    DETREX: [
        *_COMMON,
        ConfigEntry("position_embedding (temperature 10000, offset -0.5, normalised)",
                    lambda c: (10000.0, -0.5, True), _positions,
                    lambda v: "head.positional_encoding=dict(type='SinePositionalEncoding', "
                    "num_feats=embed_dims // 2, temperature=10000, offset=-0.5)"),
        ConfigEntry("one class / box head per decoder layer", lambda c: False,
                    lambda m: len(m.head.cls_heads) == 1, lambda v: "head.share_pred_heads=False"),
    ],
}  # fmt: skip


def dino_model(
    num_classes: int = 91,
    embed_dims: int = 256,
    backbone: Mapping | None = None,
    in_channels: Mapping[str, int] | None = None,
    strides: Mapping[str, int] | None = None,
    num_feature_levels: int = 4,
    encoder_layers: int = 6,
    decoder_layers: int = 6,
    ffn_dims: int = 2048,
    num_heads: int = 8,
    num_points: int = 4,
    num_queries: int = 900,
    num_dn_queries: int = 100,
    box_noise_scale: float = 0.4,
    share_pred_heads: bool = True,
    temperature: float = 20,
    offset: float = 0.0,
) -> dict:
    """Our ``model=`` dict of the published DINO architecture (defaults: IDEA-Research's
    DINO-4scale R50, ``configs/_base_/models/dino_r50.py``); ``backbone``: TimmBackbone
    arguments (default ResNet-50 levels p3-p5, frozen batch norms, stem + layer1 frozen)."""
    deform = dict(type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=num_heads,
                  num_levels=num_feature_levels, num_points=num_points)  # fmt: skip
    ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=ffn_dims)
    backbone = dict(backbone or dict(model_name="resnet50", out_indices=(2, 3, 4)))
    backbone = dict(dict(type="TimmBackbone", frozen_bn=True, frozen_stages=1), **backbone)
    head = dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=num_queries,
        in_channels=dict(in_channels or dict(p3=512, p4=1024, p5=2048)),
        strides=dict(strides or dict(p3=8, p4=16, p5=32)),
        num_feature_levels=num_feature_levels,
        input_bias=True,
        mask_padded_inputs=False,
        positional_encoding=dict(
            type="SinePositionalEncoding",
            num_feats=embed_dims // 2,
            temperature=temperature,
            offset=offset,
        ),  # fmt: skip
        encoder=dict(
            type="DetrEncoder",
            num_layers=encoder_layers,
            layer=dict(type="DetrEncoderLayer", self_attn=deform, ffn=ffn),
        ),  # fmt: skip
        decoder=dict(
            type="DetrDecoder",
            num_layers=decoder_layers,
            refine_from="raw",
            logit_eps=1e-3,
            query_pos_frame="padded",
            ref_point_head=dict(
                type="DetrMLP",
                in_dims=2 * embed_dims,
                hidden_dims=embed_dims,
                out_dims=embed_dims,
                num_layers=2,
            ),  # fmt: skip
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(
                    type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=num_heads
                ),  # fmt: skip
                cross_attn=deform,
                ffn=ffn,
            ),
        ),
        matcher=dict(type="HungarianMatcher", cost_class=2.0, cost_bbox=5.0, cost_giou=2.0),
        two_stage=True,
        with_box_refine=True,
        mixed_query_selection=True,
        look_forward_twice=True,
        share_pred_heads=share_pred_heads,
        select_invalid_proposals=True,
        denoising=dict(
            type="CdnQueryGenerator",
            num_classes=num_classes,
            embed_dims=embed_dims,
            num_dn_queries=num_dn_queries,
            box_noise_scale=box_noise_scale,
        ),
        test_cfg=dict(max_per_img=300),
    )
    return dict(
        type="TaskModel",
        data_preprocessor=dict(type="DataPreprocessor"),
        backbone=backbone,
        neck=None,
        head=head,
    )
