"""``TopDownPipeline``: person detection, then a top-down pose model on every person box.

    det = Inferencer("configs/dino/dino_vit-t_synthetic.py", "work_dirs/dino/epoch_5.pth")
    pose = Inferencer("configs/vitpose/vitpose_vit-t_synthetic.py", "work_dirs/pose/best.pth")
    pipeline = TopDownPipeline(pose, detector=det)
    sample = pipeline("demo.jpg")        # DataSample: pred_instances with keypoints (N, K, 3)
    drawn = pipeline.visualize(image_rgb, sample)

Both models are plain :class:`~visionfm.apis.Inferencer` objects: the detector runs as it
does alone; the pose model's test pipeline (``LoadImage``, ``GetBBoxCenterScale``,
``TopDownAffine``, ``PackPoseInputs``) gets the whole image plus one box per sample, and
its predictions come back in original pixels. Without a detector the whole image is one
person box. (A single multi-head model -- a detection head and a ``RoIPoseHead`` on one
backbone -- needs no pipeline: ``Inferencer`` runs it directly.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.structures import InstanceData

from visionfm.apis.inferencer import Inferencer
from visionfm.data import DataSample
from visionfm.data.transforms import LoadImage
from visionfm.visualization import draw_sample

__all__ = ["TopDownPipeline"]


class TopDownPipeline:
    """Detector (optional) + top-down pose model; see the module doc.

    Args:
        pose: the pose model's Inferencer.
        detector: the person detector's Inferencer; None: the whole image is the box.
        det_score_thr: person boxes below this score are dropped.
        person_class: the detector's class name for people (its ``dataset_meta['classes']``).
        batch_size: person crops per pose forward pass.
        kpt_thr: keypoints at or below this confidence are not drawn.
    """

    def __init__(
        self,
        pose: Inferencer,
        detector: Inferencer | None = None,
        det_score_thr: float = 0.3,
        person_class: str = "person",
        batch_size: int = 16,
        kpt_thr: float = 0.3,
    ) -> None:
        self.pose, self.detector = pose, detector
        self.det_score_thr = det_score_thr
        self.batch_size = batch_size
        self.kpt_thr = kpt_thr
        self._load_image = LoadImage()  # what the Inferencer takes, the same way
        self.person_label = None
        if detector is not None:
            classes = list(detector.dataset_meta.get("classes", ()))
            if person_class not in classes:
                raise ValueError(
                    f"the detector has no class {person_class!r} (its classes: {classes}); "
                    "pass person_class= the name it uses for people"
                )
            self.person_label = classes.index(person_class)
        meta = pose.dataset_meta
        self.class_names = tuple(meta.get("classes") or ()) or (person_class,)
        self.skeleton = meta.get("skeleton")

    def person_boxes(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) xyxy person boxes and (N,) scores in ``image`` ((H, W, 3) RGB)."""
        if self.detector is None:
            h, w = image.shape[:2]
            return np.array([[0.0, 0.0, w, h]], np.float32), np.ones(1, np.float32)
        pred = self.detector(image).pred_instances
        keep = (pred.labels == self.person_label) & (pred.scores >= self.det_score_thr)
        return pred.bboxes[keep].cpu().numpy(), pred.scores[keep].cpu().numpy()

    @torch.no_grad()
    def __call__(self, image: str | np.ndarray) -> DataSample:
        """One image (path, or uint8 RGB array (H, W, 3); grey and RGBA arrays are converted
        as by the Inferencer) -> a DataSample whose ``pred_instances``
        has ``bboxes`` (N, 4), ``scores``, ``labels`` and ``keypoints`` (N, K, 3), all in
        original pixels."""
        if isinstance(image, (str, os.PathLike)):
            image = self._load_image(dict(img_path=str(image)))["img"]
        elif isinstance(image, np.ndarray):  # grey / RGBA converted, others refused by shape
            image = self._load_image(dict(img=image))["img"]
        else:
            raise TypeError(
                f"image must be a path or a uint8 RGB array (H, W, 3), got {type(image).__name__}"
            )
        boxes, scores = self.person_boxes(image)
        crops = [
            self.pose.pipeline(dict(img=image, img_id=0, bbox=box, bbox_score=float(score)))
            for box, score in zip(boxes, scores)
        ]
        results: list[DataSample] = []
        for start in range(0, len(crops), self.batch_size):
            batch = pseudo_collate(crops[start : start + self.batch_size])
            results.extend(self.pose.model.test_step(batch))
        h, w = image.shape[:2]
        sample = DataSample(metainfo=dict(ori_shape=(h, w), img_shape=(h, w)))
        sample.pred_instances = _concat([r.pred_instances for r in results], self._num_keypoints())
        return sample

    def _num_keypoints(self) -> int:
        names = self.pose.dataset_meta.get("keypoint_names")
        return len(names) if names else 0

    def visualize(self, image: np.ndarray, sample: DataSample, score_thr: float | None = None):
        """Boxes, keypoints and skeletons of ``sample`` drawn over ``image`` (RGB)."""
        return draw_sample(
            image,
            sample,
            self.class_names,
            skeleton=self.skeleton,
            prefix="pred",
            score_thr=self.det_score_thr if score_thr is None else score_thr,
            kpt_thr=self.kpt_thr,
        )


def _concat(parts: Sequence[InstanceData], num_keypoints: int) -> InstanceData:
    """Instances of every crop in one InstanceData (empty fields when there are none)."""
    if parts:
        return InstanceData.cat(list(parts))
    return InstanceData(
        bboxes=torch.zeros(0, 4),
        scores=torch.zeros(0),
        labels=torch.zeros(0, dtype=torch.long),
        keypoints=torch.zeros(0, num_keypoints, 3),
    )
