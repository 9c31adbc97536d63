"""Every registered 2D backbone with every registered neck (and none) and every task head.

The lists come from the ``MODELS`` registry, so the matrix grows when a backbone, neck or
head is registered; a registered one without a tiny configuration below fails
``test_every_registered_part_has_a_tiny_config`` until it gets one. Each combination runs
forward and backward on a batch of two images of different, odd sizes and checks: finite
losses, a finite gradient for every trainable parameter, and predictions in each ORIGINAL
image's coordinates.
"""

from __future__ import annotations

import functools
import inspect
import tempfile
from collections.abc import Callable

import numpy as np
import pytest
import torch
from _helpers import write_tiny_bert
from _tiny_models import (
    deform_attn,
    detr_encoder,
    detr_ffn,
    tiny_dino_head,
    tiny_grounding_head,
    tiny_lw_detr_head,
)
from torch import nn

from visionfm.backbones import Backbone
from visionfm.data.transforms import PackInputs, RandomFlip, Resize
from visionfm.heads import Head
from visionfm.models import TaskModel
from visionfm.registry import MODELS

NUM_CLASSES = 3
WIDTH = 32  # channels every neck outputs
ORI_SHAPES = [(67, 93), (81, 59)]  # (H, W), odd and different

# --------------------------------------------------------------------------- backbones

BACKBONES: dict[str, dict] = {
    "ViT": dict(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, out_indices=(0, 1)),
    "SwinTransformer": dict(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4
    ),
    "SwinTransformerV2": dict(
        embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4
    ),
    "PyramidVisionTransformerV2": dict(
        depths=(1, 1, 1, 1), embed_dims=(16, 16, 32, 32), num_heads=(1, 1, 2, 2), mlp_ratios=2.0
    ),
    "TimmBackbone": dict(model_name="test_convnext"),
}

# --------------------------------------------------------------------------- necks


