"""Point heads: PointClsHead against Point-MAE's ``cls_head_finetune`` and a hand-written
label-smoothed cross-entropy; PointSegHead's global context against a per-cloud loop, its
loss with ignored points, ``grid_inverse`` mapping; bad labels named."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from visionfm.data.data_sample import DataSample
from visionfm.heads.point import PointClsHead, PointSegHead


def _samples(**fields) -> list[DataSample]:
    n = len(next(iter(fields.values())))
    out = []
    for i in range(n):
        s = DataSample(metainfo=dict(file=f"shape_{i}.txt"))
        for k, v in fields.items():
            setattr(s, k, v[i])
        out.append(s)
    return out


def test_cls_head_is_point_mae_cls_head_finetune():
    torch.manual_seed(0)
    c, k = 24, 5
    ref = nn.Sequential(  # Point-MAE models/Point_MAE.py PointTransformer.cls_head_finetune
        nn.Linear(c, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(256, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(256, k),
    )
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    names = {"0": "mlp.0", "1": "mlp.1", "4": "mlp.4", "5": "mlp.5", "8": "fc_cls"}
    state = {
        re.sub(r"^(\d+)", lambda m: names[m.group(1)], key): v
        for key, v in ref.state_dict().items()
    }
    head = PointClsHead(num_classes=k, in_channels=c)
    head.load_state_dict(state, strict=True)
    head.eval(), ref.eval()
    x = torch.randn(6, c)
    torch.testing.assert_close(head({"pooled": x}), ref(x))
    assert [n for n, _ in head.named_parameters() if re.match(head.class_layers[0], n)] == [
        "fc_cls.weight",
        "fc_cls.bias",
    ]


def test_cls_loss_is_label_smoothed_cross_entropy():
    torch.manual_seed(0)
    head = PointClsHead(num_classes=4, in_channels=8, hidden_dims=(), label_smoothing=0.2)
    x, labels = torch.randn(5, 8), [0, 3, 1, 1, 2]
    losses = head.loss({"pooled": x}, _samples(gt_label=[torch.tensor(y) for y in labels]))
    logp = head({"pooled": x}).log_softmax(1)
    ref = -(0.8 * logp[range(5), labels] + 0.2 * logp.mean(1)).mean()
    torch.testing.assert_close(losses["loss_cls"], ref)
    assert losses["acc"] == (logp.argmax(1) == torch.tensor(labels)).float().mean()


def test_cls_predict_writes_label_and_probabilities():
    head = PointClsHead(num_classes=3, in_channels=8, hidden_dims=(16,)).eval()
    out = head.predict({"pooled": torch.randn(2, 8)}, _samples(gt_label=[0, 1]))
    for s in out:
        assert s.pred_score.shape == (3,) and float(s.pred_score.sum()) == pytest.approx(1)
        assert s.pred_label.dtype == torch.long and s.pred_label == s.pred_score.argmax()


def test_seg_head_context_matches_a_per_cloud_loop():
    torch.manual_seed(0)
    head = PointSegHead(num_classes=3, in_channels=6, context_channels=4, hidden_dims=(8,)).eval()
    assert head.in_levels == ("points", "pooled")
    points, pooled, offsets = torch.randn(30, 6), torch.randn(2, 4), torch.tensor([12, 30])
    out = head({"points": points, "pooled": pooled, "offsets": offsets})
    for b, (s, e) in enumerate([(0, 12), (12, 30)]):
        x = torch.cat([points[s:e], pooled[b].expand(e - s, 4)], 1)
        torch.testing.assert_close(out[s:e], head.fc_seg(head.mlp(x)))
    plain = PointSegHead(num_classes=3, in_channels=6)
    assert plain.in_levels == ("points",) and plain.fc_seg.in_features == 256


def test_seg_loss_ignores_minus_one_and_all_ignored_is_zero():
    torch.manual_seed(0)
    head = PointSegHead(num_classes=3, in_channels=5, hidden_dims=())
    feats = {"points": torch.randn(7, 5), "offsets": torch.tensor([3, 7])}
    seg = [torch.tensor([0, -1, 2]), torch.tensor([1, 1, -1, 0])]
    loss = head.loss(feats, _samples(gt_segment=seg))["loss_seg"]
    logits, labels = head(feats), torch.cat(seg)
    keep = labels >= 0
    ref = nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(loss, ref)
    none = head.loss(feats, _samples(gt_segment=[torch.full((3,), -1), torch.full((4,), -1)]))
    assert none["loss_seg"].item() == 0 and none["loss_seg"].requires_grad


def test_seg_predict_through_grid_inverse():
    head = PointSegHead(num_classes=3, in_channels=2, hidden_dims=())
    # two sampled points; four original points, the 1st and 4th in voxel 1
    scores = [torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])]
    sample = DataSample(metainfo=dict(grid_inverse=np.array([1, 0, 0, 1])))
    (out,) = head.predict_by_scores(scores, [sample])
    assert out.pred_segment.tolist() == [2, 0, 0, 2]
    bad = DataSample(metainfo=dict(grid_inverse=np.array([0, 5]), file="room.ply"))
    with pytest.raises(ValueError, match=r"room\.ply.*row 5 of 2"):
        head.predict_by_scores(scores, [bad])


def test_out_of_range_labels_name_the_file():
    cls = PointClsHead(num_classes=3, in_channels=4, hidden_dims=())
    with pytest.raises(ValueError, match=r"cloud 1 \(shape_1\.txt\) has label 3, outside 0\.\.2"):
        cls.loss(
            {"pooled": torch.randn(2, 4)}, _samples(gt_label=[torch.tensor(0), torch.tensor(3)])
        )
    seg = PointSegHead(num_classes=3, in_channels=4, hidden_dims=())
    feats = {"points": torch.randn(4, 4), "offsets": torch.tensor([2, 4])}
    with pytest.raises(ValueError, match=r"shape_0\.txt\) has labels \[-2, 9\]"):
        seg.loss(feats, _samples(gt_segment=[torch.tensor([9, -2]), torch.tensor([0, 1])]))
    with pytest.raises(ValueError, match="3 labels for 4 input points"):
        seg.loss(feats, _samples(gt_segment=[torch.tensor([0]), torch.tensor([0, 1])]))
