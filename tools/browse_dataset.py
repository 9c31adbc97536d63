"""Draw what a config's dataset feeds the model: ``python tools/browse_dataset.py CONFIG --out DIR``.

Samples go through the split's pipeline (augmentations included; ``--seed`` draws the same
ones again) and their ground truth is drawn, one PNG per sample, ``DIR/NNNN_<image>.png``
(NNNN: the sample's index), by ``visionfm.visualization.draw_sample``:

- boxes, instance masks, keypoints with the dataset's skeleton (a top-down pose sample: its
  crop);
- a panoptic sample (a dataset with ``thing_classes``): its segments as one panoptic map,
  stuff in its class colour, each thing in its own shade of its class colour;
- semantic maps blended over the image; depth beside the image as a colour map with its range;
- a grounding sample (referring expression, phrase grounding, class prompt): its boxes named
  by their phrases, and its whole text (the expression, caption or prompt) beneath the image;
- a point cloud (``inputs`` (N, 3 + C)): rendered, coloured by ``gt_segment`` with a legend
  or titled with its ``gt_label`` class, named by its scene.

A pipeline that loads the annotations after resizing (the usual test pipeline: the metrics
compare at the original size) leaves them in the original image's coordinates: they are
drawn over the original image. Samples without ground truth after the pipeline (a test
pipeline that loads none) are drawn alone, and counted in the closing line.
"""

import argparse
import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.runner.utils import set_random_seed
from tqdm import tqdm

from visionfm.data import DataSample
from visionfm.data.data_sample import PANOPTIC_LABEL_DIVISOR
from visionfm.data.transforms import LoadImage
from visionfm.engine import load_config
from visionfm.engine.cli import run_tool
from visionfm.registry import DATASETS
from visionfm.visualization import add_caption, draw_sample
from visionfm.visualization.points import draw_point_sample, sample_coords

ANNOTATION_LOADERS = ("LoadAnnotations", "LoadPanopticAnnotations")
GROUND_TRUTH = ("gt_instances", "gt_sem_seg", "gt_depth")


def annotations_at_original_size(pipeline: Sequence) -> bool:
    """Whether ``pipeline`` (transform configs or objects) loads the annotations after a
    transform other than LoadImage, leaving them at the original size."""
    kinds = [t.get("type") if isinstance(t, dict) else type(t) for t in pipeline]
    names = [k if isinstance(k, str) else k.__name__ for k in kinds]
    loaders = [i for i, name in enumerate(names) if name in ANNOTATION_LOADERS]
    return bool(loaders) and any(name != "LoadImage" for name in names[: loaders[0]])


def panoptic_map(sample: DataSample, num_things: int) -> np.ndarray:
    """(H, W) int64 ``label * PANOPTIC_LABEL_DIVISOR + instance`` of a panoptic sample's
    segments (``gt_instances`` and crowd ``ignored_instances``: ``masks`` (N, H, W),
    ``labels`` (N,)): things (labels < ``num_things``) numbered 1, 2, ... per class, stuff
    instance 0; -1 where no segment lies."""
    parts = [sample.get(k) for k in ("gt_instances", "ignored_instances")]
    masks = torch.cat([p.masks for p in parts if p is not None and "masks" in p]).numpy()
    labels = torch.cat([p.labels for p in parts if p is not None and "masks" in p]).numpy()
    pan = np.full(masks.shape[1:], -1, np.int64)
    count: dict[int, int] = {}
    for mask, label in zip(masks, labels.tolist()):
        instance = 0
        if label < num_things:
            instance = count[label] = count.get(label, 0) + 1
        pan[mask] = label * PANOPTIC_LABEL_DIVISOR + instance
    return pan


def drawable(sample: DataSample, meta: dict) -> DataSample:
    """What to draw of ``sample``: a panoptic sample (``meta`` with ``thing_classes``, ground
    truth with masks) as its panoptic map alone, any other as it is."""
    things = meta.get("thing_classes")
    instances = sample.get("gt_instances")
    if things is None or instances is None or "masks" not in instances:
        return sample
    out = DataSample(metainfo=sample.metainfo)
    out.gt_panoptic_seg = torch.from_numpy(panoptic_map(sample, len(things)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--split", choices=["train", "val", "test"], default="train")
    parser.add_argument("--num", type=int, default=8, help="how many samples")
    parser.add_argument("--seed", type=int, help="seed the augmentations (same seed, same draws)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args()

    cfg = load_config(args.config, args.cfg_options)
    dataset_cfg = cfg[f"{args.split}_dataloader"].dataset
    dataset = DATASETS.build(dataset_cfg)
    meta = dataset.metainfo
    original = annotations_at_original_size(dataset_cfg.get("pipeline") or [])
    load_image = LoadImage()
    os.makedirs(args.out, exist_ok=True)
    if args.seed is not None:
        set_random_seed(args.seed)
    num = min(args.num, len(dataset))
    unlabelled = 0
    for i in tqdm(range(num), desc="drawing"):
        item = dataset[i]
        sample = item["data_samples"]
        if item["inputs"].dim() == 2:  # a point cloud (N, 3 + C)
            coord = sample_coords(item["inputs"], sample, prefix="gt")
            drawn = draw_point_sample(
                coord, sample, meta.get("classes"), prefix="gt", palette=meta.get("palette")
            )
            name = f"{i:04d}_{sample.metainfo.get('scene', '')}".rstrip("_")
        else:
            if original:  # the ground truth lies on the image as read
                image = load_image(dict(img_path=sample.img_path))["img"]
            else:
                image = item["inputs"].permute(1, 2, 0).numpy()
            unlabelled += not any(k in sample for k in GROUND_TRUTH)
            drawn = draw_sample(
                image,
                drawable(sample, meta),
                meta.get("classes"),
                skeleton=meta.get("skeleton"),
                palette=meta.get("palette"),
            )
            if sample.get("text"):
                drawn = add_caption(drawn, sample.text)
            name = f"{i:04d}_{os.path.splitext(os.path.basename(sample.img_path))[0]}"
        cv2.imwrite(os.path.join(args.out, f"{name}.png"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    print(f"{num} samples drawn in {args.out}")
    if unlabelled:
        print(
            f"{unlabelled} of them without ground truth: the {args.split} pipeline loads no "
            "annotations (try --split train)"
        )


if __name__ == "__main__":
    run_tool(main)
