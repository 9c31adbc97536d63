"""Mask2Former: masked attention really masks (and falls back to every pixel for an empty
mask), the matcher equals brute force, empty / half-empty / semantic-only ground truth,
predictions at the original image size (padding, resize and flip undone), semantic /
instance / panoptic outputs that agree, and a tiny overfit on synthetic images."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _tiny_models import deform_attn, detr_encoder, detr_ffn
from mmengine.structures import InstanceData

from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR as DIV
from visionfm.data.data_sample import DataSample
from visionfm.data.datasets import CocoPanopticDataset, collate
from visionfm.evaluation import PanopticMetric
from visionfm.heads.segmentation.mask2former import (
    Mask2FormerHead,
    MaskedAttentionDecoder,
    MaskedAttentionDecoderLayer,
    MaskHungarianMatcher,
    instance_inference,
    masked_attention_mask,
    panoptic_inference,
    semantic_inference,
)
from visionfm.heads.segmentation.mask2former.inference import masks_to_boxes
from visionfm.registry import MODELS

C = 32


def _attn() -> dict:
    return dict(type="DetrMultiheadAttention", embed_dims=C, num_heads=2)


def head_cfg(num_queries: int = 6, **overrides) -> dict:
    """Tiny head on inputs p2..p5 (strides 4..32) of 16 channels; 2 things + 1 stuff."""
    deform = deform_attn(C, num_heads=2, num_levels=3, num_points=2)
    cfg = dict(
        type="Mask2FormerHead",
        num_things_classes=2,
        num_stuff_classes=1,
        num_queries=num_queries,
        num_points=64,
        pixel_decoder=dict(
            type="MSDeformAttnPixelDecoder",
            in_channels=dict(p2=16, p3=16, p4=16, p5=16),
            strides=dict(p2=4, p3=8, p4=16, p5=32),
            embed_dims=C,
            mask_dims=C,
            norm_layer="GN_8",
            encoder=detr_encoder(C, 1, deform),
        ),
        transformer_decoder=dict(
            type="MaskedAttentionDecoder",
            num_layers=3,
            layer=dict(
                type="MaskedAttentionDecoderLayer",
                cross_attn=_attn(),
                self_attn=_attn(),
                ffn=detr_ffn(C),
            ),
        ),
        matcher=dict(type="MaskHungarianMatcher", num_points=64),
    )
    cfg.update(overrides)
    return cfg


def build(**overrides) -> Mask2FormerHead:
    torch.manual_seed(0)
    return MODELS.build(head_cfg(**overrides))


def feats(b: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"p{i}": torch.randn(b, 16, h >> i, w >> i, generator=g) for i in (2, 3, 4, 5)}


def sample(shape=(64, 64), masks=(), labels=(), batch=(64, 64), **meta) -> DataSample:
    s = DataSample(metainfo=dict(img_shape=shape, batch_input_shape=batch, **meta))
    m = torch.zeros(len(labels), *shape, dtype=torch.bool)
    for i, (y0, y1, x0, x1) in enumerate(masks):
        m[i, y0:y1, x0:x1] = True
    s.gt_instances = InstanceData(
        labels=torch.tensor(labels, dtype=torch.long), masks=m, bboxes=masks_to_boxes(m)
    )
    return s


# ---------------------------------------------------------------- masked attention


def test_attention_mask_follows_the_prediction_padding_and_empty_rule():
    logits = torch.full((1, 3, 8, 8), -5.0)
    logits[0, 0, :4, :4] = 5.0  # query 0: the top-left quarter
    logits[0, 2, :, 6:] = 5.0  # query 2: only padded columns
    padding = torch.zeros(1, 4, 4, dtype=torch.bool)
    padding[0, :, 3:] = True  # the last level column is padding
    mask = masked_attention_mask(logits, (4, 4), padding)[0, 0].view(3, 4, 4)
    expected0 = torch.zeros(4, 4, dtype=torch.bool)
    expected0[:2, :2] = True
    assert torch.equal(mask[0], expected0)
    assert torch.equal(mask[1], ~padding[0])  # empty mask: every valid pixel
    assert torch.equal(mask[2], ~padding[0])  # foreground only on padding: counts as empty


def _layer() -> MaskedAttentionDecoderLayer:
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type="MaskedAttentionDecoderLayer",
            cross_attn=_attn(),
            self_attn=_attn(),
            ffn=detr_ffn(C),
        )
    ).eval()


def test_masked_cross_attention_ignores_pixels_outside_the_mask():
    layer = _layer()
    g = torch.Generator().manual_seed(1)
    query, query_pos = torch.randn(1, 3, C, generator=g), torch.randn(1, 3, C, generator=g)
    feats, pos = torch.randn(1, 16, C, generator=g), torch.randn(1, 16, C, generator=g)
    allowed = torch.zeros(1, 1, 3, 16, dtype=torch.bool)
    allowed[..., [0, 1, 4, 5]] = True  # every query: the same four pixels
    changed = feats.clone()
    changed[:, 6:] += 10 * torch.randn(1, 10, C, generator=g)  # only pixels outside
    out = layer(query, query_pos, feats, pos, allowed)
    torch.testing.assert_close(layer(query, query_pos, changed, pos, allowed), out)
    # the control: without the mask the same change moves every query
    unmasked = layer(query, query_pos, feats, pos, None)
    assert (layer(query, query_pos, changed, pos, None) - unmasked).abs().amax(-1).amin() > 1e-3


def test_decoder_masks_every_layer_with_the_previous_prediction():
    """The decoder's queries see only the pixels of their predicted masks, at every level."""
    decoder = MaskedAttentionDecoder(_layer(), num_layers=3).eval()
    g = torch.Generator().manual_seed(2)
    levels = [torch.randn(1, C, s, s, generator=g) for s in (2, 4, 8)]
    pos = [torch.randn(1, C, s, s, generator=g) for s in (2, 4, 8)]
    padding = [torch.zeros(1, s, s, dtype=torch.bool) for s in (2, 4, 8)]
    query, query_pos = torch.randn(1, 3, C, generator=g), torch.randn(1, 3, C, generator=g)
    changed = [x.clone() for x in levels]
    for x in changed:  # everything but the top-left quarter of every level
        half = x.shape[-1] // 2
        x[..., half:, :] += 5.0
        x[..., :, half:] += 5.0

    def final_queries(maps, mask_logits):
        seen = []

        def predict(q):
            seen.append(q)
            return q.new_zeros(1, 3, 4), mask_logits

        decoder(query, query_pos, maps, pos, padding, predict)
        return seen[-1]

    quarter = torch.full((1, 3, 16, 16), -5.0)
    quarter[..., :8, :8] = 5.0  # every query's mask: the top-left quarter
    torch.testing.assert_close(final_queries(levels, quarter), final_queries(changed, quarter))
    everywhere = torch.full((1, 3, 16, 16), 5.0)
    moved = final_queries(levels, everywhere) - final_queries(changed, everywhere)
    assert moved.abs().amax() > 1e-3


