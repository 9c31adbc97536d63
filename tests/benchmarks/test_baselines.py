"""The time-to-accuracy baselines (benchmarks/hf_deformable_detr.py, benchmarks/hf_rt_detr.py):
the encoder proposal loss against a hand computation, the heads it trains, RT-DETR's EMA and
weight-decay groups against their formulas."""

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from scipy.optimize import linear_sum_assignment

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from hf_deformable_detr import (  # noqa: E402
    build_hf_model,
    encoder_proposal_loss,
    original_loss,
)
from hf_deformable_detr import param_groups as deformable_groups  # noqa: E402
from hf_rt_detr import ModelEMA, param_groups  # noqa: E402

CONFIG = SimpleNamespace(
    class_cost=2.0, bbox_cost=5.0, giou_cost=2.0, num_labels=3, focal_alpha=0.25
)


def _giou(a: torch.Tensor, b: torch.Tensor) -> float:
    """GIoU of two cx, cy, w, h boxes, written out."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return float(inter / union - (hull - union) / hull)


def _hand_proposal_loss(logits, coord_logits, labels, alpha=0.25) -> dict:
    """One class for every target: Hungarian matching on 2 x focal cost of class 0 + 5 x L1
    + 2 x (-GIoU), then focal over every (token, class), L1, 1 - GIoU, each / #boxes."""
    prob, boxes = logits.sigmoid().double(), coord_logits.sigmoid().double()
    num_boxes = sum(len(t["boxes"]) for t in labels)
    focal_target = torch.zeros_like(prob)
    l1 = giou = 0.0
    for b, target in enumerate(labels):
        gt = target["boxes"].double()
        cost = torch.zeros(prob.shape[1], len(gt), dtype=torch.float64)
        for q in range(prob.shape[1]):
            p = prob[b, q, 0]
            pos = alpha * (1 - p) ** 2 * -torch.log(p + 1e-8)
            neg = (1 - alpha) * p**2 * -torch.log(1 - p + 1e-8)
            for j in range(len(gt)):
                cost[q, j] = 2 * (pos - neg) + 5 * (boxes[b, q] - gt[j]).abs().sum()
                cost[q, j] -= 2 * _giou(boxes[b, q], gt[j])
        rows, cols = linear_sum_assignment(cost.numpy())
        for q, j in zip(rows, cols):
            focal_target[b, q, 0] = 1
            l1 += float((boxes[b, q] - gt[j]).abs().sum())
            giou += 1 - _giou(boxes[b, q], gt[j])
    p_t = prob * focal_target + (1 - prob) * (1 - focal_target)
    ce = torch.nn.functional.binary_cross_entropy(prob, focal_target, reduction="none")
    weight = alpha * focal_target + (1 - alpha) * (1 - focal_target)
    focal = float((weight * ce * (1 - p_t) ** 2).sum())
    return dict(
        loss_ce_enc=focal / num_boxes, loss_bbox_enc=l1 / num_boxes, loss_giou_enc=giou / num_boxes
    )


def _labels() -> list[dict]:
    return [
        dict(class_labels=torch.tensor([1, 2]), boxes=torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.7, 0.3, 0.4]])),
        dict(class_labels=torch.tensor([0]), boxes=torch.tensor([[0.5, 0.5, 0.4, 0.3]])),
    ]  # fmt: skip


def test_encoder_proposal_loss_equals_hand_computation():
    torch.manual_seed(0)
    logits, coord = torch.randn(2, 12, 3), torch.randn(2, 12, 4)
    got = encoder_proposal_loss(logits, coord, _labels(), CONFIG)
    want = _hand_proposal_loss(logits, coord, _labels())
    assert set(got) == set(want)
    for key, value in want.items():
        assert float(got[key]) == pytest.approx(value, rel=1e-4), key
    # class-agnostic: the targets' classes change nothing; their boxes do
    relabelled = [dict(t, class_labels=(t["class_labels"] + 1) % 3) for t in _labels()]
    again = encoder_proposal_loss(logits, coord, relabelled, CONFIG)
    assert all(float(again[k]) == pytest.approx(float(got[k])) for k in got)
    moved = [dict(t, boxes=t["boxes"] * 0.5) for t in _labels()]
    assert float(encoder_proposal_loss(logits, coord, moved, CONFIG)["loss_bbox_enc"]) != (
        pytest.approx(float(got["loss_bbox_enc"]))
    )


