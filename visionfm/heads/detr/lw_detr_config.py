"""The architecture of a Hugging Face LW-DETR / RF-DETR ``config.json`` as our ``model=``
config: ``TaskModel(ViT, MultiScaleProjector, DETRHead)``.

LW-DETR (Chen et al., 2024, "LW-DETR: A Transformer Replacement to YOLO for Real-Time
Detection") and RF-DETR (Robinson et al., 2025, "RF-DETR: Neural Architecture Search for
Real-Time Detection Transformers"): a windowed ViT, a projector fusing several blocks' maps
into one level per scale factor, no transformer encoder, two-stage mixed query selection with
learned reference deltas, ``bbox_reparam`` boxes, Group DETR, IoU-aware BCE. Used by the
registered ``rf_detr`` / ``lw_detr`` published families (``convert_lw_detr``) for
``tools/convert_checkpoint.py`` and the Inferencer on a folder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from visionfm.backbones.vit_hf_detr import vit_kwargs_from_hf_config
from visionfm.weights import CheckpointError

__all__ = ["lw_detr_model_config"]


def _levels(config: Mapping, patch: int) -> dict[str, int]:
    """``{level: stride}`` of the projector's outputs (its scale factors, finest first as
    given; RF-DETR: one level at the patch stride)."""
    scales = config.get("projector_scale_factors") or [1.0]
    strides = [round(patch / s) for s in scales]
    return {f"p{round(math.log2(s))}": s for s in strides}


def lw_detr_model_config(sd: Mapping[str, torch.Tensor], config: Mapping | None) -> dict:
    """Our ``model=`` config dict (``TaskModel``: ViT, ``MultiScaleProjector``, ``DETRHead``)
    for the architecture an LW-DETR / RF-DETR ``config.json`` describes, trained as the
    reference (IoU-aware BCE, Hungarian costs, loss weights, dropout from the config)."""
    if config is None:
        raise CheckpointError(
            "an LW-DETR / RF-DETR checkpoint without its config.json: the architecture "
            "(backbone windows, projector scales) is not in the tensors; pass the folder "
            "with config.json or build the model from a config"
        )
    c, rf = config, config.get("model_type") == "rf_detr"
    backbone = vit_kwargs_from_hf_config(c["backbone_config"])
    width, patch, d = backbone["embed_dim"], backbone["patch_size"], c.get("d_model", 256)
    blocks = {f"block{i}": width for i in backbone["out_indices"]}
    levels = _levels(c, patch)
    neck = dict(
        type="MultiScaleProjector",
        in_channels=blocks,
        strides={k: patch for k in blocks},
        out_channels=d,
        scale_factors=list(c.get("projector_scale_factors") or [1.0]),
        num_blocks=c.get("c2f_num_blocks", 3),
        expansion=c.get("hidden_expansion", 0.5),
        norm_layer=f"LN2d_{c.get('layer_norm_eps', 1e-5)}" if rf else "BN",
        act_layer=c.get("activation_function", "silu"),
        reduce_wide=not rf,
    )
    dropout = c.get("dropout", 0.1 if rf else 0.0)
    deform = dict(
        type="DeformableMemoryAttention",
        embed_dims=d,
        num_heads=c.get("decoder_cross_attention_heads", 16),
        num_levels=len(levels),
        num_points=c.get("decoder_n_points", 4),
    )
    layer = dict(
        type="DetrDecoderLayer",
        self_attn=dict(
            type="DetrMultiheadAttention",
            embed_dims=d,
            num_heads=c.get("decoder_self_attention_heads", 8),
            dropout=c.get("attention_dropout", 0.0),
        ),
        cross_attn=deform,
        ffn=dict(
            type="DetrFFN",
            embed_dims=d,
            feedforward_dims=c.get("decoder_ffn_dim", 2048),
            dropout=dropout,
            act_layer=c.get("decoder_activation_function", "relu"),
        ),
        dropout=dropout,
    )
    num_queries = c.get("num_queries", 300)
    head = dict(
        type="DETRHead",
        num_classes=len(c["id2label"]) if "id2label" in c else c.get("num_labels", 2),
        embed_dims=d,
        num_queries=num_queries,
        num_groups=c.get("group_detr", 13),
        in_channels={k: d for k in levels},
        strides=levels,
        encoder=None,
        project_inputs=False,
        decoder=dict(
            type="DetrDecoder",
            num_layers=c.get("decoder_layers", 3),
            box_param="reparam",
            query_pos_frame="padded",  # as HF: equal on unpadded images, and on padded batches
            ref_point_head=dict(
                type="DetrMLP", in_dims=2 * d, hidden_dims=d, out_dims=d, num_layers=2
            ),
            layer=layer,
        ),
        matcher=dict(
            type="HungarianMatcher",
            cost_class=c.get("class_cost", 2),
            cost_bbox=c.get("bbox_cost", 5),
            cost_giou=c.get("giou_cost", 2),
        ),
        two_stage=True,
        mixed_query_selection=True,
        anchor_deltas=True,
        cls_loss="iou_aware",
        loss_cls=c.get("class_loss_coefficient", 1),
        loss_bbox=c.get("bbox_loss_coefficient", 5),
        loss_giou=c.get("giou_loss_coefficient", 2),
        focal_alpha=c.get("focal_alpha", 0.25),
        # HF's post-processing: RfDetrImageProcessor top_k = num_queries, LW-DETR's 100
        test_cfg=dict(max_per_img=num_queries if rf else 100),
    )
    return dict(type="TaskModel", backbone=backbone, neck=neck, head=head)
