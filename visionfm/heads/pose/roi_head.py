"""Pose as one head among several on a shared backbone (DINO-X style multi-task model).

A top-down pose head needs person crops; on a shared full-image feature map the crops are
taken from the features instead of the image: each person box is widened to the RoI's
aspect ratio (and padded, as ``GetBBoxCenterScale`` does for image crops), RoI-aligned
(``torchvision.ops.roi_align``, pure PyTorch on CPU) to ``roi_size`` and decoded to
heatmaps by a ViTPose decoder. A RoI of ``roi_size`` (h, w) on a stride-``s`` map is
treated as a virtual crop of ``(h * s, w * s)`` input pixels, encoded / decoded with the
same UDP codec as image crops.

Boxes: ground-truth person boxes in training; at test time the boxes the detection head
predicted: the head declares ``needs_predictions = ("pred_instances",)``, so the task model
runs the detection head's ``predict`` first (``head=dict(det=..., pose=...)`` in any
order); it reads ``pred_instances`` and adds ``keypoints``
(N, K, 3) ``[x, y, confidence]`` in original pixels to them (zeros for instances that are
not persons or not among the top ``max_per_img`` person boxes). Alone (no
``pred_instances`` yet), it treats the whole image as one person box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torchvision.ops import roi_align

from visionfm.data.batch import batch_input_shape
from visionfm.ops.geometry import boxes_to_input, boxes_to_original, points_to_original
from visionfm.registry import MODELS

from ..base import Head
from .codec import UDPHeatmapCodec
from .head import key_levels, select_level

__all__ = ["RoIPoseHead", "expand_boxes"]


def expand_boxes(boxes: Tensor, aspect_hw: Sequence[int], padding: float) -> Tensor:
    """(N, 4) xyxy -> (N, 4) xyxy with the same centre, ``padding`` x larger, and widened
    (never shrunk) to the aspect ratio h : w of ``aspect_hw``."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0) * padding
    ratio = aspect_hw[1] / aspect_hw[0]  # w / h
    w = torch.maximum(wh[:, 0], wh[:, 1] * ratio)
    half = torch.stack((w, w / ratio), -1) / 2
    return torch.cat((centre - half, centre + half), -1)


