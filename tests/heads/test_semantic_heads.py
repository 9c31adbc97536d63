"""Semantic segmentation heads: output shapes, losses (cross-entropy ignoring 255, class
weights, Dice by hand, auxiliary head, bad labels), gradients, and predictions mapped back to
each original image through resize, flip and batch padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.dataset import pseudo_collate

from visionfm.data import DataPreprocessor, DataSample, PackInputs, RandomFlip, Resize
from visionfm.heads.segmentation import SemanticSegHead
from visionfm.heads.segmentation.losses import semantic_ce_loss, softmax_dice_loss
from visionfm.registry import MODELS

K = 4
LEVELS = dict(p2=(16, 4), p3=(24, 8), p4=(32, 16))  # name -> (channels, stride)


def _feats(batch: int = 2, h: int = 64, w: int = 48) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(batch, c, h // s, w // s, generator=g) for k, (c, s) in LEVELS.items()}


def _in_channels(*names: str) -> dict[str, int]:
    return {k: LEVELS[k][0] for k in (names or LEVELS)}


HEAD_CFGS = {
    "UperNetHead": dict(in_channels=_in_channels(), channels=16, pool_scales=(1, 2, 3)),
    "SegFormerHead": dict(in_channels=_in_channels(), channels=16),
    "FCNHead": dict(in_channels=_in_channels("p3"), channels=16, num_convs=2),
}


def _head(name: str, **overrides) -> SemanticSegHead:
    torch.manual_seed(0)
    return MODELS.build(dict(type=name, num_classes=K, **{**HEAD_CFGS[name], **overrides}))


def _samples(batch: int, h: int, w: int, seed: int = 0) -> list[DataSample]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batch):
        s = DataSample(metainfo=dict(img_shape=(h, w), batch_input_shape=(h, w), ori_shape=(h, w)))
        s.gt_sem_seg = torch.randint(0, K, (h, w), generator=g)
        out.append(s)
    return out


@pytest.mark.parametrize("name, stride", [("UperNetHead", 4), ("SegFormerHead", 4), ("FCNHead", 8)])
def test_logit_shapes_and_every_parameter_gets_a_gradient(name, stride):
    head = _head(name)
    feats = _feats()
    logits = head(feats)
    assert logits.shape == (2, K, 64 // stride, 48 // stride)
    losses = head.loss(feats, _samples(2, 64, 48))
    assert set(losses) == {"loss_ce"} and torch.isfinite(losses["loss_ce"])
    losses["loss_ce"].backward()
    assert all(p.grad is not None for p in head.parameters())


def test_fcn_head_concatenates_several_levels():
    head = _head("FCNHead", in_channels=_in_channels("p3", "p4"))
    assert head(_feats()).shape == (2, K, 8, 6)


def test_missing_level_and_bad_arguments_name_the_problem():
    with pytest.raises(KeyError, match="p5"):
        _head("UperNetHead", in_channels=dict(p2=16, p5=32))(_feats())
    with pytest.raises(ValueError, match="in_channels"):
        _head("SegFormerHead", in_channels=[16, 24])
    with pytest.raises(ValueError, match="class_weight has 3"):
        _head("FCNHead", class_weight=[1.0, 2.0, 3.0])


def test_auxiliary_and_dice_losses_are_weighted_and_prefixed():
    aux = dict(type="FCNHead", num_classes=K, in_channels=_in_channels("p3"), loss_ce=0.4)
    head = _head("UperNetHead", auxiliary=aux, loss_dice=0.5, dropout=0.0)
    feats, samples = _feats(), _samples(2, 64, 48)
    head.eval()  # no dropout / batch statistics: compare with the parts run by hand
    losses = head.loss(feats, samples)
    assert set(losses) == {"loss_ce", "loss_dice", "aux_loss_ce"}
    target = torch.stack([s.gt_sem_seg for s in samples])
    logits = F.interpolate(head(feats), size=(64, 48), mode="bilinear", align_corners=False)
    torch.testing.assert_close(losses["loss_dice"], 0.5 * softmax_dice_loss(logits, target))
    aux_logits = F.interpolate(
        head.auxiliary(feats), size=(64, 48), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(losses["aux_loss_ce"], 0.4 * F.cross_entropy(aux_logits, target))
    # the auxiliary head is for training only: predictions come from the main head
    preds = head.predict(feats, samples)
    assert preds[0].seg_logits.shape == (K, 64, 48)


def test_cross_entropy_ignores_255_and_is_zero_without_labels():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, K, 5, 6, generator=g, requires_grad=True)
    target = torch.randint(0, K, (2, 5, 6), generator=g)
    target[0, :2] = 255
    valid = target != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], target[valid])
    torch.testing.assert_close(semantic_ce_loss(logits, target), expected)
    # logits on ignored pixels do not matter
    changed = logits.detach().clone()
    changed[0, :, :2] = 100.0
    torch.testing.assert_close(semantic_ce_loss(changed, target), expected)
    empty = semantic_ce_loss(logits, torch.full_like(target, 255))
    assert empty.item() == 0.0
    empty.backward()
    assert torch.isfinite(logits.grad).all()


def test_class_weights_give_the_weighted_mean():
    logits = torch.tensor([[[[2.0, 0.0, -1.0]], [[0.0, 1.0, 3.0]]]])  # (1, 2, 1, 3)
    target = torch.tensor([[[0, 1, 255]]])
    w = torch.tensor([1.0, 3.0])
    ce0 = -torch.log_softmax(logits[0, :, 0, 0], 0)[0]
    ce1 = -torch.log_softmax(logits[0, :, 0, 1], 0)[1]
    expected = (1.0 * ce0 + 3.0 * ce1) / 4.0
    torch.testing.assert_close(semantic_ce_loss(logits, target, w), expected)


def test_dice_loss_by_hand():
    # two classes, three labelled pixels (+ one ignored), probabilities chosen via logits
    p = torch.tensor([0.8, 0.4, 0.1, 0.5])  # probability of class 0 at each pixel
    logits = torch.stack([torch.log(p), torch.log(1 - p)]).view(1, 2, 1, 4)
    target = torch.tensor([[[0, 0, 1, 255]]])
    # class 0: inter = 0.8 + 0.4 = 1.2, sum p = 1.3, sum y = 2
    # class 1: inter = 0.9, sum p = 0.2 + 0.6 + 0.9 = 1.7, sum y = 1
    dice0 = (2 * 1.2 + 1) / (1.3 + 2 + 1)
    dice1 = (2 * 0.9 + 1) / (1.7 + 1 + 1)
    expected = 1 - (dice0 + dice1) / 2
    assert softmax_dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)
    assert softmax_dice_loss(logits, target, smooth=0.0).item() == pytest.approx(
        1 - (2 * 1.2 / 3.3 + 2 * 0.9 / 2.7) / 2, rel=1e-5
    )


def test_labels_outside_num_classes_raise_a_clear_error():
    head = _head("FCNHead")
    samples = _samples(1, 64, 48)
    samples[0].gt_sem_seg[0, 0] = 7
    with pytest.raises(ValueError, match=r"\[7\] are outside 0..3"):
        head.loss(_feats(1), samples)


# ------------------------------------------------------------------ back to the original image
class GroundTruthEcho(SemanticSegHead):
    """Logits = 10 x one-hot of each sample's (padded) gt_sem_seg at input resolution."""

    def forward(self, feats, data_samples=None):
        target = self.targets(data_samples, "cpu").clamp(max=self.num_classes - 1)
        return 10.0 * F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).float()


