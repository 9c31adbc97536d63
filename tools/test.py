"""Evaluate a checkpoint on a config's test split.

    python tools/test.py CONFIG CHECKPOINT [--out results.json] [--show-dir DIR]
                                           [--work-dir DIR] [--cfg-options k=v ...]

--out DIR writes the predictions of every task in its standard format: COCO results jsons
(DIR/coco.bbox.json, coco.segm.json, coco.keypoints.json: boxes, instance masks, keypoints, by
the config's CocoMetric / CocoKeypointMetric), semantic maps as label PNGs (DIR/sem_seg/),
panoptic maps in the COCO panoptic format (DIR/panoptic.json + DIR/panoptic/), depth as 16-bit
PNGs in metres * depth_scale (the dataset's: NYU and synthetic 1000, KITTI 256; DIR/depth/),
point-cloud segmentations as per-cloud .npy label arrays (DIR/points/) and classifications as
DIR/points.json (``visionfm.evaluation.PredictionWriter``). Referring-expression grounding has
no standard results format and is refused. --out FILE.json writes the COCO box results alone
to FILE.json (a config with a CocoMetric).
--show-dir draws the predictions over the images (point clouds: rendered coloured by
predicted class, or titled with the class and score).
CONFIG may be the config a training run saved in its work dir (``WORK_DIR/NAME.py``): it holds
that run's ``--cfg-options`` (``data_root``, ...), so they need not be repeated.
"""

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.model import is_model_wrapper

from visionfm.engine import build_runner, load_config
from visionfm.engine.checkpoint import load_model_weights
from visionfm.engine.cli import run_tool


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate a visionfm checkpoint")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument(
        "--out", help="folder for the predictions in standard formats, or FILE.json for boxes"
    )
    parser.add_argument("--show-dir", help="draw predictions over the images into this folder")
    parser.add_argument("--score-thr", type=float, default=0.3, help="for --show-dir")
    parser.add_argument("--work-dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    args = parser.parse_args()

    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or osp.join(
        "work_dirs", osp.splitext(osp.basename(args.config))[0]
    )
    cfg.load_from, cfg.resume = None, False  # weights are loaded strictly below
    prefix = None
    if args.out:
        try:
            prefix = write_predictions(cfg, args.out)
        except ValueError as err:
            parser.error(str(err))
    if args.show_dir:
        hooks = list(cfg.get("custom_hooks") or [])
        hooks.append(
            dict(type="DrawPredictionsHook", out_dir=args.show_dir, score_thr=args.score_thr)
        )
        cfg.custom_hooks = hooks

    # the runner saves the config it runs in the work dir; unnamed, as <timestamp>.py, so it
    # does not replace the config a training run saved there (NAME.py)
    runner = build_runner(Config(cfg.to_dict()))
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    load_model_weights(model, args.checkpoint)
    metrics = runner.test()
    if args.out is not None:
        if args.out.endswith(".json"):
            os.replace(f"{prefix}.bbox.json", args.out)
        print(f"predictions written to {args.out}")
    if args.show_dir:
        print(f"drawings written to {args.show_dir}")
    print(metrics)


# results formats per metric type: COCO jsons by the metric itself (``outfile_prefix``)
COCO_WRITERS = ("CocoMetric", "CocoKeypointMetric")
NO_FORMAT = {
    "RefExpMetric": "referring-expression grounding",
    "PhraseGroundingMetric": "phrase grounding",
}


def write_predictions(cfg: Config, out: str) -> str:
    """Set ``cfg``'s test evaluators to write the predictions to ``out`` (see the module
    doc); returns the COCO metrics' ``outfile_prefix``. Raises ValueError naming what cannot
    be written."""
    evaluators = cfg.test_evaluator
    evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
    types = [e.get("type") for e in evaluators]
    refused = [NO_FORMAT[t] for t in types if t in NO_FORMAT]
    if refused:
        raise ValueError(
            f"--out: {', '.join(refused)} predictions have no standard results format (the "
            f"config's test_evaluator: {types}); leave --out out"
        )
    coco = [e for e in evaluators if e.get("type") in COCO_WRITERS]
    if out.endswith(".json"):
        boxes = [e for e in coco if e.get("type") == "CocoMetric"]
        if not boxes:
            raise ValueError(
                f"--out {out}: a .json file holds COCO box results, and this config's "
                f"test_evaluator ({types}) has no CocoMetric; give a folder instead"
            )
        prefix = out[: -len(".json")]
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        boxes[0].outfile_prefix = prefix
        return prefix
    prefix = osp.join(out, "coco")
    os.makedirs(out, exist_ok=True)
    for evaluator in coco:
        evaluator.outfile_prefix = prefix
    panoptic = [e for e in evaluators if e.get("type") == "PanopticMetric"]
    ann_file = panoptic[0].get("ann_file") if panoptic else None
    if len(coco) < len(evaluators):  # dense maps or point clouds
        evaluators.append(dict(type="PredictionWriter", out_dir=out, panoptic_ann_file=ann_file))
    cfg.test_evaluator = evaluators
    return prefix


if __name__ == "__main__":
    run_tool(main)
