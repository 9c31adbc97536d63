"""What a trained synthetic grounding model learned, and whether the text matters.

    python benchmarks/grounding_synthetic.py CONFIG CHECKPOINT [--data-root data/synthetic/]

On the synthetic val split it measures, with the same weights:

- referring expressions, Acc@0.5 (P@1) and P@5: as written; with every expression replaced
  by its bare category name ("the small red circle left of the star" -> "circle"); with the
  text features zeroed (the model sees no text); and on the held-out colour + category pairs
  (green triangles, never in a training expression);
- class-prompted detection: COCO box AP with all class names as the prompt (pycocotools);
- prompt subsets: with only some class names in the prompt, the boxes above a score of 0.3
  that land (IoU >= 0.5) on an object of a prompted class vs on one of another class.

Writes benchmarks/results/grounding_synthetic.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time

import torch
from mmengine.dataset import pseudo_collate
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine, torch_build  # noqa: E402

from visionfm.data import DataSample  # noqa: E402
from visionfm.engine.checkpoint import load_model_weights  # noqa: E402
from visionfm.engine.config import load_config  # noqa: E402
from visionfm.ops.boxes import box_iou  # noqa: E402
from visionfm.registry import DATASETS, METRICS, MODELS  # noqa: E402
from visionfm.text import class_caption  # noqa: E402


def _run(model, dataset, edit=None, batch_size=16, desc=""):
    """Predictions for every sample of ``dataset``; ``edit(sample)`` changes a sample's
    prompt first."""
    out = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, leave=False):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        if edit is not None:
            for item in items:
                edit(item["data_samples"])
        with torch.no_grad():
            out.extend(model.test_step(pseudo_collate(items)))
    return out


def _metric(cfg_metric, samples):
    metric = METRICS.build(copy.deepcopy(cfg_metric))
    metric.process({}, [s.to_dict() if hasattr(s, "to_dict") else s for s in samples])
    return metric.compute_metrics(metric.results)


def _category_only(classes):
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, classes)) + r")\b")

    def edit(sample: DataSample) -> None:
        name = pattern.search(sample.text).group(1)  # the referent's (first) category
        sample.text, sample.phrases, sample.phrase_spans = name, [name], [[[0, len(name)]]]

    return edit


class _ZeroText:
    """Zero the text features the head sees (a forward hook on the projection)."""

    def __init__(self, model):
        self.handle = model.text_encoder.proj.register_forward_hook(lambda m, i, o: o * 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _subset_prompts(model, dataset, classes, subset, score_thr=0.3):
    """Boxes above ``score_thr`` for a prompt of ``subset`` names: how many land on an object
    of a prompted class, of another class, or on none."""
    caption, spans = class_caption([classes[i] for i in subset])
    prompted = torch.tensor(subset)

    def edit(sample):
        names = [classes[i] for i in subset]
        sample.text, sample.phrases, sample.phrase_spans = caption, names, spans

    counts = dict(prompted=0, other=0, background=0)
    for sample in _run(model, dataset, edit, desc="subset prompt"):
        pred = sample.pred_instances
        boxes = pred.bboxes[pred.scores > score_thr]
        gt = sample.gt_instances
        if len(boxes) == 0:
            continue
        if len(gt) == 0:
            counts["background"] += len(boxes)
            continue
        gt_labels = gt.labels  # test mode: all classes in order, phrase index == class
        iou = box_iou(boxes, gt.bboxes)[0]  # (K, N)
        best, index = iou.max(1)
        on_object = best >= 0.5
        is_prompted = torch.isin(gt_labels[index], prompted)
        counts["prompted"] += int((on_object & is_prompted).sum())
        counts["other"] += int((on_object & ~is_prompted).sum())
        counts["background"] += int((~on_object).sum())
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--data-root", default="data/synthetic/")
    parser.add_argument("--out", default="benchmarks/results/grounding_synthetic.md")
    args = parser.parse_args()
    cfg = load_config(args.config, {"data_root": args.data_root})
    model = MODELS.build(cfg.model)
    load_model_weights(model, args.checkpoint)
    model.eval()
    start = time.time()

    refer = DATASETS.build(cfg.val_dataloader.dataset)
    classes = list(DATASETS.build(cfg.class_prompt_test_dataloader.dataset).metainfo["classes"])
    rows = []
    for name, edit in (("as written", None), ("category name only", _category_only(classes))):
        m = _metric(cfg.val_evaluator, _run(model, refer, edit, desc=name))
        rows.append((name, m["P@1"], m["P@5"], m.get("held_out_P@1", float("nan"))))
    with _ZeroText(model):
        m = _metric(cfg.val_evaluator, _run(model, refer, desc="zero text"))
    rows.append(("text features zeroed", m["P@1"], m["P@5"], m.get("held_out_P@1", float("nan"))))

    det = DATASETS.build(cfg.class_prompt_test_dataloader.dataset)
    coco_cfg = copy.deepcopy(cfg.class_prompt_test_evaluator)
    coco = METRICS.build(coco_cfg)
    coco.dataset_meta = det.metainfo
    samples = _run(model, det, desc="class prompt")
    coco.process({}, [s.to_dict() for s in samples])
    ap = coco.compute_metrics(coco.results)
    subsets = [[0, 1], [2, 3]]
    subset_counts = [(s, _subset_prompts(model, det, classes, s)) for s in subsets]

    lines = [
        "# Grounding on the synthetic world",
        "",
        f"`python benchmarks/grounding_synthetic.py {args.config} {args.checkpoint}`",
        f"({machine()}, {torch_build()}, {time.time() - start:.0f} s)",
        "",
        f"Referring expressions, val split ({len(refer)} expressions):",
        "",
        "| prompt | Acc@0.5 (P@1) | P@5 | held-out pairs P@1 |",
        "|---|---|---|---|",
        *[f"| {n} | {p1:.3f} | {p5:.3f} | {h:.3f} |" for n, p1, p5, h in rows],
        "",
        f"Class-prompted detection (all {len(classes)} names in the prompt), COCO box AP: "
        f"**{ap.get('bbox_mAP', float('nan')):.3f}** (AP50 {ap.get('bbox_mAP_50', float('nan')):.3f}).",
        "",
        "Prompting a subset of the classes, boxes with score > 0.3 (IoU >= 0.5 to an object):",
        "",
        "| prompt | on a prompted class | on another class | on no object |",
        "|---|---|---|---|",
        *[
            f"| {' . '.join(classes[i] for i in s)} . | {c['prompted']} | {c['other']} | "
            f"{c['background']} |"
            for s, c in subset_counts
        ],
        "",
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
