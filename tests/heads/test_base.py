"""The head interface (visionfm.heads.base) as task models read it: a head that needs other
heads' predictions gets them, declared feature levels are checked, a non-dense head cannot
run sliding-window inference, flip_test heads get the mirrored features, and the registry
builds a dict of heads."""

from __future__ import annotations

import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn

from visionfm.heads import DenseHead, Head
from visionfm.models import Segmentor, TaskModel, TopDownPoseEstimator
from visionfm.registry import MODELS


class _Identity(nn.Module):
    """A backbone reporting one level ``p0``: the image itself (B, 3, H, W)."""

    out_channels = {"p0": 3}

    def forward(self, x):
        return {"p0": x}


class _Boxes(Head):
    """Writes one box per image into ``pred_instances``."""

    predicts = ("pred_instances",)
    in_levels = ("p0",)

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, feats, data_samples=None):
        return feats["p0"].mean() * self.scale

    def loss(self, feats, data_samples):
        return dict(loss_box=self(feats))

    def predict(self, feats, data_samples, rescale=True):
        for sample in data_samples:
            sample.pred_instances = InstanceData(bboxes=torch.tensor([[0.0, 0.0, 2.0, 2.0]]))
        return list(data_samples)


class _Reader(_Boxes):
    """Reads ``pred_instances`` (records how many boxes it found) and needs them."""

    predicts = ()
    needs_predictions = ("pred_instances",)

    def predict(self, feats, data_samples, rescale=True):
        self.seen = [len(s.pred_instances) if "pred_instances" in s else 0 for s in data_samples]
        return list(data_samples)


class _Flip(_Boxes):
    flip_test = True

    def predict(self, feats, data_samples, flip_feats=None, rescale=True):
        self.flipped = flip_feats["p0"]
        return super().predict(feats, data_samples, rescale)


def test_a_head_needing_predictions_runs_after_the_head_writing_them():
    reader = _Reader()
    model = TaskModel(_Identity(), dict(pose=reader, det=_Boxes()))  # reader listed first
    model.eval()
    model(torch.zeros(2, 3, 4, 4), mode="predict")
    assert reader.seen == [1, 1]
    assert [type(h) for h in model.heads_in_prediction_order()] == [_Boxes, _Reader]
    assert list(model(torch.zeros(2, 3, 4, 4), mode="loss")) == ["pose.loss_box", "det.loss_box"]


def test_heads_waiting_for_each_other_are_refused():
    class _Both(_Reader):
        predicts = ("pred_instances",)

    class _Other(_Boxes):
        needs_predictions = ("pred_instances",)

    with pytest.raises(ValueError, match="each need another one's predictions"):
        TaskModel(_Identity(), dict(a=_Both(), b=_Other()))


def test_heads_must_derive_from_head_and_find_their_levels():
    with pytest.raises(TypeError, match="head 'x' is a Linear, not a visionfm.heads.Head"):
        TaskModel(_Identity(), dict(x=nn.Linear(2, 2)))

    class _Deep(_Boxes):
        in_levels = ("p0", "p5")

    with pytest.raises(ValueError, match=r"reads feature levels \['p5'\].*gives \['p0'\]"):
        TaskModel(_Identity(), _Deep())


def test_slide_inference_refuses_a_model_without_a_dense_head():
    slide = dict(mode="slide", crop_size=(4, 4), stride=(2, 2))
    with pytest.raises(ValueError, match=r"needs a dense head .* heads are \['_Boxes'\]"):
        Segmentor(_Identity(), _Boxes(), test_cfg=slide)

    class _Dense(DenseHead):
        def forward(self, feats, data_samples=None):
            return feats["p0"][:, :1]  # (B, 1, H, W)

        def predict_by_logits(self, logits, data_samples, rescale=True):
            for sample, map_ in zip(data_samples, logits):
                sample.seg_logits = map_
            return list(data_samples)

    model = Segmentor(_Identity(), dict(det=_Boxes(), seg=_Dense()), test_cfg=slide)
    inputs = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    preds = model(inputs, mode="predict")  # windows stitched back: the input's first channel
    torch.testing.assert_close(preds[1].seg_logits, inputs[1, :1])
    assert len(preds[1].pred_instances) == 1  # the other head predicts from the whole input


def test_flip_test_heads_get_the_mirrored_features():
    head = _Flip()
    model = TopDownPoseEstimator(_Identity(), head)
    inputs = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    model(inputs, mode="predict")
    torch.testing.assert_close(head.flipped, inputs.flip(-1))


def test_the_registry_builds_a_dict_of_heads_in_the_configs_order():
    model = MODELS.build(
        dict(
            type="TaskModel",
            backbone=dict(type=_Identity),
            head=dict(z=dict(type=_Boxes), a=dict(type=_Reader)),
        )
    )
    assert list(model.heads) == ["z", "a"] and isinstance(model.heads["a"], _Reader)
    assert (
        type(
            MODELS.build(
                dict(type="Detector", backbone=dict(type=_Identity), head=dict(type=_Boxes))
            )
        )
        is TaskModel
    )
