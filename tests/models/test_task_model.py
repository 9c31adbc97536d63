"""TaskModel: built from a config (ViT + SimpleFeaturePyramid + DINO head), its three modes,
several heads on one backbone, and a tiny DINO that must overfit a few synthetic images."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from _tiny_models import overfit, tiny_vit_dino
from torch import nn

from visionfm.data.data_sample import DataSample
from visionfm.data.synthetic import detection_batch
from visionfm.evaluation.coco_metric import CocoMetric
from visionfm.heads import Head
from visionfm.models import TaskModel
from visionfm.ops.boxes import box_iou
from visionfm.registry import MODELS

NUM_CLASSES = 5  # the synthetic world's classes


def dino_cfg() -> dict:
    """A tiny DINO on a patch-8 ViT with the simple feature pyramid (strides 8 and 16, plus
    one extra stride-32 level made by the head's input projection): 30 queries, 20
    denoising queries."""
    return tiny_vit_dino(NUM_CLASSES, num_queries=30, num_dn_queries=20, max_per_img=20)


def synthetic_batch(num: int, size: int = 64, seed: int = 0):
    """``num`` rendered scenes: uint8 (3, H, W) images and DataSamples with ground truth."""
    batch = detection_batch(num, size, seed, max_objects=3)
    return batch["inputs"], batch["data_samples"]


def test_build_from_config_and_modes():
    torch.manual_seed(0)
    model = MODELS.build(dino_cfg())
    assert isinstance(model, TaskModel)
    images, samples = synthetic_batch(2)
    # the second image was resized from 96 x 112 to 48 x 56: predictions come back there
    images[1] = images[1][:, :48, :56]
    samples[1].gt_instances.bboxes = samples[1].gt_instances.bboxes.clamp(max=48)
    samples[1].set_metainfo(
        dict(
            img_shape=(48, 56),
            ori_shape=(96, 112),
            scale_factor=(0.5, 0.5),
            homography_matrix=np.diag([0.5, 0.5, 1]).astype(np.float32),
        )
    )
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), True)
    losses = model(**data, mode="loss")
    assert {"loss_cls", "d0.loss_bbox", "enc_loss_giou", "dn_loss_cls"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    out = model(**data, mode="tensor")
    assert out["logits"].shape == (2, 2, 30, NUM_CLASSES) and out["boxes"].shape == (2, 2, 30, 4)
    preds = model(**data, mode="predict")
    for sample, (h, w) in zip(preds, [(64, 64), (96, 112)]):
        boxes = sample.pred_instances.bboxes
        assert boxes.shape == (20, 4) and not boxes.requires_grad
        assert boxes[:, 0::2].max() <= w and boxes[:, 1::2].max() <= h and boxes.min() >= 0
    assert preds[1].pred_instances.bboxes[:, 2].max() > 56  # mapped back, not input pixels


class _SemSegHead(Head):
    """A second head on the same features: one loss, writes ``pred_sem_seg``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2, 1)

    def forward(self, feats, data_samples):
        return self.conv(feats["p3"])

    def loss(self, feats, data_samples):
        return dict(loss_seg=self(feats, data_samples).square().mean())

    def predict(self, feats, data_samples, rescale=True):
        for logits, sample in zip(self(feats, data_samples), data_samples):
            sample.pred_sem_seg = logits.argmax(0)
        return data_samples


def test_several_heads_on_one_backbone():
    torch.manual_seed(0)
    single = MODELS.build(dino_cfg())
    model = TaskModel(single.backbone, dict(det=single.head, seg=_SemSegHead(32)), single.neck)
    images, samples = synthetic_batch(2)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), True)
    losses = model(**data, mode="loss")
    assert "det.loss_cls" in losses and "det.enc_loss_cls" in losses and "seg.loss_seg" in losses
    model.eval()
    preds = model(**data, mode="predict")
    assert "pred_instances" in preds[0] and preds[0].pred_sem_seg.shape == (8, 8)
    assert set(model(**data, mode="tensor")) == {"det", "seg"}


def test_init_weights_keeps_built_weights():
    """mmengine's runner calls init_weights() after building: it must not re-initialise a
    backbone that loaded its checkpoint at construction."""
    model = MODELS.build(dino_cfg())
    before = copy.deepcopy(model.state_dict())
    model.init_weights()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_dino_overfits_synthetic_images():
    """A tiny DINO memorises 4 synthetic images: every box found (IoU > 0.7, right label)
    and COCO AP > 0.9 after 120 iterations."""
    torch.manual_seed(0)
    model = MODELS.build(dino_cfg())
    images, samples = synthetic_batch(4)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), True)
    start = time.perf_counter()
    overfit(model, data, steps=120, lr=2e-3, milestone=90, max_grad_norm=0.1)
    model.eval()
    test = [DataSample(metainfo=s.metainfo) for s in samples]  # no ground truth given
    preds = model(**model.data_preprocessor(dict(inputs=images, data_samples=test)), mode="predict")
    elapsed = time.perf_counter() - start

    found = total = 0
    metric = CocoMetric()
    for pred, gt in zip(preds, samples):
        p, g = pred.pred_instances, gt.gt_instances
        confident = p.scores > 0.3
        iou = box_iou(g.bboxes, p.bboxes[confident])[0]  # (num_gt, num_confident)
        same = g.labels[:, None] == p.labels[confident][None, :]
        found += int(((iou > 0.7) & same).any(1).sum())
        total += len(g.labels)
        pred.gt_instances = g
        metric.process(None, [pred.to_dict()])
    ap = metric.compute_metrics(metric.results)
    print(f"overfit: {found}/{total} boxes, {ap}, {elapsed:.1f} s")
    assert found >= 0.9 * total
    assert ap["bbox_mAP"] > 0.9