def test_empty_mask_query_attends_everywhere():
    layer = _layer()
    g = torch.Generator().manual_seed(3)
    query, query_pos = torch.randn(1, 1, C, generator=g), torch.randn(1, 1, C, generator=g)
    feats, pos = torch.randn(1, 16, C, generator=g), torch.randn(1, 16, C, generator=g)
    empty = masked_attention_mask(torch.full((1, 1, 4, 4), -3.0), (4, 4))
    out = layer(query, query_pos, feats, pos, empty)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, layer(query, query_pos, feats, pos, None))


# ---------------------------------------------------------------- matching


def reference_cost(matcher, cls_logits, mask_logits, labels, masks, points) -> torch.Tensor:
    """The matching cost written out pair by pair (sampling with grid_sample directly)."""
    grid = (points * 2 - 1)[None, :, None]  # (1, P, 1, 2)

    def at(m):
        return F.grid_sample(m[None, None].float(), grid, align_corners=False,
                             padding_mode="border")[0, 0, :, 0]  # fmt: skip

    cost = torch.zeros(len(cls_logits), len(labels))
    for q in range(len(cls_logits)):
        x = at(mask_logits[q])
        for t in range(len(labels)):
            y = at(masks[t])
            bce = F.binary_cross_entropy_with_logits(x, y)
            p = x.sigmoid()
            dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
            prob = cls_logits[q].softmax(-1)[labels[t]]
            cost[q, t] = (-matcher.cost_class * prob + matcher.cost_mask * bce
                          + matcher.cost_dice * dice)  # fmt: skip
    return cost


