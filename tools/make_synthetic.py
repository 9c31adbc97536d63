"""Write the synthetic world to disk: COCO instances and panoptic json, panoptic /
semantic / depth PNGs, refs, ODVG json lines and MDETR-style refcoco json, mp4 clips;
with ``--points``, point clouds too (``OUT/points``: ModelNet40 txt, ScanObjectNN h5,
Pointcept scene folders and PLY; see ``visionfm.data.synthetic.points``).

    python tools/make_synthetic.py --out data/synthetic --num-train 1000 --num-val 200 --seed 0

Layout and formats: see ``visionfm.data.synthetic.writers``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from visionfm.data.synthetic import make_synthetic
except ModuleNotFoundError:  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from visionfm.data.synthetic import make_synthetic
from visionfm.data.synthetic.grounding import HOLDOUT_PAIRS
from visionfm.data.synthetic.points import write_point_datasets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-train", type=int, default=1000)
    p.add_argument("--num-val", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, nargs=2, default=(128, 256), metavar=("MIN", "MAX"))
    p.add_argument("--num-videos", type=int, default=1, help="val clips")
    p.add_argument("--num-train-videos", type=int, default=0, help="train clips")
    p.add_argument("--video-frames", type=int, nargs=2, default=(24, 48), metavar=("MIN", "MAX"))
    p.add_argument("--max-objects", type=int, default=6)
    p.add_argument(
        "--holdout",
        nargs=2,
        action="append",
        metavar=("COLOUR", "CATEGORY"),
        help="leave expressions naming this pair out of the train split's grounding data "
        "(repeatable; default: green triangle)",
    )
    p.add_argument("--no-holdout", action="store_true", help="hold no pair out")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--points", action="store_true", help="also write point clouds to OUT/points")
    p.add_argument(
        "--num-shapes",
        type=int,
        nargs=2,
        default=(600, 240),
        metavar=("TRAIN", "VAL"),
        help="with --points: classification shapes per split",
    )
    p.add_argument(
        "--num-scenes",
        type=int,
        nargs=2,
        default=(48, 12),
        metavar=("TRAIN", "VAL"),
        help="with --points: segmentation rooms per split",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    holdout = () if args.no_holdout else [tuple(p) for p in args.holdout or HOLDOUT_PAIRS]
    paths = make_synthetic(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed,
        image_size=tuple(args.image_size),
        num_videos=args.num_videos,
        num_train_videos=args.num_train_videos,
        video_frames=tuple(args.video_frames),
        max_objects=args.max_objects,
        progress=not args.no_progress,
        holdout_pairs=holdout,
    )
    elapsed = time.perf_counter() - start
    n = args.num_train + args.num_val
    print(
        f"wrote {n} images to {paths['root']} in {elapsed:.1f} s ({n / max(elapsed, 1e-9):.0f} images/s)"
    )
    for split in ("train", "val"):
        for key, path in paths[split].items():
            print(f"  {split:5s} {key:17s} {path}")
    if args.points:
        written = write_point_datasets(
            Path(args.out) / "points",
            num_train=args.num_shapes[0],
            num_val=args.num_shapes[1],
            num_scenes=tuple(args.num_scenes),
            seed=args.seed,
        )
        for key, path in written.items():
            print(f"  points {key:16s} {path}")


if __name__ == "__main__":
    main()
