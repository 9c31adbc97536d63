"""DETRHead in its DETR / Deformable DETR / DINO configurations: losses with empty and
half-empty ground truth, gradients reaching every parameter, padding invariance,
look-forward-twice, inference in original-image coordinates, the input projection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from visionfm.data.data_sample import DataSample
from visionfm.heads.detr import DETRHead
from visionfm.necks import ChannelMapper
from visionfm.ops.boxes import box_iou
from visionfm.ops.geometry import boxes_to_original
from visionfm.registry import MODELS

C, NUM_CLASSES = 32, 3


def _attn(kind: str, levels: int) -> dict:
    if kind == "global":
        return dict(type="GlobalMemoryAttention", embed_dims=C, num_heads=2)
    return dict(
        type="DeformableMemoryAttention", embed_dims=C, num_heads=2, num_levels=levels, num_points=2
    )


def head_cfg(variant: str, levels: int = 3, num_queries: int = 8, **overrides) -> dict:
    """Tiny configs of the variants; inputs p3 (stride 8) and p4 (stride 16) of 16 channels."""
    kind = "global" if variant == "detr" else "deformable"
    if variant == "detr":
        levels = 1
    ffn = dict(type="DetrFFN", embed_dims=C, feedforward_dims=2 * C)
    cfg = dict(
        type="DETRHead",
        num_classes=NUM_CLASSES,
        embed_dims=C,
        num_queries=num_queries,
        in_channels=dict(p4=16) if variant == "detr" else dict(p3=16, p4=16),
        strides=dict(p4=16) if variant == "detr" else dict(p3=8, p4=16),
        num_feature_levels=levels,
        encoder=dict(
            type="DetrEncoder",
            num_layers=1,
            layer=dict(type="DetrEncoderLayer", self_attn=_attn(kind, levels), ffn=ffn),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=2,
            norm_layer="LN_1e-5" if variant in ("detr", "dino") else None,
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(type="DetrMultiheadAttention", embed_dims=C, num_heads=2),
                cross_attn=_attn(kind, levels),
                ffn=ffn,
            ),
        ),
        matcher=dict(type="HungarianMatcher"),
    )
    if variant == "deformable_two_stage":
        cfg.update(two_stage=True, with_box_refine=True)
    if variant in ("dino", "dn_deformable"):
        cfg["decoder"]["ref_point_head"] = dict(
            type="DetrMLP", in_dims=2 * C, hidden_dims=C, out_dims=C, num_layers=2
        )
        cfg.update(
            with_box_refine=True,
            look_forward_twice=True,
            denoising=dict(
                type="CdnQueryGenerator", num_classes=NUM_CLASSES, embed_dims=C, num_groups=2
            ),
        )
    if variant == "dino":  # DINO's queries: top-k proposals and learned content
        cfg.update(two_stage=True, mixed_query_selection=True)
    cfg.update(overrides)
    return cfg


# dn_deformable: learned anchor boxes (DAB) with denoising, without two-stage selection
VARIANTS = ["detr", "deformable", "deformable_two_stage", "dino", "dn_deformable"]


def sample(h: int, w: int, boxes=(), labels=(), batch=None) -> DataSample:
    s = DataSample(
        metainfo=dict(img_shape=(h, w), ori_shape=(h, w), batch_input_shape=batch or (h, w))
    )
    s.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
    )
    return s


def feats(b: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "p3": torch.randn(b, 16, h // 8, w // 8, generator=g),
        "p4": torch.randn(b, 16, h // 16, w // 16, generator=g),
    }


def build(variant: str, **overrides) -> DETRHead:
    torch.manual_seed(0)
    return MODELS.build(head_cfg(variant, **overrides))


BOXES = [[4.0, 6.0, 30.0, 40.0], [36.0, 20.0, 60.0, 58.0]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_empty_ground_truth_zero_box_losses(variant):
    head = build(variant).train()
    losses = head.loss(feats(), [sample(64, 64), sample(64, 64)])
    assert all(torch.isfinite(v) for v in losses.values())
    for name, value in losses.items():
        if "loss_bbox" in name or "loss_giou" in name:
            assert value.item() == 0, name
    assert losses["loss_cls"].item() > 0
    if variant in ("dino", "dn_deformable"):  # same keys without boxes (no denoising queries)
        assert "dn_loss_cls" in losses and "d0.dn_loss_bbox" in losses
    sum(losses.values()).backward()


@pytest.mark.parametrize("variant", VARIANTS)
def test_half_empty_batch(variant):
    head = build(variant).train()
    losses = head.loss(feats(), [sample(64, 64, BOXES, [0, 2]), sample(64, 64)])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() > 0 and losses["loss_giou"].item() > 0
    expected = {"loss_cls", "d0.loss_cls"}
    expected |= {"enc_loss_cls"} if variant in ("deformable_two_stage", "dino") else set()
    denoising = variant in ("dino", "dn_deformable")
    expected |= {"dn_loss_bbox", "d0.dn_loss_giou"} if denoising else set()
    assert expected <= set(losses)
    if denoising:
        assert losses["dn_loss_bbox"].item() > 0


@pytest.mark.slow
def test_detr_queries_split_over_the_objects_of_two_images():
    """Plain DETR starts slowly (its synthetic config still predicts one box from every query
    after 5 epochs), so this checks it can learn at all: on fixed features of two images,
    300 AdamW steps make its top-scored predictions the images' boxes with their labels."""
    head = build("detr", num_queries=10).train()
    x = feats()
    samples = [sample(64, 64, BOXES, [0, 2]), sample(64, 64, BOXES[:1], [1])]
    optim = torch.optim.AdamW(head.parameters(), lr=1e-3)
    for _ in range(300):
        loss = sum(head.loss(x, samples).values())
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 0.1)
        optim.step()
    with torch.no_grad():
        preds = head.eval().predict(x, samples)
    for pred, s in zip(preds, samples, strict=True):
        gt, found = s.gt_instances, pred.pred_instances
        top = found.scores.argsort(descending=True)[: len(gt.labels)]
        iou, _ = box_iou(found.bboxes[top], gt.bboxes)
        best = iou.max(dim=1)  # each top prediction's best-matching ground truth
        assert (best.values > 0.7).all(), iou
        assert sorted(zip(best.indices.tolist(), found.labels[top].tolist())) == list(
            enumerate(gt.labels.tolist())
        )