@pytest.mark.parametrize("num_targets", [1, 3, 5])
def test_matcher_equals_brute_force(num_targets):
    matcher = MaskHungarianMatcher(num_points=50)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        cls = torch.randn(1, 5, 4, generator=g) * 2
        logits = torch.randn(1, 5, 8, 8, generator=g) * 3
        labels = torch.randint(0, 3, (num_targets,), generator=g)
        masks = torch.rand(num_targets, 16, 16, generator=g) > 0.6
        target = [dict(labels=labels, masks=masks)]
        ((rows, cols),) = matcher(cls, logits, target, generator=torch.Generator().manual_seed(9))
        points = torch.rand(50, 2, generator=torch.Generator().manual_seed(9))
        cost = reference_cost(matcher, cls[0], logits[0], labels, masks, points)
        torch.testing.assert_close(
            matcher.cost_matrix(cls[0], logits[0], labels, masks, points), cost
        )
        best = min(
            sum(cost[q, t].item() for t, q in enumerate(perm))
            for perm in itertools.permutations(range(5), num_targets)
        )
        assert len(rows) == num_targets and sorted(cols.tolist()) == list(range(num_targets))
        assert cost[rows, cols].sum().item() == pytest.approx(best, abs=1e-5)
    empty = matcher(cls, logits, [dict(labels=labels[:0], masks=masks[:0])])
    assert [len(x) for x in empty[0]] == [0, 0]


# ---------------------------------------------------------------- losses


def test_empty_and_half_empty_ground_truth():
    head = build().train()
    losses = head.loss(feats(), [sample(), sample()])
    assert all(torch.isfinite(v) for v in losses.values())
    for name, value in losses.items():
        if "loss_mask" in name or "loss_dice" in name:
            assert value.item() == 0, name
        else:
            assert value.item() > 0, name
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in head.parameters())
    head.zero_grad()
    half = [sample(masks=[(4, 30, 4, 30), (30, 60, 10, 60)], labels=[0, 2]), sample()]
    losses = head.loss(feats(), half)
    assert losses["loss_mask"].item() > 0 and losses["loss_dice"].item() > 0
    assert {f"d{i}.loss_cls" for i in range(3)} <= set(losses)  # initial + 2 earlier layers
    sum(losses.values()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())


def test_semantic_only_ground_truth_gives_one_target_per_class():
    head = build()
    s = DataSample(metainfo=dict(img_shape=(60, 64), batch_input_shape=(64, 64)))
    sem = torch.full((60, 64), 255, dtype=torch.long)
    sem[:30] = 2
    sem[30:, :20] = 0
    s.gt_sem_seg = sem
    (target,) = head.targets([s])
    assert target["labels"].tolist() == [0, 2]
    assert target["masks"].shape == (2, 64, 64)  # padded to the batch
    assert target["masks"][1, :30].all() and not target["masks"][:, 60:].any()
    assert torch.isfinite(sum(head.loss(feats(1), [s]).values()))


# ---------------------------------------------------------------- inference


def test_predictions_at_original_size_undo_padding_resize_and_flip():
    """Logits over a padded, 2x resized and flipped input map back onto the original."""
    ori = (30, 45)
    resize_flip = np.array([[-2.0, 0, 90], [0, 2.0, 0], [0, 0, 1]])  # x' = 90 - 2x, y' = 2y
    meta = dict(
        ori_shape=ori, img_shape=(60, 90), pad_shape=(64, 96), homography_matrix=resize_flip
    )
    logits = torch.full((1, 16, 24), -10.0)  # stride 4 over the padded input
    logits[0, 2:6, 4:12] = 10.0  # input rows 8..24, cols 16..48
    out = Mask2FormerHead.to_output_size(logits, meta)
    assert out.shape == (1, *ori)
    expected = torch.zeros(ori, dtype=torch.bool)
    expected[4:12, 21:37] = True  # rows 8..24 / 2; cols (90 - 48) / 2 .. (90 - 16) / 2
    inner = expected.clone()
    inner[[4, 11]] = False
    inner[:, [21, 36]] = False
    assert (out[0] > 0)[inner].all() and not (out[0] > 0)[~expected].any()

    head = build().eval()
    samples = [
        sample(shape=(60, 90), batch=(64, 96), ori_shape=ori, scale_factor=(2.0, 2.0)),
        sample(shape=(64, 96), batch=(64, 96), ori_shape=(64, 96)),
    ]
    out = head.predict(feats(2, 64, 96), samples)
    for s, shape in zip(out, (ori, (64, 96))):
        assert s.pred_sem_seg.shape == shape and s.pred_panoptic_seg.shape == shape
        assert s.pred_instances.masks.shape[1:] == shape
        assert s.pred_instances.labels.max() < 2  # instances are things only