@MODELS.register_module()
class RoIPoseHead(Head):
    """Keypoint heatmaps of RoI-aligned person features (see the module doc).

    Args:
        decoder: RoI features (R, C, h, w) -> heatmaps (R, K, h', w').
        person_label: the detection label whose instances carry keypoints.
        in_key: feature level to crop (None: the last; several: concatenated at the first
            one's resolution, see ``select_level``); the stride is inferred from the input size.
        roi_size: (h, w) of the aligned RoI features.
        padding: box enlargement before cropping (1.25 as top-down crops).
        sigma, blur_kernel, loss_weight: as ``TopDownHeatmapHead``.
        max_per_img: at most this many person boxes per image get keypoints at test time
            (highest scores first), and at most this many ground-truth persons per image
            are used in training.
        score_thr: test-time boxes below this score get no keypoints.
    """

    predicts = ("pred_instances",)  # adds ``keypoints`` to a detection head's instances
    needs_predictions = ("pred_instances",)

    def __init__(
        self,
        decoder: nn.Module,
        person_label: int,
        in_key: str | Sequence[str] | None = None,
        roi_size: Sequence[int] = (16, 12),
        padding: float = 1.25,
        sigma: float = 2.0,
        blur_kernel: int | None = None,
        loss_weight: float = 1.0,
        max_per_img: int = 20,
        score_thr: float = 0.1,
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.person_label = person_label
        self.in_key = in_key
        self.roi_size = (int(roi_size[0]), int(roi_size[1]))
        self.padding = padding
        self.codec = UDPHeatmapCodec(sigma, blur_kernel)
        self.loss_weight = loss_weight
        self.max_per_img = max_per_img
        self.score_thr = score_thr

    @property
    def in_levels(self) -> tuple[str, ...] | None:
        return key_levels(self.in_key)

    def _stride(self, feat: Tensor, data_samples) -> float:
        h, w = batch_input_shape(data_samples, feat.shape[-2:])
        return w / feat.shape[-1]

    def _crop_frame(self, stride: float) -> tuple[int, int]:
        """(H, W) of the virtual crop a RoI stands for, in input pixels."""
        return round(self.roi_size[0] * stride), round(self.roi_size[1] * stride)

    def forward(
        self, feats: Mapping[str, Tensor], data_samples=None, rois: list[Tensor] | None = None
    ):
        """Heatmaps (R, K, h', w') of ``rois`` (per image (R_i, 4) xyxy input pixels, already
        expanded); None: the whole input of every image."""
        feat = select_level(feats, self.in_key)
        stride = self._stride(feat, data_samples)
        if rois is None:
            h, w = batch_input_shape(data_samples, feat.shape[-2:])
            rois = [feat.new_tensor([[0.0, 0.0, w, h]]) for _ in range(feat.shape[0])]
        aligned = roi_align(
            feat,
            [r.to(feat.dtype) for r in rois],
            self.roi_size,
            spatial_scale=1.0 / stride,
            sampling_ratio=2,
            aligned=True,
        )  # (R, C, h, w)
        return self.decoder(aligned)

    def _to_crop(self, xy: Tensor, rois: Tensor, crop_hw) -> Tensor:
        """(R, K, 2) input pixels -> crop pixels of each RoI (R, 4)."""
        scale = xy.new_tensor([crop_hw[1], crop_hw[0]]) / (rois[:, 2:] - rois[:, :2])
        return (xy - rois[:, None, :2]) * scale[:, None]

    def _from_crop(self, xy: Tensor, rois: Tensor, crop_hw) -> Tensor:
        scale = (rois[:, 2:] - rois[:, :2]) / xy.new_tensor([crop_hw[1], crop_hw[0]])
        return xy * scale[:, None] + rois[:, None, :2]

    # -- training -------------------------------------------------------------------------
    def loss(self, feats: Mapping[str, Tensor], data_samples) -> dict[str, Tensor]:
        """``loss_kpt``: weighted heatmap MSE over the ground-truth persons' RoIs (zero,
        still connected to the graph, when the batch has none)."""
        feat = select_level(feats, self.in_key)
        rois, keypoints = [], []
        for sample in data_samples:
            gt = sample.gt_instances
            if "keypoints" not in gt:
                raise ValueError(
                    "RoIPoseHead needs gt_instances.keypoints: add with_keypoints=True to "
                    "LoadAnnotations in the training pipeline"
                )
            keep = (gt.labels == self.person_label) & (gt.keypoints[..., 2] > 0).any(-1)
            index = keep.nonzero()[:, 0][: self.max_per_img]
            rois.append(expand_boxes(gt.bboxes[index].to(feat), self.roi_size, self.padding))
            keypoints.append(gt.keypoints[index].to(feat))
        if sum(len(r) for r in rois) == 0:
            zero = feat.sum() * 0.0 + sum(p.sum() * 0.0 for p in self.decoder.parameters())
            return dict(loss_kpt=zero)
        heatmaps = self(feats, data_samples, rois)
        crop_hw = self._crop_frame(self._stride(feat, data_samples))
        kpts = torch.cat(keypoints)
        crop_xy = self._to_crop(kpts[..., :2], torch.cat(rois), crop_hw)
        targets, weights = self.codec.encode(
            torch.cat((crop_xy, kpts[..., 2:]), -1), crop_hw, heatmaps.shape[-2:]
        )
        error = (heatmaps - targets) ** 2 * weights[..., None, None]
        return dict(loss_kpt=error.mean() * self.loss_weight)

    # -- inference ------------------------------------------------------------------------
    def _whole_image(self, sample, feat: Tensor) -> InstanceData:
        """No detection head ran: the whole image is one person box (score 1)."""
        h, w = sample.metainfo.get("img_shape", batch_input_shape([sample], feat.shape[-2:]))[:2]
        box = feat.new_tensor([[0.0, 0.0, w, h]])
        return InstanceData(
            bboxes=boxes_to_original(box, sample.metainfo),
            scores=feat.new_ones(1),
            labels=torch.full((1,), self.person_label, dtype=torch.long, device=feat.device),
        )

    @torch.no_grad()
    def predict(self, feats: Mapping[str, Tensor], data_samples, rescale: bool = True):
        """Add ``keypoints`` (N, K, 3) to each sample's ``pred_instances`` (see module doc)."""
        feat = select_level(feats, self.in_key)
        rois, chosen = [], []
        for sample in data_samples:
            if "pred_instances" not in sample:
                sample.pred_instances = self._whole_image(sample, feat)
            pred = sample.pred_instances
            ok = (pred.labels == self.person_label) & (pred.scores >= self.score_thr)
            index = ok.nonzero()[:, 0]
            index = index[pred.scores[index].argsort(descending=True)][: self.max_per_img]
            boxes = pred.bboxes[index].to(feat)
            if rescale:  # the detection head reported original pixels
                boxes = boxes_to_input(boxes, sample.metainfo)
            rois.append(expand_boxes(boxes, self.roi_size, self.padding))
            chosen.append(index)
        num_k = self.decoder.final.out_channels
        if sum(len(r) for r in rois):
            heatmaps = self(feats, data_samples, rois)
            crop_hw = self._crop_frame(self._stride(feat, data_samples))
            xy, scores = self.codec.decode(heatmaps, crop_hw)  # (R, K, 2), (R, K)
            xy = self._from_crop(xy, torch.cat(rois), crop_hw)
        start = 0
        for sample, index, r in zip(data_samples, chosen, rois):
            pred = sample.pred_instances
            out = feat.new_zeros(len(pred), num_k, 3)
            if len(index):
                pts = xy[start : start + len(r)]
                if rescale:
                    pts = points_to_original(pts, sample.metainfo)
                out[index] = torch.cat((pts, scores[start : start + len(r), :, None]), -1)
            start += len(r)
            pred.keypoints = out
        return list(data_samples)