def test_original_loss_trains_the_proposal_heads_hf_leaves_untrained():
    torch.manual_seed(0)
    model = build_hf_model(3, "resnet18").train()
    bias = -math.log(0.99 / 0.01)
    assert all(h.bias[0].item() == pytest.approx(bias) for h in model.class_embed)
    assert all(float(h.layers[-1].weight.abs().sum()) == 0 for h in model.bbox_embed)
    assert model.config.num_feature_levels == 4 and model.config.num_queries == 100
    assert not [m for m in model.modules() if "Frozen" in type(m).__name__]
    slow = {id(p) for p in deformable_groups(model, 2e-4)[1]["params"]}
    offsets = [p for n, p in model.named_parameters() if "sampling_offsets" in n]
    assert slow == {id(p) for p in offsets} and len(offsets) == 12  # 6 attentions x (w, b)
    inputs = dict(
        pixel_values=torch.randn(2, 3, 96, 96), pixel_mask=torch.ones(2, 96, 96, dtype=torch.long)
    )
    out = model(**inputs, labels=_labels())
    enc_class, enc_box = model.class_embed[-1], model.bbox_embed[-1].layers[-1]  # proposal heads
    out.loss.backward(retain_graph=True)  # HF's own loss: the proposal heads get nothing
    assert enc_class.weight.grad is None and enc_box.weight.grad is None
    model.zero_grad(set_to_none=True)
    loss, terms = original_loss(out, _labels(), model.config)
    loss.backward()
    assert float(terms["loss_ce_enc"]) > 0 and float(terms["loss_giou_enc"]) > 0
    assert enc_class.weight.grad.abs().sum() > 0 and enc_box.weight.grad.abs().sum() > 0
    hf_terms = {k: v for k, v in out.loss_dict.items() if k.startswith("loss_")}
    want = sum(v * {"ce": 2, "bbox": 5, "giou": 2}[k.split("_")[1]] for k, v in hf_terms.items())
    enc = encoder_proposal_loss(
        out.enc_outputs_class, out.enc_outputs_coord_logits, _labels(), model.config
    )
    want = want + 2 * enc["loss_ce_enc"] + 5 * enc["loss_bbox_enc"] + 2 * enc["loss_giou_enc"]
    assert float(loss) == pytest.approx(float(want), rel=1e-5)


def test_rtdetr_ema_and_weight_decay_groups():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict(
        dict(conv=torch.nn.Conv2d(3, 4, 1), bn=torch.nn.BatchNorm2d(4), norm=torch.nn.LayerNorm(4))
    )
    groups = param_groups(model, 1e-4)
    assert [len(g["params"]) for g in groups] == [2, 4] and groups[1]["weight_decay"] == 0
    assert groups[0]["params"][0] is model.conv.weight
    ema = ModelEMA(model, decay=0.9999, warmups=2000)
    start = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.bn.running_mean.add_(2.0)
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    for key, value in ema.module.state_dict().items():
        if value.dtype.is_floating_point:
            want = d * start[key] + (1 - d) * model.state_dict()[key]
            torch.testing.assert_close(value, want)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_visionfm_check_config_is_the_hf_baseline_architecture():
    """benchmarks/configs/deformable-detr_r18_two-stage_synthetic.py rebuilds the HF baseline
    from visionfm's modules: the same number of parameters (13,590,500)."""
    from bench_time_to_accuracy import CONFIGS, _params_and_batch

    hf = build_hf_model(5, "resnet18")
    params_m, batch = _params_and_batch(CONFIGS["visionfm-deformable"])
    assert round(params_m * 1e6) == sum(p.numel() for p in hf.parameters())
    assert batch == 8
