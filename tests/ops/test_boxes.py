"""visionfm.ops.boxes held against torchvision.ops, plus round trips and degenerate boxes."""

from __future__ import annotations

import pytest
import torch
import torchvision.ops as tvo

from visionfm.ops.boxes import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    clip_boxes,
    generalized_box_iou,
    generalized_box_iou_paired,
    inverse_sigmoid,
    rescale_boxes,
)


def random_boxes(n: int, seed: int, degenerate: bool = True) -> torch.Tensor:
    """(n, 4) xyxy in [0, 100]; with ``degenerate`` about a third have zero width or height
    and a few are single points."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 80
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * 40 + 0.5
    if degenerate:
        wh[0::3, 0] = 0  # zero width
        wh[1::5, 1] = 0  # zero height
        wh[2::7] = 0  # points
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("seed", range(3))
def test_box_iou_matches_torchvision(seed):
    a, b = random_boxes(23, seed), random_boxes(17, seed + 100)
    b[:5] = a[:5]  # identical pairs, including identical degenerate boxes (0 / 0)
    iou, union = box_iou(a, b)
    ref = tvo.box_iou(a, b)
    assert iou.shape == (23, 17) and union.shape == (23, 17)
    assert torch.isfinite(iou).all()
    finite = torch.isfinite(ref)
    assert not finite.all(), "the case should include 0 / 0 pairs"
    torch.testing.assert_close(iou[finite], ref[finite])
    assert (iou[~finite] == 0).all()
    area = tvo.box_area(a)[:, None] + tvo.box_area(b)[None, :]
    torch.testing.assert_close(union, area - iou * union)


@pytest.mark.parametrize("seed", range(3))
def test_generalized_box_iou_matches_torchvision(seed):
    a, b = random_boxes(19, seed), random_boxes(11, seed + 7)
    b[:4] = a[:4]
    giou = generalized_box_iou(a, b)
    ref = tvo.generalized_box_iou(a, b)
    assert giou.shape == (19, 11)
    assert torch.isfinite(giou).all()
    assert (giou >= -1).all() and (giou <= 1).all()
    finite = torch.isfinite(ref)
    assert not finite.all()
    torch.testing.assert_close(giou[finite], ref[finite])


def test_generalized_box_iou_paired_is_the_diagonal():
    a, b = random_boxes(31, 0), random_boxes(31, 1)
    paired = generalized_box_iou_paired(a, b)
    assert paired.shape == (31,)
    torch.testing.assert_close(paired, generalized_box_iou(a, b).diagonal())
    ref = tvo.generalized_box_iou(a, b).diagonal()
    finite = torch.isfinite(ref)
    torch.testing.assert_close(paired[finite], ref[finite])
    with pytest.raises(ValueError, match="equal shapes"):
        generalized_box_iou_paired(a, b[:3])


def test_degenerate_identical_boxes_have_finite_gradients():
    a = torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.1, 0.1, 0.1, 0.4]], requires_grad=True)
    b = torch.tensor([[0.3, 0.3, 0.3, 0.3], [0.1, 0.1, 0.1, 0.4]])
    out = generalized_box_iou_paired(a, b).sum() + generalized_box_iou(a, b).sum()
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(a.grad).all()


def test_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 6.0, 2.0]])
    iou, union = box_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([[1 / 7, 0.0]]))
    torch.testing.assert_close(union, torch.tensor([[7.0, 8.0]]))
    # enclosing boxes: 3x3 = 9 and 6x2 = 12
    torch.testing.assert_close(
        generalized_box_iou(a, b), torch.tensor([[1 / 7 - 2 / 9, 0.0 - 4 / 12]])
    )


@pytest.mark.parametrize("in_fmt,out_fmt", [("xyxy", "cxcywh"), ("cxcywh", "xyxy")])
def test_convert_matches_torchvision(in_fmt, out_fmt):
    boxes = random_boxes(40, 3)
    ours = box_xyxy_to_cxcywh if in_fmt == "xyxy" else box_cxcywh_to_xyxy
    torch.testing.assert_close(ours(boxes), tvo.box_convert(boxes, in_fmt, out_fmt))


def test_round_trips_and_batch_shapes():
    boxes = random_boxes(24, 4).reshape(2, 3, 4, 4)  # any leading shape
    torch.testing.assert_close(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(boxes)), boxes)
    torch.testing.assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(boxes)), boxes)
    flat = boxes.reshape(-1, 4)
    torch.testing.assert_close(box_area(boxes).reshape(-1), tvo.box_area(flat))


def test_rescale_boxes_single_size_round_trip():
    h, w = 480, 640
    xyxy = tvo.clip_boxes_to_image(random_boxes(20, 5) * 6, (h, w))
    norm = rescale_boxes(xyxy, (h, w), to="normalized")
    assert norm.min() >= 0 and norm.max() <= 1
    expected = tvo.box_convert(xyxy, "xyxy", "cxcywh") / torch.tensor([w, h, w, h])
    torch.testing.assert_close(norm, expected.to(norm))
    torch.testing.assert_close(rescale_boxes(norm, (h, w), to="absolute"), xyxy)


def test_rescale_boxes_per_image_sizes():
    norm = torch.rand(2, 5, 4)  # (B, Q, 4) cxcywh
    sizes = torch.tensor([[100, 200], [50, 10]])  # (B, 2) (h, w)
    out = rescale_boxes(norm, sizes, to="absolute")
    for i, (h, w) in enumerate(sizes.tolist()):
        torch.testing.assert_close(out[i], rescale_boxes(norm[i], (h, w), to="absolute"))
    assert out[1, :, 0::2].abs().max() <= 10 * 1.5  # x scaled by w=10, not h=50
    with pytest.raises(ValueError, match="'absolute' or 'normalized'"):
        rescale_boxes(norm, sizes, to="pixels")
    with pytest.raises(ValueError, match="end in"):
        rescale_boxes(norm, torch.ones(2, 3), to="absolute")


def test_clip_boxes_matches_torchvision():
    boxes = random_boxes(30, 6) * 3 - 50
    torch.testing.assert_close(
        clip_boxes(boxes, (120, 90)), tvo.clip_boxes_to_image(boxes, (120, 90))
    )


def test_inverse_sigmoid():
    x = torch.linspace(-8, 8, 33, dtype=torch.float64)
    torch.testing.assert_close(inverse_sigmoid(x.sigmoid(), eps=1e-12), x)
    edges = inverse_sigmoid(torch.tensor([0.0, 1.0, -0.5, 1.5]), eps=1e-5)
    assert torch.isfinite(edges).all()
    assert edges[0] < -11 and edges[1] > 11 and edges[2] == edges[0] and edges[3] == edges[1]
