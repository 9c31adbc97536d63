"""``PackInputs``: the last transform; turns a results dict into what the model consumes."""

from __future__ import annotations

import numpy as np
import torch
from mmengine.structures import InstanceData

from visionfm.data.data_sample import DataSample
from visionfm.registry import TRANSFORMS

__all__ = ["PackInputs"]

DEFAULT_META_KEYS = (
    "img_path",
    "img_id",
    "sample_idx",
    "ori_shape",
    "img_shape",
    "scale_factor",
    "flip",
    "flip_direction",
    "homography_matrix",
    "depth_path",  # depth evaluation reads the ground truth at the original size
    "depth_scale",
    # grounding (see visionfm.data.data_sample)
    "prompt_type",
    "phrase_ids",
    "expression_id",
    "dataset_name",
    "split",
    "held_out",
)

# results key -> InstanceData field, dtype
_INSTANCE_FIELDS = {
    "gt_bboxes": ("bboxes", torch.float32),
    "gt_labels": ("labels", torch.long),
    "gt_masks": ("masks", torch.bool),
    "gt_keypoints": ("keypoints", torch.float32),
}


def _instances(results: dict, keep: np.ndarray) -> InstanceData:
    """InstanceData of the instances where ``keep`` (N,) is True."""
    data = InstanceData()
    for key, (field, dtype) in _INSTANCE_FIELDS.items():
        if key in results:
            data[field] = torch.from_numpy(np.ascontiguousarray(results[key][keep])).to(dtype)
    return data


@TRANSFORMS.register_module()
class PackInputs:
    """results dict -> ``dict(inputs=uint8 Tensor (3, H, W) RGB, data_samples=DataSample)``.

    - ``gt_bboxes`` / ``gt_labels`` / ``gt_masks`` / ``gt_keypoints`` -> ``gt_instances``
      (``bboxes`` float (N, 4), ``labels`` long (N,), ``masks`` bool (N, H, W), ``keypoints``
      float (N, K, 3)); instances flagged in ``gt_ignore_flags`` (COCO crowd) go to
      ``ignored_instances`` instead.
    - ``gt_sem_seg`` -> long (H, W); ``gt_depth`` -> float (H, W).
    - ``text``, ``phrases``, ``phrase_spans`` -> the same fields (grounding: the caption, its
      entities and their character spans; ``gt_labels`` index ``phrases``).
    - ``meta_keys`` present in ``results`` -> metainfo.
    """

    def __init__(self, meta_keys: tuple[str, ...] | list[str] = DEFAULT_META_KEYS) -> None:
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"PackInputs expects img (H, W, 3), got shape {img.shape}")
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = DataSample()
        if "gt_bboxes" in results:
            n = len(results["gt_bboxes"])
            ignore = results.get("gt_ignore_flags", np.zeros(n, dtype=bool)).astype(bool)
            sample.gt_instances = _instances(results, ~ignore)
            if ignore.any():
                sample.ignored_instances = _instances(results, ignore)
        if "phrases" in results:
            sample.phrases = list(results["phrases"])
        if "phrase_spans" in results:
            sample.phrase_spans = [[list(span) for span in p] for p in results["phrase_spans"]]
        if "gt_sem_seg" in results:
            sample.gt_sem_seg = torch.from_numpy(results["gt_sem_seg"].astype(np.int64))
        if "gt_depth" in results:
            depth = np.ascontiguousarray(results["gt_depth"], dtype=np.float32)
            sample.gt_depth = torch.from_numpy(depth)
        if "text" in results:
            sample.text = str(results["text"])
        sample.set_metainfo({k: results[k] for k in self.meta_keys if k in results})
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f"PackInputs(meta_keys={self.meta_keys})"
