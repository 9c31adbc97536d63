"""Mask2Former on CPU: per-image latency and peak memory of ours against HF transformers'
``Mask2FormerForUniversalSegmentation`` with the same weights.

    python benchmarks/bench_published_mask2former.py [--size 384] [--runs 5] [--threads 2]
        [--out results/published_mask2former.md] [--json FILE]

The model: a random HF Mask2Former of facebook/mask2former-swin-tiny-coco-panoptic's
architecture (Swin-T, pixel decoder 256 wide with 6 deformable encoder layers, 9 decoder
layers, 100 queries, 133 classes; 47.4 M parameters), saved with ``save_pretrained`` and
loaded into ours (``configs/_base_/models/mask2former_swin-t.py``) by ``load_model_weights``
(the published-checkpoint conversion). Both in eval mode, batch 1, float32.

- Same outputs: the largest |ours - HF| of the last layer's class and mask logits on one
  input, float64.
- Latency: one forward on the same normalised ``--size`` x ``--size`` image (ours: backbone
  and head, every layer's class and mask logits; HF: ``model(pixel_values)``, which computes
  them too), ``--runs`` runs each after one warm-up, the two in turns in one process
  (``_common.time_in_turns``); median and p90 of the wall-clock time, median of the process
  CPU time (all threads).
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

OUT = common.RESULTS / "published_mask2former.md"
MODEL_CONFIG = "configs/_base_/models/mask2former_swin-t.py"


def save_hf_model(folder: str) -> None:
    """A random HF Mask2Former Swin-T COCO panoptic (the published config.json's settings,
    HF's initialisation), saved to ``folder``."""
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        SwinConfig,
    )

    config = Mask2FormerConfig(
        backbone_config=SwinConfig(
            embed_dim=96,
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 24],
            window_size=7,
            drop_path_rate=0.3,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        num_queries=100,
        id2label={i: str(i) for i in range(133)},
    )
    torch.manual_seed(0)
    Mask2FormerForUniversalSegmentation(config).eval().save_pretrained(folder)


def load_models():
    """(HF model, our model) with the same random weights, eval, float32."""
    from mmengine.config import Config
    from transformers import Mask2FormerForUniversalSegmentation

    from visionfm.engine.checkpoint import load_model_weights
    from visionfm.registry import MODELS

    cfg = Config.fromfile(str(common.ROOT / MODEL_CONFIG))
    with tempfile.TemporaryDirectory() as folder:
        save_hf_model(folder)
        hf = Mask2FormerForUniversalSegmentation.from_pretrained(folder).eval()
        ours = MODELS.build(cfg.model).eval()
        load_model_weights(ours, folder)
    return hf, ours


def forwards(hf, ours, size: int, dtype: torch.dtype = torch.float32):
    """-> {'ours': fn, 'HF': fn}, each one forward on the same input, returning the last
    layer's (class logits (1, Q, K + 1), mask logits (1, Q, H / 4, W / 4))."""
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=dtype)

    def run_ours():
        out = ours.head(ours.extract_feat(x))
        return out["cls_logits"][-1], out["mask_logits"][-1]

    def run_hf():
        out = hf(pixel_values=x)
        return out.class_queries_logits, out.masks_queries_logits

    return {"ours": run_ours, "HF": run_hf}


def markdown(data: dict) -> str:
    lat = data["latency"]
    lines = [
        f"# Mask2Former Swin-T on CPU: ours vs HF ({data['date']})",
        "",
        common.run_line(data),
        "",
        f"Model (random weights, HF's initialisation, converted into ours by "
        f"`load_model_weights`): Mask2Former Swin-T COCO panoptic (`{MODEL_CONFIG}`), "
        f"{data['params_m']:.1f} M parameters; input {data['size']} x {data['size']} px, "
        "batch 1, eval, float32; every decoder layer's class and mask logits.",
        "",
        f"Same outputs (float64, one forward, last layer): class logits "
        f"{data['diff_cls']:.1e}, mask logits {data['diff_masks']:.1e}.",
        "",
        *common.busy_note(
            data,
            "**The machine was busy** (load average above the threads used): other "
            "processes took a share of the cores during these timings; the two models "
            "alternate, so their ratio is the figure to read.",
        ),
        *common.ours_vs_hf_rows(
            *({name: lat[name][key] for name in lat} for key in ("median_ms", "p90_ms", "cpu_ms")),
            data["peak_mib"],
        ),
        "",
        f"Median of {data['runs']} runs each after one warm-up, the two alternating in one "
        "process; CPU ms: the median process CPU time of a forward over all threads (less "
        "sensitive than wall-clock time to other processes on the machine). "
        + common.peak_sentence(data["peak_exact"]),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    args = common.ours_vs_hf_parser(__doc__, size=384, runs=5, out=OUT).parse_args()
    common.returning_freed_memory()

    torch.set_num_threads(args.threads)
    hf, ours = load_models()
    load_before = os.getloadavg()[0]
    (diff_cls, diff_masks), wall, cpu, peaks = common.compare_in_process(
        forwards, hf, ours, args.size, args.runs
    )
    data = dict(
        **common.run_facts("benchmarks/bench_published_mask2former.py", args.threads, load_before),
        params_m=sum(p.numel() for p in ours.parameters()) / 1e6,
        size=args.size,
        runs=args.runs,
        diff_cls=diff_cls,
        diff_masks=diff_masks,
        latency=common.latency_stats(wall, cpu),
        peak_mib={name: mib for name, (mib, _) in peaks.items()},
        peak_exact=all(exact for _, exact in peaks.values()),
    )
    common.write_results(args.out, markdown(data), args.json, data)
    print(markdown(data))


if __name__ == "__main__":
    main()