def test_semantic_instance_and_panoptic_outputs_agree():
    h, w = 20, 24
    cls = torch.full((5, 4), -6.0)  # classes: thing 0, thing 1, stuff 2, no object
    cls[0, 0] = cls[1, 1] = cls[2, 2] = cls[4, 0] = 6.0
    cls[3, 3] = 6.0  # query 3: no object
    masks = torch.full((5, h, w), -8.0)
    masks[0, 2:8, 2:10] = 8.0
    masks[1, 10:18, 12:22] = 8.0
    masks[2] = 8.0
    masks[2, 2:8, 2:10] = masks[2, 10:18, 12:22] = -8.0
    masks[3] = 8.0  # a confident mask, but "no object"
    masks[4, 2:8, 2:6] = 8.0  # a duplicate of query 0 that loses most of its pixels
    masks[0, 2:8, 2:6] = 9.0
    sem = semantic_inference(cls, masks)
    pan = panoptic_inference(cls, masks, num_things=2)
    inst = instance_inference(cls, masks, num_things=2, max_per_image=2)
    assert (pan >= 0).all()  # everything claimed, nothing void
    assert torch.equal(pan // DIV, sem)
    assert sorted(inst.labels.tolist()) == [0, 1]
    for mask, label in zip(inst.masks, inst.labels):
        segment = pan[mask]
        assert (segment // DIV == label).all() and len(segment.unique()) == 1
        assert (pan == segment[0]).sum() == mask.sum()  # the same pixels
        assert (segment % DIV > 0).all()  # things get instance ids
    assert ((pan // DIV == 2) == (pan == 2 * DIV)).all()  # stuff: instance id 0
    torch.testing.assert_close(inst.bboxes, masks_to_boxes(inst.masks))
    assert len((pan[pan // DIV == 0]).unique()) == 1  # the losing duplicate is dropped


# ---------------------------------------------------------------- learning


OVERFIT_STEPS = 60


def tiny_model_and_data(root) -> tuple[torch.nn.Module, dict]:
    """A tiny ViT (conv stem) + simple pyramid + this head, and two synthetic images resized
    to a long side of 96 px as one training batch."""
    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type="TaskModel",
            data_preprocessor=dict(type="DataPreprocessor", size_divisor=32),
            backbone=dict(
                type="ViT",
                img_size=96,
                patch_size=8,
                embed_dim=48,
                depth=2,
                num_heads=2,
                class_token=False,
                embed_layer="conv",
            ),  # fmt: skip
            neck=dict(
                type="SimpleFeaturePyramid",
                in_channels=48,
                out_channels=16,
                scale_factors=(2.0, 1.0, 0.5),
                in_stride=8,
                top_block=True,
            ),  # fmt: skip
            head=head_cfg(
                num_queries=8,
                num_things_classes=5,
                num_stuff_classes=1,
                num_points=256,
                test_cfg=dict(object_mask_thr=0.5),
            ),
        )
    )
    dataset = CocoPanopticDataset(
        ann_file="annotations/panoptic_train.json",
        data_root=str(root) + "/",
        data_prefix=dict(img="images/train/", seg="panoptic/train/"),
        pipeline=[
            dict(type="LoadImage"),
            dict(type="LoadPanopticAnnotations"),
            dict(type="Resize", scale=(96, 96), keep_ratio=True),
            dict(type="PackInputs"),
        ],
    )
    return model, collate([dataset[0], dataset[1]])


@pytest.mark.slow
def test_tiny_overfit_reaches_panoptic_quality(synthetic_root):
    """A tiny ViT + Mask2Former overfits two synthetic images: PQ > 0.7 on them, at their
    original size, evaluated from the panoptic json and PNGs."""
    model, data = tiny_model_and_data(synthetic_root)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    model.train()
    for _ in range(OVERFIT_STEPS):
        batch = model.data_preprocessor(data, True)
        loss = sum(model(**batch, mode="loss").values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        batch = model.data_preprocessor(data, False)
        out = model(**batch, mode="predict")
    metric = PanopticMetric(
        ann_file=str(synthetic_root / "annotations" / "panoptic_train.json"),
        seg_prefix=str(synthetic_root / "panoptic" / "train"),
    )
    metric.process({}, [s.to_dict() for s in out])
    pq = metric.compute_metrics(metric.results)
    assert pq["PQ"] > 0.7, (pq, time.perf_counter() - start)