def _pipeline_batch(scale: tuple[int, int]):
    """Two images (odd sizes, the second flipped), resized to ``scale``, batched with
    padding; returns the preprocessed data and the original label maps."""
    rng = np.random.default_rng(0)
    packed, originals = [], []
    for i, (h, w) in enumerate([(21, 33), (27, 15)]):
        seg = np.zeros((h, w), np.uint8)
        seg[3 : h // 2, 2 : w // 2] = 1
        seg[h // 2 :, w // 3 :] = 2
        seg[:4, -5:] = 3
        results = dict(
            img=rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
            ori_shape=(h, w),
            img_shape=(h, w),
            gt_sem_seg=seg,
        )
        results = Resize(scale=scale, keep_ratio=True)(results)
        results = RandomFlip(prob=float(i))(results)
        packed.append(PackInputs()(results))
        originals.append(torch.from_numpy(seg.astype(np.int64)))
    data = DataPreprocessor(size_divisor=8)(pseudo_collate(packed))
    return data, originals


def test_predictions_come_back_at_the_original_size_through_resize_flip_and_padding():
    head = GroundTruthEcho(num_classes=K)
    # scale 66: the first image doubles (33 -> 66), so every original pixel centre falls
    # between two input pixels of its own label; the second (x 2.44, flipped) has a majority
    # of its own label around every centre: both original maps come back exactly
    data, originals = _pipeline_batch((66, 66))
    samples = data["data_samples"]
    assert samples[1].flip and samples[0].batch_input_shape != samples[0].img_shape
    preds = head.predict({}, samples)
    for pred, seg in zip(preds, originals):
        assert pred.pred_sem_seg.shape == seg.shape and pred.pred_sem_seg.dtype == torch.long
        assert pred.seg_logits.shape == (K, *seg.shape)
        torch.testing.assert_close(pred.pred_sem_seg, seg)
    # a non-integer scale: equal away from label boundaries
    data, originals = _pipeline_batch((50, 50))
    for pred, seg in zip(head.predict({}, data["data_samples"]), originals):
        assert pred.pred_sem_seg.shape == seg.shape
        assert (pred.pred_sem_seg == seg).float().mean() > 0.9


def test_rescale_false_gives_the_unpadded_input():
    head = GroundTruthEcho(num_classes=K)
    data, _ = _pipeline_batch((50, 50))
    samples = data["data_samples"]
    expected = [s.gt_sem_seg[: s.img_shape[0], : s.img_shape[1]].clone() for s in samples]
    for pred, gt in zip(head.predict({}, samples, rescale=False), expected):
        torch.testing.assert_close(pred.pred_sem_seg, gt)