# Parameters that get no gradient by design, per variant. DETR's first decoder layer
# attends among all-zero content queries: its value projection multiplies zeros.
NO_GRAD: dict[str, set[str]] = {v: set() for v in VARIANTS}
NO_GRAD["detr"] = {"decoder.layers.0.self_attn.v_proj.weight"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_gets_a_gradient(variant):
    head = build(variant).train()
    with torch.no_grad():  # zero-initialised last layers would stop gradients at step one
        for p in head.parameters():
            if (p == 0).all():
                p.normal_(std=0.01)
    losses = head.loss(feats(), [sample(64, 64, BOXES, [0, 2]), sample(64, 64, BOXES[:1], [1])])
    sum(losses.values()).backward()
    missing = [
        n
        for n, p in head.named_parameters()
        if (p.grad is None or not p.grad.abs().sum() > 0) and n not in NO_GRAD[variant]
    ]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


@pytest.mark.parametrize("variant", ["deformable_two_stage", "dino"])
def test_padding_does_not_change_predictions(variant):
    """An image's outputs are the same alone and padded next to a larger image."""
    head = build(variant, input_norm=None).eval()  # GroupNorm would mix padding statistics
    big = feats(1, 64, 96, seed=1)
    small = feats(1, 32, 48, seed=2)
    batch = {k: big[k].clone().repeat(2, 1, 1, 1) for k in big}
    for k, v in small.items():  # image 1: the small one, the rest random "padding" features
        batch[k][1, :, : v.shape[2], : v.shape[3]] = v[0]
    alone = head(small, [sample(32, 48)])
    padded = head(batch, [sample(64, 96, batch=(64, 96)), sample(32, 48, batch=(64, 96))])
    torch.testing.assert_close(padded["logits"][:, 1], alone["logits"][:, 0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(padded["boxes"][:, 1], alone["boxes"][:, 0], atol=1e-4, rtol=1e-4)


def test_padding_leak_is_detected():
    """The padding test above can fail: an unmasked memory changes the padded outputs."""
    head = build("deformable_two_stage", input_norm=None).eval()
    big, small = feats(1, 64, 96, seed=1), feats(1, 32, 48, seed=2)
    batch = {k: big[k].repeat(2, 1, 1, 1) for k in big}
    for k, v in small.items():
        batch[k][1, :, : v.shape[2], : v.shape[3]] = v[0]
    alone = head(small, [sample(32, 48)])
    no_mask = head(batch, [sample(64, 96), sample(64, 96)])  # padding not declared
    assert not torch.allclose(no_mask["boxes"][:, 1], alone["boxes"][:, 0], atol=1e-4)


@pytest.mark.parametrize("look_forward_twice", [True, False])
def test_look_forward_twice_trains_previous_box_head(look_forward_twice):
    """Layer 1's box loss reaches layer 0's box head only with look-forward-twice."""
    head = build("dino", look_forward_twice=look_forward_twice).train()
    with torch.no_grad():
        for p in head.parameters():
            if (p == 0).all():
                p.normal_(std=0.01)
    out = head(feats(), [sample(64, 64), sample(64, 64)])
    out["boxes"][1].sum().backward()  # the last (second) layer's boxes only
    grad = head.box_heads[0].layers[-1].weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == look_forward_twice


def test_invalid_combinations_fail_at_construction():
    with pytest.raises(ValueError, match="two_stage"):
        MODELS.build(head_cfg("deformable", mixed_query_selection=True))
    with pytest.raises(ValueError, match="ref_point_head"):
        MODELS.build(
            head_cfg(
                "deformable", denoising=dict(type="CdnQueryGenerator", num_classes=3, embed_dims=C)
            )
        )
    with pytest.raises(ValueError, match="num_levels"):
        cfg = head_cfg("deformable", levels=3)
        cfg["num_feature_levels"] = 4
        MODELS.build(cfg)
    with pytest.raises(ValueError, match="with_box_refine"):
        MODELS.build(head_cfg("deformable", look_forward_twice=True))


def test_two_stage_needs_enough_tokens():
    head = build("dino", num_queries=24, input_norm=None).eval()
    with pytest.raises(ValueError, match="num_queries"):
        head(feats(1, 32, 32), [sample(32, 32)])  # 4 * 4 + 2 * 2 + 1 = 21 tokens < 24 queries


# ------------------------------------------------------------------ inference
def _homography(scale: float, flip_width: float | None, crop: tuple[float, float]) -> np.ndarray:
    """Original -> input: scale, then horizontal flip within ``flip_width``, then crop."""
    s = np.diag([scale, scale, 1.0])
    f = np.array([[-1, 0, flip_width], [0, 1, 0], [0, 0, 1]]) if flip_width else np.eye(3)
    c = np.array([[1, 0, -crop[0]], [0, 1, -crop[1]], [0, 0, 1]])
    return (c @ f @ s).astype(np.float32)


def test_boxes_to_original_inverts_scale_flip_crop():
    # original 100 x 200 (h, w), scaled x2 -> 200 x 400, flipped, cropped at (x=50, y=20)
    meta = dict(homography_matrix=_homography(2.0, 400.0, (50.0, 20.0)), ori_shape=(100, 200))
    # original box (10, 30, 60, 80): scaled (20, 60, 120, 160); flipped x -> (280, 60, 380,
    # 160); cropped -> (230, 40, 330, 140)
    out = boxes_to_original(torch.tensor([[230.0, 40.0, 330.0, 140.0]]), meta)
    torch.testing.assert_close(out, torch.tensor([[10.0, 30.0, 60.0, 80.0]]))
    # clipped to the original image
    out = boxes_to_original(torch.tensor([[-100.0, 40.0, 330.0, 400.0]]), meta)
    torch.testing.assert_close(out, torch.tensor([[10.0, 30.0, 200.0, 100.0]]))
    # scale_factor only
    meta = dict(scale_factor=(2.0, 4.0), ori_shape=(100, 200))
    out = boxes_to_original(torch.tensor([[20.0, 40.0, 60.0, 80.0]]), meta)
    torch.testing.assert_close(out, torch.tensor([[10.0, 10.0, 30.0, 20.0]]))


def test_predict_returns_original_coordinates():
    """A known head output (normalised boxes of the 150 x 200 input) comes back in the
    original image, through the sample's scale / flip / crop homography."""
    head = build("deformable", num_queries=4)
    meta = dict(
        img_shape=(150, 200),
        ori_shape=(100, 200),
        homography_matrix=_homography(2.0, 400.0, (50.0, 20.0)),
    )
    logits = torch.full((4, NUM_CLASSES), -10.0)
    logits[2, 1] = 3.0  # query 2, class 1: the only confident one
    boxes = torch.full((4, 4), 0.5)
    # input box (230, 40, 330, 140) of the 200 x 150 input, as normalised cxcywh
    boxes[2] = torch.tensor([280 / 200, 90 / 150, 100 / 200, 100 / 150])
    head.test_cfg.update(max_per_img=5, score_thr=0.5)
    pred = head.postprocess(logits, boxes, meta)
    assert pred.labels.tolist() == [1]
    assert pred.scores[0].item() == pytest.approx(1 / (1 + math.exp(-3.0)), rel=1e-5)
    torch.testing.assert_close(pred.bboxes, torch.tensor([[10.0, 30.0, 60.0, 80.0]]))
    unscaled = head.postprocess(logits, boxes, meta, rescale=False)
    torch.testing.assert_close(unscaled.bboxes, torch.tensor([[230.0, 40.0, 330.0, 140.0]]))


def test_predict_topk_over_queries_and_classes():
    head = build("detr", num_queries=6).eval()
    head.test_cfg.update(max_per_img=10)
    samples = head.predict(feats(), [sample(64, 64), sample(64, 48)])
    for s, w in zip(samples, (64, 48)):
        pred = s.pred_instances
        assert len(pred) == 10 and pred.bboxes.shape == (10, 4)
        assert (pred.scores[:-1] >= pred.scores[1:]).all()
        assert pred.bboxes[:, 2].max() <= w and pred.labels.max() < NUM_CLASSES


# ------------------------------------------------------------------ parts
def test_channel_mapper_levels_and_extra_levels():
    mapper = ChannelMapper(
        dict(c3=8, c4=16), dict(c3=8, c4=16), out_channels=32, num_extra_levels=2
    )
    out = mapper(
        {
            "c2": torch.randn(1, 4, 32, 32),
            "c3": torch.randn(1, 8, 16, 16),
            "c4": torch.randn(1, 16, 8, 8),
        }
    )
    assert list(out) == list(mapper.out_channels) == ["c3", "c4", "p5", "p6"]
    assert mapper.out_strides == dict(c3=8, c4=16, p5=32, p6=64)
    assert [tuple(v.shape) for v in out.values()] == [
        (1, 32, 16, 16),
        (1, 32, 8, 8),
        (1, 32, 4, 4),
        (1, 32, 2, 2),
    ]
    listed = ChannelMapper([8, 16], [8, 16], out_channels=32)  # the last two input levels
    out = listed(
        {
            "c2": torch.randn(1, 4, 32, 32),
            "c3": torch.randn(1, 8, 16, 16),
            "c4": torch.randn(1, 16, 8, 8),
        }
    )
    assert list(out) == list(listed.out_strides) == ["p3", "p4"]
