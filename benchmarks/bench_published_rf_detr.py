"""RF-DETR on CPU: per-image latency and peak memory of ours against HF transformers'
``RfDetrForObjectDetection`` with the same weights, at the published model's resolution.

    python benchmarks/bench_published_rf_detr.py [--size 512] [--runs 10] [--threads 2]
        [--out results/published_rf_detr.md] [--json FILE]

The model: a random HF RF-DETR of RF-DETR-S's architecture (roboflow's ``RFDETRSmallConfig``:
windowed DINOv2-S, patch 16, blocks 2 / 5 / 8 / 11 into one stride-16 level, 3 decoder
layers, 300 queries, 91 classes; 32.1 M parameters), saved with ``save_pretrained`` and
loaded into ours (``configs/_base_/models/rf-detr_small.py``) by ``load_model_weights`` (the
published-checkpoint conversion). Both in eval mode (one query group), batch 1, float32.

- Same outputs: the largest |ours - HF| of the logits and boxes on one input, float64.
- Latency: one forward on the same normalised ``--size`` x ``--size`` image (ours: backbone,
  projector and head; HF: ``model(pixel_values)``), ``--runs`` runs each after one warm-up,
  the two in turns in one process (``_common.time_in_turns``); median and p90.
- Peak memory: the resident-set high-water mark of one forward above the resident memory
  just before it (``_common.peak_rss_mib``: ``/proc/self/clear_refs`` resets the kernel's
  ``VmHWM``), after the timed runs, the process started with glibc returning freed memory at
  once (``_common.MALLOC_RETURNS_FREED``, set by re-running itself).
"""

from __future__ import annotations

import os
import tempfile

import _common as common
import torch

OUT = common.RESULTS / "published_rf_detr.md"
MODEL_CONFIG = "configs/_base_/models/rf-detr_small.py"


def save_hf_model(folder: str, size: int) -> None:
    """A random HF RF-DETR-S (HF's initialisation; the parameters it zeroes get small random
    values so that the boxes depend on every layer), saved to ``folder``."""
    from transformers import RfDetrConfig, RfDetrForObjectDetection

    config = RfDetrConfig(
        backbone_config=dict(
            model_type="rf_detr_dinov2",
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=6,
            patch_size=16,
            image_size=size,
            out_features=["stage3", "stage6", "stage9", "stage12"],
            num_windows=2,
        ),
        decoder_n_points=2,
        decoder_layers=3,
        num_labels=91,
    )
    torch.manual_seed(0)
    model = RfDetrForObjectDetection(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    model.save_pretrained(folder)


def load_models(size: int):
    """(HF model, our model) with the same random weights, eval, float32."""
    from mmengine.config import Config
    from transformers import RfDetrForObjectDetection

    from visionfm.engine.checkpoint import load_model_weights
    from visionfm.registry import MODELS

    cfg = Config.fromfile(str(common.ROOT / MODEL_CONFIG))
    cfg.model.backbone.img_size = size
    with tempfile.TemporaryDirectory() as folder:
        save_hf_model(folder, size)
        hf = RfDetrForObjectDetection.from_pretrained(folder).eval()
        ours = MODELS.build(cfg.model).eval()
        load_model_weights(ours, folder)
    return hf, ours


def forwards(hf, ours, size: int, dtype: torch.dtype = torch.float32):
    """``_common.detector_forwards`` on a ``size`` x ``size`` input."""
    return common.detector_forwards(hf, ours, (size, size), dtype)


def markdown(data: dict) -> str:
    lat = data["latency"]
    lines = [
        f"# RF-DETR-S on CPU: ours vs HF ({data['date']})",
        "",
        common.run_line(data),
        "",
        f"Model (random weights, HF's initialisation, converted into ours by "
        f"`load_model_weights`): RF-DETR-S (`{MODEL_CONFIG}`), {data['params_m']:.1f} M "
        f"parameters; input {data['size']} x {data['size']} px, batch 1, eval (one query "
        "group), float32.",
        "",
        f"Same outputs (float64, one forward): logits {data['diff_logits']:.1e}, boxes "
        f"{data['diff_boxes']:.1e}.",
        "",
        *common.busy_note(
            data,
            f"**The machine was busy** (load average above the {data['threads']} threads "
            "used): wall times carry other processes' share of the cores; compare the CPU "
            "times.",
        ),
        *common.ours_vs_hf_rows(
            *({name: lat[name][key] for name in lat} for key in ("median_ms", "p90_ms", "cpu_ms")),
            data["peak_mib"],
        ),
        "",
        f"Median of {data['runs']} runs each after one warm-up, the two alternating in one "
        "process; CPU ms: the process's CPU time over all threads per forward (steadier than "
        "wall time when other processes share the cores). "
        + common.peak_sentence(data["peak_exact"]),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    args = common.ours_vs_hf_parser(__doc__, size=512, runs=10, out=OUT).parse_args()
    common.returning_freed_memory()

    torch.set_num_threads(args.threads)
    hf, ours = load_models(args.size)
    load_before = os.getloadavg()[0]
    (diff_logits, diff_boxes), wall, cpu, peaks = common.compare_in_process(
        forwards, hf, ours, args.size, args.runs
    )
    data = dict(
        **common.run_facts("benchmarks/bench_published_rf_detr.py", args.threads, load_before),
        params_m=sum(p.numel() for p in ours.parameters()) / 1e6,
        size=args.size,
        runs=args.runs,
        diff_logits=diff_logits,
        diff_boxes=diff_boxes,
        latency=common.latency_stats(wall, cpu),
        peak_mib={name: mib for name, (mib, _) in peaks.items()},
        peak_exact=all(exact for _, exact in peaks.values()),
    )
    common.write_results(args.out, markdown(data), args.json, data)
    print(markdown(data))


if __name__ == "__main__":
    main()
