"""Draw what a config's dataset feeds the model: ``python tools/browse_dataset.py CONFIG --out DIR``.

Images go through the split's pipeline (augmentations included), and their ground
truth (boxes, masks, keypoints, semantic maps, depth) is drawn over them as PNGs. Point
clouds (a point dataset: ``inputs`` (N, 3 + C)) are rendered after the pipeline, coloured by
``gt_segment`` with a legend or titled with the ``gt_label`` class, named by their scene.
"""

import argparse
import os

import cv2
from mmengine.config import DictAction
from tqdm import tqdm

from visionfm.engine import load_config
from visionfm.engine.cli import run_tool
from visionfm.registry import DATASETS
from visionfm.visualization import draw_sample
from visionfm.visualization.points import draw_point_sample, sample_coords


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--split", choices=["train", "val", "test"], default="train")
    parser.add_argument("--num", type=int, default=8, help="how many samples")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args()

    cfg = load_config(args.config, args.cfg_options)
    dataset = DATASETS.build(cfg[f"{args.split}_dataloader"].dataset)
    meta = dataset.metainfo
    os.makedirs(args.out, exist_ok=True)
    for i in tqdm(range(min(args.num, len(dataset))), desc="drawing"):
        item = dataset[i]
        sample = item["data_samples"]
        if item["inputs"].dim() == 2:  # a point cloud (N, 3 + C)
            coord = sample_coords(item["inputs"], sample, prefix="gt")
            drawn = draw_point_sample(
                coord, sample, meta.get("classes"), prefix="gt", palette=meta.get("palette")
            )
            name = f"{i:04d}_{sample.metainfo.get('scene', '')}".rstrip("_")
            cv2.imwrite(
                os.path.join(args.out, f"{name}.png"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)
            )
            continue
        image = item["inputs"].permute(1, 2, 0).numpy()
        drawn = draw_sample(
            image,
            sample,
            meta.get("classes"),
            skeleton=meta.get("skeleton"),
            palette=meta.get("palette"),
        )
        name = os.path.splitext(os.path.basename(sample.img_path))[0]
        cv2.imwrite(os.path.join(args.out, f"{name}.png"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    print(f"{min(args.num, len(dataset))} samples drawn in {args.out}")


if __name__ == "__main__":
    run_tool(main)
