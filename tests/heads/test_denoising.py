"""DINO contrastive denoising: attention mask, query layout, label and box noise."""

from __future__ import annotations

import pytest
import torch

from visionfm.heads.detr import CdnQueryGenerator
from visionfm.heads.detr.denoising import denoising_attn_mask
from visionfm.ops.boxes import box_cxcywh_to_xyxy


def test_attn_mask_two_groups_by_hand():
    # 2 groups of (1 positive, 1 negative) and 3 matching queries; True = may attend
    mask = denoising_attn_mask(num_groups=2, max_gt=1, num_matching=3)
    assert mask.shape == (1, 1, 7, 7)
    expected = torch.tensor(
        [  # keys: g0+ g0- g1+ g1- m0 m1 m2
            [1, 1, 0, 0, 1, 1, 1],  # group 0 positive
            [1, 1, 0, 0, 1, 1, 1],  # group 0 negative
            [0, 0, 1, 1, 1, 1, 1],  # group 1 positive
            [0, 0, 1, 1, 1, 1, 1],  # group 1 negative
            [0, 0, 0, 0, 1, 1, 1],  # matching queries never see denoising queries
            [0, 0, 0, 0, 1, 1, 1],
            [0, 0, 0, 0, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask[0, 0], expected)


def test_attn_mask_hides_padding_slots():
    # max_gt = 2; image 0 has 2 boxes, image 1 has 1: its slot 1 of each half is padding
    mask = denoising_attn_mask(num_groups=2, max_gt=2, num_matching=2, num_gt=torch.tensor([2, 1]))
    assert mask.shape == (2, 1, 10, 10)
    assert mask[0, 0, :8, :8].sum() == 2 * 4 * 4  # two 4x4 diagonal blocks
    padding = [1, 3, 5, 7]  # slot 1 of every half group
    assert not mask[1, 0][:, padding].any()
    real = [0, 2, 4, 6, 8, 9]
    assert torch.equal(mask[1, 0][:, real], mask[0, 0][:, real])
    assert mask.any(-1).all()  # every query keeps something to attend


def _targets(num_boxes: list[int], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in num_boxes:
        centre = 0.3 + 0.4 * torch.rand(n, 2, generator=g)
        size = 0.05 + 0.15 * torch.rand(n, 2, generator=g)  # corners stay inside [0, 1]
        out.append(
            dict(labels=torch.randint(0, 5, (n,), generator=g), boxes=torch.cat((centre, size), 1))
        )
    return out


def test_layout_and_no_ground_truth():
    gen = CdnQueryGenerator(
        num_classes=5, embed_dims=8, num_dn_queries=6, label_flip_prob=0.0, box_noise_scale=0.0
    )
    targets = _targets([3, 1])
    query, reference, mask, meta = gen(targets, num_matching=4)
    assert meta == dict(num_groups=2, max_gt=3)  # 6 // 3 groups of 2 * 3 slots
    assert query.shape == (2, 12, 8) and reference.shape == (2, 12, 4)
    assert mask.shape == (2, 1, 16, 16)
    for g in range(2):  # without noise, positive and negative slot j hold box j
        for half in range(2):
            start = g * 6 + half * 3
            torch.testing.assert_close(reference[0, start : start + 3], targets[0]["boxes"])
            torch.testing.assert_close(reference[1, start : start + 1], targets[1]["boxes"])
            expected = gen.label_embed(targets[0]["labels"])
            torch.testing.assert_close(query[0, start : start + 3], expected)
    assert gen([dict(labels=torch.zeros(0, dtype=torch.long), boxes=torch.zeros(0, 4))], 4) is None
    assert CdnQueryGenerator(5, 8, num_groups=3)(targets, 4)[3]["num_groups"] == 3


def test_label_noise_rate():
    torch.manual_seed(0)
    gen = CdnQueryGenerator(num_classes=5, embed_dims=8, label_flip_prob=0.25)
    labels = torch.randint(0, 5, (20000,))
    noised = gen.noise_labels(labels)
    rate = (noised != labels).float().mean().item()
    assert rate == pytest.approx(0.25, abs=0.015)
    assert noised.min() >= 0 and noised.max() < 5
    assert torch.equal(CdnQueryGenerator(5, 8, label_flip_prob=0.0).noise_labels(labels), labels)


@pytest.mark.parametrize("scale", [1.0, 0.4])
def test_box_noise_bounds(scale):
    """Positives move each corner by less than scale / 2 of the box size, negatives by
    between scale / 2 and scale."""
    torch.manual_seed(0)
    gen = CdnQueryGenerator(num_classes=5, embed_dims=8, box_noise_scale=scale)
    boxes = _targets([4000])[0]["boxes"]
    negative = torch.arange(len(boxes)) % 2 == 1
    noised = gen.noise_boxes(boxes, negative)
    shift = (box_cxcywh_to_xyxy(noised) - box_cxcywh_to_xyxy(boxes)).abs()
    rel = shift / boxes[:, 2:].repeat(1, 2)  # (N, 4) relative to w, h, w, h
    eps = 1e-4
    assert rel[~negative].max() < scale / 2 + eps
    assert rel[negative].min() > scale / 2 - eps and rel[negative].max() < scale + eps
    assert rel[~negative].mean() == pytest.approx(scale / 4, rel=0.05)  # uniform in [0, 1/2)
    assert rel[negative].mean() == pytest.approx(3 * scale / 4, rel=0.05)


def test_noised_boxes_stay_in_image():
    torch.manual_seed(0)
    gen = CdnQueryGenerator(num_classes=5, embed_dims=8, box_noise_scale=1.0)
    boxes = torch.tensor([[0.05, 0.05, 0.1, 0.1], [0.95, 0.5, 0.1, 0.9]]).repeat(50, 1)
    xyxy = box_cxcywh_to_xyxy(gen.noise_boxes(boxes, torch.arange(100) % 2 == 0))
    assert xyxy.min() >= 0 and xyxy.max() <= 1