def _simple_fpn(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    """The ViTDet pyramid (strides 8 to 32) from the backbone's last, coarsest level: the
    level every other one feeds into, so the whole backbone is trained."""
    key = list(channels)[-1]
    stride = strides[key]
    return MODELS.build(
        dict(
            type="SimpleFeaturePyramid",
            in_channels=channels[key],
            in_key=key,
            in_stride=stride,
            out_channels=WIDTH,
            scale_factors=tuple(stride / s for s in (8, 16, 32)),
        )
    )


def _channel_mapper(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    return MODELS.build(
        dict(type="ChannelMapper", in_channels=channels, strides=strides, out_channels=WIDTH)
    )


def _projector(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    """LW-DETR's projector: the backbone's last level to strides / 2 and as it is."""
    return MODELS.build(
        dict(type="MultiScaleProjector", in_channels=channels, strides=strides, out_channels=WIDTH,
             scale_factors=(2.0, 1.0), num_blocks=1, norm_layer="BN")
    )  # fmt: skip


NECKS: dict[str, Callable[[dict, dict], nn.Module] | None] = {
    "none": None,
    "SimpleFeaturePyramid": _simple_fpn,
    "ChannelMapper": _channel_mapper,
    "MultiScaleProjector": _projector,
}

# --------------------------------------------------------------------------- heads


def _dino(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    return MODELS.build(
        tiny_dino_head(
            NUM_CLASSES,
            channels,
            strides,
            num_queries=10,
            num_dn_queries=6,
            max_per_img=10,
            num_heads=2,
            num_points=2,
        )
    )


def _lw_detr(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    """LW-DETR / RF-DETR's head (no encoder, reference deltas, reparam boxes, 3 query groups)
    with its inputs projected to one width, so that it reads any neck's levels."""
    head = tiny_lw_detr_head(NUM_CLASSES, channels, strides, num_queries=6, project_inputs=True)
    return MODELS.build(head)


def _check_instances(sample, height: int, width: int) -> None:
    boxes = sample.pred_instances.bboxes
    assert boxes.shape[-1] == 4 and len(boxes) > 0
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= width).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= height).all()


def _dpt_depth(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    decoder = dict(type="DPTDecoder", in_channels=channels, in_strides=strides, neck_channels=16,
                   channels=16)  # fmt: skip
    return MODELS.build(dict(type="DPTDepthHead", decoder=decoder, head_channels=8))


def _check_depth(sample, height: int, width: int) -> None:
    depth = sample.pred_depth
    assert depth.shape == (height, width) and torch.isfinite(depth).all() and (depth > 0).all()


def _semantic(head_type: str, **kwargs) -> Callable[[dict, dict], nn.Module]:
    """A tiny semantic head reading every level (so the whole backbone gets a gradient)."""

    def build(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
        return MODELS.build(
            dict(type=head_type, num_classes=NUM_CLASSES, in_channels=channels, channels=8,
                 **kwargs)
        )  # fmt: skip

    return build


def _check_sem_seg(sample, height: int, width: int) -> None:
    seg = sample.pred_sem_seg
    assert seg.shape == (height, width) and seg.dtype == torch.long
    assert 0 <= seg.min() and seg.max() < NUM_CLASSES
    assert sample.seg_logits.shape == (NUM_CLASSES, height, width)


def _mask2former(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    c = 32
    levels = min(3, len(channels))
    deform = deform_attn(c, num_heads=2, num_levels=levels, num_points=2)
    ffn = detr_ffn(c)
    attn = dict(type="DetrMultiheadAttention", embed_dims=c, num_heads=2)
    return MODELS.build(
        dict(
            type="Mask2FormerHead",
            num_things_classes=NUM_CLASSES - 1,
            num_stuff_classes=1,
            num_queries=6,
            num_points=64,
            pixel_decoder=dict(
                type="MSDeformAttnPixelDecoder",
                in_channels=channels,
                strides=strides,
                embed_dims=c,
                mask_dims=c,
                num_encoder_levels=levels,
                norm_layer="GN_8",
                encoder=detr_encoder(c, 1, deform),
            ),
            transformer_decoder=dict(
                type="MaskedAttentionDecoder",
                num_layers=2,
                layer=dict(
                    type="MaskedAttentionDecoderLayer", cross_attn=attn, self_attn=attn, ffn=ffn
                ),
            ),
            matcher=dict(type="MaskHungarianMatcher", num_points=64),
            test_cfg=dict(object_mask_thr=0.0, overlap_thr=0.0),
        )
    )


def _check_universal(sample, height: int, width: int) -> None:
    assert sample.pred_sem_seg.shape == (height, width)
    assert sample.pred_panoptic_seg.shape == (height, width)
    assert sample.pred_instances.masks.shape[1:] == (height, width)
    _check_instances(sample, height, width)


def _roi_pose(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    """Alone (no detection head), the RoI pose head takes the whole image as one person;
    it reads every level, concatenated at the finest one."""
    return MODELS.build(
        dict(
            type="RoIPoseHead", person_label=0, in_key=list(channels), roi_size=(8, 6),
            decoder=dict(type="ClassicDecoder", in_channels=sum(channels.values()),
                         out_channels=17, deconv_channels=(8,), deconv_kernels=(4,)),
        )
    )  # fmt: skip


def _check_keypoints(sample, height: int, width: int) -> None:
    _check_instances(sample, height, width)
    kps = sample.pred_instances.keypoints
    assert kps.shape == (len(sample.pred_instances), 17, 3) and torch.isfinite(kps).all()


def _grounding(channels: dict[str, int], strides: dict[str, int]) -> nn.Module:
    """Grounding DINO on the batch's class prompt (its labels index the prompt's names)."""
    return MODELS.build(
        tiny_grounding_head(channels, strides, num_queries=6, num_dn_queries=6, max_per_img=10)
    )


@functools.cache
def _tiny_bert() -> str:
    return write_tiny_bert(tempfile.mkdtemp(prefix="tiny_bert_"))


# head type -> (builder(in_channels, strides), check(prediction, H, W) in original coordinates)
HEADS: dict[str, tuple[Callable[[dict, dict], nn.Module], Callable]] = {
    "UperNetHead": (_semantic("UperNetHead", pool_scales=(1, 2)), _check_sem_seg),
    "SegFormerHead": (_semantic("SegFormerHead"), _check_sem_seg),
    "FCNHead": (_semantic("FCNHead"), _check_sem_seg),
    "DETRHead": (_dino, _check_instances),
    "DETRHead (LW-DETR)": (_lw_detr, _check_instances),
    "GroundingDINOHead": (_grounding, _check_instances),
    "DPTDepthHead": (_dpt_depth, _check_depth),
    "Mask2FormerHead": (_mask2former, _check_universal),
    "RoIPoseHead": (_roi_pose, _check_keypoints),
}

# --------------------------------------------------------------------------- discovery


def _registered(predicate) -> set[str]:
    names = set()
    for name, obj in MODELS.module_dict.items():
        if inspect.isclass(obj) and predicate(obj):
            names.add(name)
    return names


def _is_backbone(cls) -> bool:
    """An image backbone. Point-cloud backbones (``visionfm/backbones/point_*.py``) take packed
    points, not images: tests/backbones/test_point_*.py holds them until the point matrix."""
    point = cls.__module__.startswith("visionfm.backbones.point_")
    return issubclass(cls, Backbone) and cls is not Backbone and not point


def _is_neck(cls) -> bool:
    return cls.__module__.startswith("visionfm.necks.")


def _is_head(cls) -> bool:
    """An image task head: a registered ``visionfm.heads.Head``. Point heads read packed
    point features: tests/test_every_point_backbone_head.py holds them."""
    # top-down heads train on crops: tests/heads/test_vitpose.py
    point = cls.__module__.startswith("visionfm.heads.point.")
    return issubclass(cls, Head) and not getattr(cls, "crops_only", False) and not point


def test_every_registered_part_has_a_tiny_config():
    MODELS.import_from_location()
    missing = (
        [f"backbone {n}" for n in _registered(_is_backbone) - set(BACKBONES)]
        + [f"neck {n}" for n in _registered(_is_neck) - set(NECKS)]
        + [f"head {n}" for n in _registered(_is_head) - set(HEADS)]
    )
    assert not missing, f"add a tiny configuration to {__file__} for: {sorted(missing)}"


# --------------------------------------------------------------------------- the matrix


def _batch() -> list[dict]:
    """Two packed samples at odd original sizes, resized (and the second flipped) so that
    predictions must be mapped back; every ground-truth field a head may need."""
    rng = np.random.default_rng(0)
    packed = []
    for i, (h, w) in enumerate(ORI_SHAPES):
        boxes = np.array([[5, 6, 40, 50], [w / 2, h / 3, w - 3, h - 4]], np.float32)
        masks = np.zeros((2, h, w), np.uint8)
        sem = np.zeros((h, w), np.int64)
        for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
            masks[k, y1:y2, x1:x2] = 1
            sem[y1:y2, x1:x2] = k + 1
        keypoints = np.concatenate(
            [rng.uniform(10, min(h, w) - 10, (2, 17, 2)), np.full((2, 17, 1), 2.0)], -1
        ).astype(np.float32)
        results = dict(
            img=rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
            ori_shape=(h, w),
            img_shape=(h, w),
            gt_bboxes=boxes,
            gt_labels=np.array([0, 2]),
            gt_masks=masks,
            gt_keypoints=keypoints,
            gt_sem_seg=sem,
            gt_depth=rng.uniform(0.5, 5.0, (h, w)).astype(np.float32),
            text="circle . person . triangle .",  # a class prompt: labels index its names
            phrases=["circle", "person", "triangle"],
            phrase_spans=[[[0, 6]], [[9, 15]], [[18, 26]]],
        )
        results = Resize(scale=(72, 72), keep_ratio=True)(results)
        results = RandomFlip(prob=float(i))(results)
        packed.append(PackInputs()(results))
    return packed


def _model(backbone: str, neck: str, head: str) -> TaskModel:
    torch.manual_seed(0)
    # the simple pyramid and the projector read one level (the projector: maps of one stride):
    # the backbone gives only its last one (else the other levels' output norms get no gradient)
    one_level = neck in ("SimpleFeaturePyramid", "MultiScaleProjector")
    last_only = dict(out_indices=(-1,)) if one_level else {}
    bb = MODELS.build(dict(type=backbone, **{**BACKBONES[backbone], **last_only}))
    channels, strides = dict(bb.out_channels), dict(bb.out_strides)
    nk = None
    if NECKS[neck] is not None:
        nk = NECKS[neck](channels, strides)
        channels, strides = dict(nk.out_channels), dict(nk.out_strides)
    build_head, _ = HEADS[head]
    task_head = build_head(channels, strides)
    text_encoder = None
    if task_head.needs_text:
        text_encoder = MODELS.build(dict(type="HFTextEncoder", path=_tiny_bert(), embed_dims=32))
    return TaskModel(
        backbone=bb,
        neck=nk,
        head=task_head,
        data_preprocessor=MODELS.build(dict(type="DataPreprocessor", size_divisor=32)),
        text_encoder=text_encoder,
    )


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("neck", sorted(NECKS))
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_backbone_neck_head(backbone, neck, head):
    model = _model(backbone, neck, head)
    batch = _batch()
    data = model.data_preprocessor(
        dict(inputs=[b["inputs"] for b in batch], data_samples=[b["data_samples"] for b in batch]),
        True,
    )
    model.train()
    losses = model(**data, mode="loss")
    loss = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(loss), {k: float(v) for k, v in losses.items()}
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad[:10]}"
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert not bad, f"non-finite gradients: {bad[:10]}"

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(
                inputs=[b["inputs"] for b in batch], data_samples=[b["data_samples"] for b in batch]
            ),
            False,
        )
        preds = model(**data, mode="predict")
    _, check = HEADS[head]
    for sample, (h, w) in zip(preds, ORI_SHAPES):
        check(sample, h, w)
