"""Grounding DINO on CPU: per-image latency of ours against HF transformers'
``GroundingDinoForObjectDetection`` with the same weights, and video frames per second with
the prompt encoded once (the text encoder's cache) against encoded every frame.

    python benchmarks/bench_grounding.py [--size 320] [--runs 5] [--frames 6] [--threads 2]
        [--text-model FOLDER] [--out results/grounding.md] [--json FILE]

The model: a random HF Grounding DINO of grounding-dino-tiny's shape (Swin-T backbone,
d_model 256, 6 encoder + 6 decoder layers, 900 queries, 4 levels x 4 points) with the text
model of ``--text-model`` (default: the offline MiniLM-L6 of ``visionfm.text``, a 6-layer
384-wide BERT, where the published model has BERT-base), saved with ``save_pretrained`` and
loaded into our ``TaskModel`` by ``Inferencer(config, folder)`` (the HF conversion). The
outputs are held equal first (largest difference of the last layer's logits and boxes on
one input, in float64), then, in one process and with the same threads, in turns
(``_common.in_turns``):

- latency: one forward on the same normalised ``--size`` x ``--size`` image and the same
  caption: ours = the text encoder (its cache cleared, so BERT runs as in HF), backbone and
  head; HF = ``model(pixel_values, input_ids, ...)``; median (and p90) of ``--runs``;
- video: ``--frames`` frames (480 x 640, synthetic) through ``Inferencer(frame, text=...)``
  (the test pipeline resizes the long side to ``--size``; pre-processing, model,
  post-processing), the prompt cached (as ``tools/demo.py`` runs it) against
  ``model.text_encoder.clear_cache()`` before every frame; frames per second from the median
  frame time.

The defaults (320 px, 5 runs, 6 frames) take about 5 to 10 minutes on 2 cores (a forward
takes seconds there); the published model's 800 px and BERT-base take several times longer.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from pathlib import Path

import _common as common
import numpy as np
import torch
from mmengine.config import Config
from tqdm import tqdm

OUT = common.RESULTS / "grounding.md"
MODEL_CONFIG = "configs/_base_/models/grounding_dino_swin-t.py"
CAPTION = "person . red car . dog . traffic light ."
TEXT_RUNS = 20  # timed runs of the text encoder alone (milliseconds each)


# ---------------------------------------------------------------- the two models


def save_hf_model(folder: str, text_model: str) -> None:
    """A random HF Grounding DINO of grounding-dino-tiny's shape (``GroundingDinoConfig``'s
    defaults) with ``text_model``'s BERT architecture (random weights too), saved to
    ``folder``. Parameters HF initialises to zero get small random values, so that the boxes
    compared depend on every layer."""
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection

    config = GroundingDinoConfig(text_config=BertConfig.from_pretrained(text_model).to_dict())
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config).eval()
    with torch.no_grad():  # HF zeroes the last box layers: every box would be its anchor
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    model.save_pretrained(folder)


def our_config(text_model: str, size: int) -> Config:
    """``configs/_base_/models/grounding_dino_swin-t.py`` (grounding-dino-tiny's architecture)
    with ``text_model``, and a test pipeline resizing the long side to ``size``."""
    cfg = Config.fromfile(str(common.ROOT / MODEL_CONFIG))
    cfg.model.text_encoder.path = text_model
    pipeline = [
        dict(type="LoadImage"),
        dict(type="Resize", scale=(size, size), keep_ratio=True),
        dict(type="PackInputs"),
    ]
    return Config(
        dict(model=cfg.model.to_dict(), test_dataloader=dict(dataset=dict(pipeline=pipeline)))
    )


# ---------------------------------------------------------------- measurements


def forwards(hf, ours, size: int, dtype: torch.dtype = torch.float32):
    """-> {'ours': fn, 'HF': fn}, each one forward on the same ``dtype`` input and caption,
    returning (last-layer logits (1, Q, T), boxes (1, Q, 4))."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=dtype)
    tokens = ours.text_encoder.tokenize([CAPTION])
    hf_inputs = {k: tokens[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    def run_ours():
        ours.text_encoder.clear_cache()  # BERT runs on every call, as in HF
        text = ours.text_encoder([CAPTION])
        out = ours.head(ours.extract_feat(x), None, text=text)
        return out["logits"][-1], out["boxes"][-1]

    def run_hf():
        out = hf(pixel_values=x, **hf_inputs)
        return out.logits, out.pred_boxes

    return {"ours": run_ours, "HF": run_hf}


def max_difference(hf, ours, size: int) -> tuple[float, float]:
    """Largest |ours - HF| of the logits (over the caption's tokens) and of the boxes, both
    models run in float64: in float32 the rounding can swap the ranks of two near-equal
    encoder proposals, and the queries they start (each rank has its own learned content
    embedding) then differ (at 320 px, seed 0: 2 of 900 queries, proposal scores 6e-5
    apart)."""
    fns = forwards(hf.double(), ours.double(), size, torch.float64)
    (logits, boxes), (hf_logits, hf_boxes) = fns["ours"](), fns["HF"]()
    hf.float(), ours.float()
    tokens = logits.shape[-1]
    return (
        (logits - hf_logits[..., :tokens]).abs().max().item(),
        (boxes - hf_boxes).abs().max().item(),
    )


def video_fns(inferencer, frames: list[np.ndarray]):
    """-> {'prompt cached': fn, 'prompt every frame': fn}: each call runs the next frame."""
    encoder = inferencer.model.text_encoder

    def mode(clear: bool):
        position = itertools.count()

        def run():
            if clear:
                encoder.clear_cache()
            return inferencer(frames[next(position) % len(frames)], text=CAPTION)

        return run

    return {"prompt cached": mode(False), "prompt every frame": mode(True)}


def time_turns(fns, runs: int, bar) -> dict[str, dict[str, float]]:
    """Median and p90 ms of each function over ``runs`` rounds in turns (after one warm-up
    call each)."""
    wall, _ = common.time_in_turns(fns, runs, warm_up=True, progress=bar.update)
    return common.wall_stats(wall)


# ---------------------------------------------------------------- report


def markdown(data: dict) -> str:
    lat, vid = data["latency"], data["video"]
    lines = [
        f"# Grounding DINO on CPU: ours vs HF, prompt cache on video ({data['date']})",
        "",
        common.run_line(data),
        "",
        *common.busy_note(
            data,
            f"**The machine was busy** (load average above the {data['threads']} threads "
            "used): these timings carry another process's share of the cores. Differences of a "
            "few tens of percent, and the text model's time (many small operations, each "
            "waiting for a core), are within that noise; rerun on an idle machine to compare.",
        ),
        "Model (random weights, HF's initialisation, converted into ours): grounding-dino-tiny's "
        f"architecture (`{MODEL_CONFIG}`: Swin-T, d_model 256, 6 encoder + 6 decoder layers, "
        f"900 queries, 4 levels x 4 points) with the text model `{data['text_model']}` "
        f"({data['text_params_m']:.1f} M parameters; the published model has BERT-base, "
        f"110 M). {data['params_m']:.1f} M parameters in "
        f"all. Input {data['size']} x {data['size']} px; caption `{CAPTION}` "
        f"({data['tokens']} tokens).",
        "",
        "Same outputs: largest |ours - HF| over one forward in float64 (in float32 rounding "
        "can swap the ranks of two near-equal proposals; timings are float32): "
        f"logits "
        f"{data['diff_logits']:.1e}, boxes {data['diff_boxes']:.1e}.",
        "",
        "## Latency per image (one forward: text encoder + backbone + head, batch 1)",
        "",
        "| model | median ms | p90 ms | images/s | vs HF |",
        "|---|---|---|---|---|",
    ]
    for name in ("ours", "HF"):
        ms = lat[name]["median_ms"]
        lines.append(
            f"| {name} | {ms:.0f} | {lat[name]['p90_ms']:.0f} | {1e3 / ms:.2f} | "
            f"{ms / lat['HF']['median_ms']:.2f} |"
        )
    lines += [
        "",
        f"Median of {data['runs']} runs each (after one warm-up), the two alternating. Ours "
        "clears the text encoder's cache before every run, so BERT runs each time as in HF.",
        "",
        f"## Video: {data['frames']} frames (480 x 640 -> long side {data['size']} px) through "
        "`Inferencer(frame, text=...)`",
        "",
        "| prompt | median ms / frame | p90 ms | frames/s | time vs cached |",
        "|---|---|---|---|---|",
    ]
    for name in ("prompt cached", "prompt every frame"):
        ms = vid[name]["median_ms"]
        lines.append(
            f"| {name} | {ms:.0f} | {vid[name]['p90_ms']:.0f} | {1e3 / ms:.2f} | "
            f"{ms / vid['prompt cached']['median_ms']:.3f} |"
        )
    lines += [
        "",
        "Pre-processing, model and post-processing per frame; the two modes alternate frame "
        "by frame. 'every frame' clears the text encoder's cache before each frame (BERT "
        f"runs each time); the text model alone takes {data['text_ms']:.1f} ms (median of "
        f"{TEXT_RUNS}) on "
        "this caption, the saving per frame the cache gives.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320, help="input side, px")
    parser.add_argument("--runs", type=int, default=5, help="timed forwards per model")
    parser.add_argument("--frames", type=int, default=6, help="timed video frames per mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--text-model", help="BERT-like save_pretrained folder (default MiniLM)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    from transformers import GroundingDinoForObjectDetection

    from visionfm.apis import Inferencer
    from visionfm.text import resolve_text_model

    torch.set_num_threads(args.threads)
    text_model = resolve_text_model(args.text_model)
    with tempfile.TemporaryDirectory() as folder:
        save_hf_model(folder, text_model)
        hf = GroundingDinoForObjectDetection.from_pretrained(folder).eval()
        inferencer = Inferencer(our_config(text_model, args.size), folder, device="cpu")
    ours = inferencer.model
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(args.frames)]
    load_before = os.getloadavg()[0]
    total = 2 + 2 * (args.runs + 1) + 2 * (args.frames + 1) + TEXT_RUNS + 1
    with torch.no_grad(), tqdm(total=total, desc="grounding benchmark", unit="run") as bar:
        diff_logits, diff_boxes = max_difference(hf, ours, args.size)
        bar.update(2)
        latency = time_turns(forwards(hf, ours, args.size), args.runs, bar)
        video = time_turns(video_fns(inferencer, frames), args.frames, bar)

        def encode_text():
            ours.text_encoder.clear_cache()
            ours.text_encoder([CAPTION])

        text_ms = time_turns({"text": encode_text}, TEXT_RUNS, bar)["text"]["median_ms"]
    data = dict(
        **common.run_facts("benchmarks/bench_grounding.py", args.threads, load_before),
        text_model=args.text_model or "MiniLM-L6 (visionfm.text.default_text_model())",
        text_params_m=sum(p.numel() for p in ours.text_encoder.model.parameters()) / 1e6,
        params_m=sum(p.numel() for p in ours.parameters()) / 1e6,
        size=args.size,
        tokens=ours.text_encoder.count_tokens(CAPTION),
        diff_logits=diff_logits,
        diff_boxes=diff_boxes,
        runs=args.runs,
        frames=args.frames,
        latency=latency,
        video=video,
        text_ms=text_ms,
    )
    common.write_results(args.out, markdown(data), args.json, data)
    print(markdown(data))


if __name__ == "__main__":
    main()
