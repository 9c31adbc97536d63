"""A sample's predictions as plain JSON values (lists, numbers, names), to show or save.

    summary = summarize(inferencer(image))
    summary["instances"][0]   # {"box": [x1, y1, x2, y2], "score": 0.91, "label": 2, "name": "cat"}

``tools/webui.py`` shows it as the raw results; ``label_names`` is what ``tools/demo.py``
names tracked boxes by.
"""

from __future__ import annotations

import numpy as np

from visionfm.data import DataSample
from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR
from visionfm.visualization.sample import _dense

__all__ = ["label_names", "summarize"]

# pred_instances field -> its key in a summary's instance
_INSTANCE_KEYS = {
    "bboxes": "box",
    "scores": "score",
    "labels": "label",
    "masks": "mask_area",
    "keypoints": "keypoints",
}


def label_names(sample: DataSample) -> list[str]:
    """What ``sample``'s labels index: a prompted model's ``phrases``, else the class names
    the Inferencer puts in its ``metainfo['classes']`` (empty when it has neither)."""
    return list(sample.get("phrases") or sample.metainfo.get("classes") or ())


def summarize(sample: DataSample) -> dict:
    """The predictions of ``sample`` (original image pixels) as JSON values, by field present:

    - ``image_size``: ``[h, w]`` of the original image (``ori_shape``), when known;
    - ``instances`` (``pred_instances``): one dict per instance in the model's order:
      ``box`` ``[x1, y1, x2, y2]``, ``score``, ``label`` (an index into
      :func:`label_names`), ``name`` (the label's number as text past the names' end), and
      ``mask_area`` (pixels) with masks, ``keypoints`` ``[[x, y, score], ...]`` with
      keypoints — each field only where the instances have it;
    - ``phrases``: a prompted model's phrases, which the labels index;
    - ``sem_seg`` (``pred_sem_seg``): ``{class name: fraction of the pixels}`` of the classes
      present, largest first (255, ignore, left out);
    - ``panoptic_seg``: one dict per segment, largest first: ``id`` (``label * 1000 +
      instance``), ``name``, ``area`` (pixels); void (-1) left out;
    - ``depth`` (metres) / ``disparity`` (relative): ``min``, ``max``, ``mean`` of the map.

    Values are the predictions' own (float32 as Python floats), not rounded.
    """
    names = label_names(sample)

    def name(label: int) -> str:
        return names[label] if 0 <= label < len(names) else str(label)

    summary: dict = {}
    if "ori_shape" in sample.metainfo:
        summary["image_size"] = [int(v) for v in sample.metainfo["ori_shape"]]
    instances = sample.get("pred_instances")
    if instances is not None:
        summary["instances"] = _instances(instances, name)
    if sample.get("phrases") is not None:
        summary["phrases"] = list(sample.phrases)
    sem_seg = sample.get("pred_sem_seg")
    if sem_seg is not None:
        labels, counts = np.unique(_dense(sem_seg), return_counts=True)
        fractions = counts / counts.sum()
        summary["sem_seg"] = {
            name(int(label)): float(fraction)
            for label, fraction in sorted(zip(labels, fractions), key=lambda lf: -lf[1])
            if label != 255
        }
    panoptic = sample.get("pred_panoptic_seg")
    if panoptic is not None:
        ids, areas = np.unique(_dense(panoptic), return_counts=True)
        summary["panoptic_seg"] = [
            dict(id=int(i), name=name(int(i) // PANOPTIC_LABEL_DIVISOR), area=int(area))
            for i, area in sorted(zip(ids, areas), key=lambda ia: -ia[1])
            if i >= 0
        ]
    for field in ("depth", "disparity"):
        value = sample.get(f"pred_{field}")
        if value is not None:
            values = _dense(value).astype(np.float64)
            summary[field] = dict(
                min=float(values.min()), max=float(values.max()), mean=float(values.mean())
            )
    return summary


def _instances(instances, name) -> list[dict]:
    """One dict per instance of ``instances`` (``InstanceData`` of N), see :func:`summarize`;
    ``name(label) -> str``."""
    fields = {key: instances[key].detach().cpu() for key in _INSTANCE_KEYS if key in instances}
    if "masks" in fields:  # (N, H, W) bool -> (N,) areas
        fields["masks"] = fields["masks"].flatten(1).sum(1)
    fields = {key: value.tolist() for key, value in fields.items()}
    rows = []
    for i in range(len(instances)):
        row = {out: fields[key][i] for key, out in _INSTANCE_KEYS.items() if key in fields}
        if "label" in row:
            row["name"] = name(row["label"])
        rows.append(row)
    return rows
