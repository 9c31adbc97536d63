"""The post-processing of :class:`~visionfm.heads.detr.DETRHead` (:class:`DETRPostprocess`, a
mixin): one image's logits and normalised boxes -> ``InstanceData`` in pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmengine.structures import InstanceData
from torch import Tensor

from visionfm.ops.boxes import box_cxcywh_to_xyxy
from visionfm.ops.geometry import boxes_to_original

__all__ = ["DETRPostprocess"]


class DETRPostprocess:
    """:meth:`postprocess` of :class:`~visionfm.heads.detr.DETRHead`; it reads its
    ``classification``, ``num_classes`` and ``test_cfg`` (``max_per_img``, ``score_thr``)."""

    def predict_by_outputs(
        self, logits: Tensor, boxes: Tensor, data_samples: Sequence, rescale: bool = True
    ) -> list:
        """The last decoder layer's logits (B, Q, num_classes) and boxes (B, Q, 4) normalised
        cxcywh (from the head, or from an exported network, ``visionfm.export``) -> the
        samples with ``pred_instances`` (see ``DETRHead.predict``)."""
        for scores, cxcywh, sample in zip(logits, boxes, data_samples):
            sample.pred_instances = self.postprocess(scores, cxcywh, sample.metainfo, rescale)
        return list(data_samples)

    def postprocess(self, logits: Tensor, boxes: Tensor, metainfo: Mapping, rescale=True):
        """One image: logits (Q, num_classes), boxes (Q, 4) normalised cxcywh ->
        ``InstanceData`` (see :meth:`predict`)."""
        if self.classification == "softmax":  # DETR: "no object" dropped, best class per query
            scores, labels = logits.softmax(-1)[:, :-1].max(-1)  # (Q,)
            scores, index = scores.topk(min(self.test_cfg["max_per_img"], len(scores)))
            return self._instances(scores, boxes[index], labels[index], metainfo, rescale)
        scores = logits.sigmoid().flatten()  # (Q * num_classes,)
        k = min(self.test_cfg["max_per_img"], scores.numel())
        scores, index = scores.topk(k)
        labels = index % self.num_classes
        return self._instances(scores, boxes[index // self.num_classes], labels, metainfo, rescale)

    def _instances(self, scores, boxes, labels, metainfo: Mapping, rescale) -> InstanceData:
        """K candidates: scores (K,), boxes (K, 4) normalised cxcywh, labels (K,) ->
        ``InstanceData`` of those above ``score_thr``, boxes in pixels (original image's when
        ``rescale``)."""
        h, w = metainfo["img_shape"][:2]
        bboxes = box_cxcywh_to_xyxy(boxes) * boxes.new_tensor([w, h, w, h])
        keep = scores > self.test_cfg["score_thr"]
        bboxes, scores, labels = bboxes[keep], scores[keep], labels[keep].long()
        if rescale:
            bboxes = boxes_to_original(bboxes, metainfo)
        return InstanceData(bboxes=bboxes, scores=scores, labels=labels)
