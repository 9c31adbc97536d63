"""Tiny model configs shared by the tests: a patch-8 ViT, its simple feature pyramid and a
small DINO head (two-stage, box refinement, mixed query selection, look forward twice); and
the loop that overfits such a model on one batch.

Tests import it as ``from _tiny_models import ...``: tests/ has no ``__init__.py``, so pytest
puts tests/ on ``sys.path`` when it loads tests/conftest.py.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def deform_attn(embed_dims: int, num_heads: int, num_levels: int, num_points: int) -> dict:
    """Multi-scale deformable attention over ``num_levels`` feature levels."""
    return dict(
        type="DeformableMemoryAttention",
        embed_dims=embed_dims,
        num_heads=num_heads,
        num_levels=num_levels,
        num_points=num_points,
    )


def detr_ffn(embed_dims: int) -> dict:
    """The transformer feed-forward block, hidden width ``2 * embed_dims``."""
    return dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=2 * embed_dims)


def detr_encoder(embed_dims: int, num_layers: int, self_attn: dict) -> dict:
    """A DETR encoder: ``num_layers`` of ``self_attn`` (over every level) then ``detr_ffn``."""
    return dict(
        type="DetrEncoder",
        num_layers=num_layers,
        layer=dict(type="DetrEncoderLayer", self_attn=self_attn, ffn=detr_ffn(embed_dims)),
    )


def tiny_vit(embed_dim: int, depth: int = 2, num_heads: int = 4, **kwargs) -> dict:
    """A ViT on 64 px images with 8 px patches and no class token: one level of stride 8."""
    return dict(
        type="ViT",
        img_size=64,
        patch_size=8,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        class_token=False,
        **kwargs,
    )


def tiny_simple_fpn(channels: int, scale_factors: tuple[float, ...] = (1.0, 0.5)) -> dict:
    """ViTDet's simple feature pyramid on the stride-8 ViT output, ``channels`` wide; the
    default scale factors give levels p3 and p4 (strides 8 and 16)."""
    return dict(
        type="SimpleFeaturePyramid",
        in_channels=channels,
        out_channels=channels,
        scale_factors=scale_factors,
        in_stride=8,
    )


def tiny_dino_head(
    num_classes: int,
    in_channels: dict[str, int],
    strides: dict[str, int],
    *,
    num_queries: int,
    num_dn_queries: int | None,
    max_per_img: int,
    embed_dims: int = 32,
    num_heads: int = 4,
    num_points: int = 4,
    enc_layers: int = 1,
    dec_layers: int = 2,
) -> dict:
    """A DINO head on the levels ``in_channels`` / ``strides`` plus one coarser level made by
    its input projection; ``num_dn_queries=None`` turns the denoising queries off."""
    c, levels = embed_dims, len(in_channels) + 1
    deform = deform_attn(c, num_heads, levels, num_points)
    denoising = None
    if num_dn_queries is not None:
        denoising = dict(
            type="CdnQueryGenerator",
            num_classes=num_classes,
            embed_dims=c,
            num_dn_queries=num_dn_queries,
        )
    return dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=c,
        num_queries=num_queries,
        in_channels=in_channels,
        strides=strides,
        num_feature_levels=levels,
        encoder=detr_encoder(c, enc_layers, deform),
        decoder=dict(
            type="DetrDecoder",
            num_layers=dec_layers,
            ref_point_head=dict(
                type="DetrMLP", in_dims=2 * c, hidden_dims=c, out_dims=c, num_layers=2
            ),
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(type="DetrMultiheadAttention", embed_dims=c, num_heads=num_heads),
                cross_attn=deform,
                ffn=detr_ffn(c),
            ),
        ),
        matcher=dict(type="HungarianMatcher"),
        two_stage=True,
        with_box_refine=True,
        mixed_query_selection=True,
        look_forward_twice=True,
        denoising=denoising,
        test_cfg=dict(max_per_img=max_per_img),
    )


def tiny_vit_dino(num_classes: int, embed_dims: int = 32, depth: int = 2, **head) -> dict:
    """A Detector: ``tiny_vit`` (4 heads) -> ``tiny_simple_fpn`` (p3, p4) -> ``tiny_dino_head``
    (``head`` holds its keyword arguments), all ``embed_dims`` wide."""
    c = embed_dims
    return dict(
        type="Detector",
        backbone=tiny_vit(c, depth=depth),
        neck=tiny_simple_fpn(c),
        head=tiny_dino_head(num_classes, dict(p3=c, p4=c), dict(p3=8, p4=16), embed_dims=c, **head),
    )


def overfit(
    model: nn.Module,
    data: dict,
    steps: int,
    lr: float,
    milestone: int,
    max_grad_norm: float | None = None,
) -> None:
    """Train ``model`` in place on one preprocessed batch ``data`` (``inputs``,
    ``data_samples``): ``steps`` AdamW steps (weight decay 1e-4) on the sum of its losses, the
    learning rate divided by 10 after ``milestone`` steps, gradients clipped to
    ``max_grad_norm`` when given."""
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=[milestone], gamma=0.1)
    model.train()
    for _ in range(steps):
        loss = sum(model(**data, mode="loss").values())
        optim.zero_grad()
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optim.step()
        sched.step()


def assert_learns_boxes(model: nn.Module, data: dict, steps: int, milestone: int) -> None:
    """:func:`overfit` ``model`` on ``data`` (lr 1e-3, gradients clipped to 0.1): the summed
    loss must fall below half its start, and every ground-truth box of ``data`` must have the
    top prediction of its label at IoU > 0.5 after."""
    from visionfm.ops.boxes import box_iou

    before = sum(model(**data, mode="loss").values()).item()
    overfit(model, data, steps=steps, lr=1e-3, milestone=milestone, max_grad_norm=0.1)
    model.eval()
    after = sum(model(**data, mode="loss").values()).item()
    assert after < 0.5 * before
    with torch.no_grad():
        out = model(**copy.deepcopy(data), mode="predict")
    for sample, truth in zip(out, data["data_samples"]):
        pred = sample.pred_instances
        for box, label in zip(truth.gt_instances.bboxes, truth.gt_instances.labels):
            top = pred.bboxes[pred.labels == label][:1]
            assert len(top) and box_iou(top, box[None])[0].item() > 0.5


def tiny_grounding_head(
    in_channels: dict[str, int],
    strides: dict[str, int],
    *,
    embed_dims: int = 32,
    num_queries: int = 10,
    max_phrases: int = 8,
    num_dn_queries: int | None = 10,
    max_per_img: int = 10,
    **options,
) -> dict:
    """A Grounding DINO head (one fusion encoder layer, two decoder layers) on the levels
    ``in_channels`` / ``strides`` plus one coarser level; ``options`` go to the head."""
    c, levels = embed_dims, len(in_channels) + 1
    deform = deform_attn(c, 4, levels, 2)
    attn = dict(type="DetrMultiheadAttention", embed_dims=c, num_heads=4)
    denoising = None
    if num_dn_queries is not None:
        denoising = dict(
            type="CdnQueryGenerator",
            num_classes=max_phrases,
            embed_dims=c,
            num_dn_queries=num_dn_queries,
        )
    return dict(
        type="GroundingDINOHead",
        embed_dims=c,
        num_queries=num_queries,
        max_phrases=max_phrases,
        in_channels=in_channels,
        strides=strides,
        num_feature_levels=levels,
        positional_encoding=dict(type="SinePositionalEncoding", num_feats=c // 2, temperature=20),
        encoder=dict(
            type="GroundingEncoder",
            num_layers=1,
            layer=dict(
                type="GroundingEncoderLayer",
                fusion=dict(type="ImageTextFusion", embed_dims=c, num_heads=2, attn_dims=c),
                text_layer=dict(type="TextEnhancerLayer", self_attn=dict(attn), ffn=detr_ffn(c)),
                image_layer=dict(type="DetrEncoderLayer", self_attn=deform, ffn=detr_ffn(c)),
            ),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=2,
            refine_from="raw",
            ref_point_head=dict(
                type="DetrMLP", in_dims=2 * c, hidden_dims=c, out_dims=c, num_layers=2
            ),
            layer=dict(
                type="GroundingDecoderLayer",
                self_attn=dict(attn),
                text_cross_attn=dict(attn),
                cross_attn=deform,
                ffn=detr_ffn(c),
            ),
        ),
        matcher=dict(type="HungarianMatcher"),
        share_pred_heads=True,
        denoising=denoising,
        test_cfg=dict(max_per_img=max_per_img),
        **options,
    )


def tiny_vit_grounding(text_model: str, embed_dims: int = 32, frozen: bool = True, **head) -> dict:
    """A TaskModel: ``tiny_vit`` -> ``tiny_simple_fpn`` -> ``tiny_grounding_head``, with the
    text encoder saved in the folder ``text_model`` (e.g. ``_helpers.write_tiny_bert``)."""
    c = embed_dims
    return dict(
        type="TaskModel",
        text_encoder=dict(type="HFTextEncoder", path=text_model, embed_dims=c, frozen=frozen),
        backbone=tiny_vit(c),
        neck=tiny_simple_fpn(c),
        head=tiny_grounding_head(dict(p3=c, p4=c), dict(p3=8, p4=16), embed_dims=c, **head),
    )


def tiny_lw_detr_head(
    num_classes: int,
    in_channels: dict[str, int],
    strides: dict[str, int],
    *,
    embed_dims: int = 32,
    num_queries: int = 10,
    num_groups: int = 3,
    max_per_img: int = 10,
    project_inputs: bool = False,
    **options,
) -> dict:
    """An LW-DETR / RF-DETR head (no encoder; two decoder layers with 2 self-attention and 4
    cross-attention heads, 2 points; learned reference deltas on the top-k proposals,
    ``bbox_reparam`` boxes, ``num_groups`` query groups) on the levels ``in_channels`` /
    ``strides``; without ``project_inputs`` they must be ``embed_dims`` wide (a projector's).
    ``options`` go to the head."""
    c = embed_dims
    return dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=c,
        num_queries=num_queries,
        num_groups=num_groups,
        in_channels=in_channels,
        strides=strides,
        encoder=None,
        project_inputs=project_inputs,
        decoder=dict(
            type="DetrDecoder",
            num_layers=2,
            box_param="reparam",
            query_pos_frame="padded",
            ref_point_head=dict(
                type="DetrMLP", in_dims=2 * c, hidden_dims=c, out_dims=c, num_layers=2
            ),
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(type="DetrMultiheadAttention", embed_dims=c, num_heads=2),
                cross_attn=deform_attn(c, 4, len(in_channels), 2),
                ffn=detr_ffn(c),
            ),
        ),
        matcher=dict(type="HungarianMatcher"),
        two_stage=True,
        mixed_query_selection=True,
        anchor_deltas=True,
        **{"test_cfg": dict(max_per_img=max_per_img), "cls_loss": "iou_aware", **options},
    )


def tiny_point_backbones() -> dict[str, dict]:
    """``{registered point backbone: tiny config}`` for the point matrix
    (tests/test_every_point_backbone_head.py): width 32, one or two blocks, for clouds of a
    few hundred points."""
    return {
        "PointPatchTransformer": dict(
            type="PointPatchTransformer",
            num_groups=8,
            group_size=16,
            embed_dim=32,
            depth=1,
            num_heads=2,
        ),
        "PointTransformerV3": dict(
            type="PointTransformerV3",
            in_channels=6,  # coord + colour
            grid_size=0.1,
            enc_depths=(1, 1),
            enc_channels=(16, 32),
            enc_num_heads=(2, 2),
            enc_patch_size=(64, 64),
            stem_kernel=3,
            # encoder only, so a classification head reaches every parameter; the decoder is
            # held by tests/backbones/test_point_serialized.py
            cls_mode=True,
        ),
    }
