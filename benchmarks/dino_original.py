"""Our DINO (TaskModel(TimmBackbone, DETRHead), converted weights) against IDEA-Research/DINO's
own code with the same random weights: every decoder layer's logits and boxes, the two-stage
logits, float64 (not a test: it needs a checkout of github.com/IDEA-Research/DINO).

Their model is built by their ``build_dino`` from their ``config/DINO/DINO_{4,5}scale.py``
(fewer layers / queries / a narrower FFN to keep it fast), their compiled deformable-attention
op replaced by their own pure-PyTorch ``ms_deform_attn_core_pytorch``, random weights and
frozen batch-norm statistics; ours is built by ``dino_model_config`` from their state dict and
args and loaded strictly. ``--queries`` near the number of encoder tokens makes the two-stage
top-k select border tokens (full-image boxes), where the references' logit clamp
(``logit_eps=1e-3``) matters: the script also reports ours with HF's 1e-5.

    git clone https://github.com/IDEA-Research/DINO /tmp/DINO
    .venv/bin/python benchmarks/dino_original.py --repo /tmp/DINO --size 75 411 --queries 700
"""

from __future__ import annotations

import argparse
import runpy
import sys
import types
from pathlib import Path

import torch

from visionfm.data import DataSample
from visionfm.heads.detr.convert_dino import convert_dino_checkpoint, dino_model_config
from visionfm.registry import MODELS
from visionfm.weights import load_converted, read_checkpoint


def their_dino(repo: Path, levels: int, queries: int, full: bool = False):
    """IDEA-Research/DINO's model (random weights, float64, eval) and its args; ``full``: the
    published sizes (6 + 6 layers, FFN 2048), else 2 + 3 layers and FFN 512."""
    sys.path.insert(0, str(repo))
    sys.modules.setdefault("MultiScaleDeformableAttention", types.ModuleType("MSDA"))
    from models.dino.ops.functions import ms_deform_attn_func as op  # noqa: PLC0415

    def pytorch_op(value, shapes, start, locations, weights, step):
        return op.ms_deform_attn_core_pytorch(value, shapes, locations, weights)

    op.MSDeformAttnFunction.apply = staticmethod(pytorch_op)
    import models.dino.backbone as backbone  # noqa: PLC0415

    backbone.is_main_process = lambda: False  # torchvision ResNet without downloaded weights
    from models.dino.dino import build_dino  # noqa: PLC0415

    cfg = dict(runpy.run_path(str(repo / f"config/DINO/DINO_{levels}scale.py")))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(num_queries=queries, device="cpu", dn_labelbook_size=91, num_classes=91)
    if not full:
        cfg.update(enc_layers=2, dec_layers=3, dim_feedforward=512)
    args = argparse.Namespace(**cfg)
    model = build_dino(args)[0]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.randn(p.shape, generator=gen) / (p[0].numel() if p.dim() > 1 else 4) ** 0.5
            )
        for m in model.modules():
            if type(m).__name__ == "FrozenBatchNorm2d":
                for name, shift, scale in (
                    ("weight", 0.5, 1),
                    ("bias", 0, 0.1),
                    ("running_mean", 0, 0.1),
                    ("running_var", 0.5, 1),
                ):
                    buf = getattr(m, name)
                    noise = torch.rand if shift else torch.randn
                    buf.copy_(noise(buf.shape, generator=gen) * scale + shift)  # fmt: skip
    return model.double().eval(), args


def _batch(sizes: list[tuple[int, int]]) -> tuple[list[torch.Tensor], torch.Tensor, list]:
    """Images of ``sizes`` (float64 noise), their bottom / right zero-padded batch and samples."""
    gen = torch.Generator().manual_seed(1)
    images = [torch.randn(3, h, w, generator=gen).double() for h, w in sizes]
    hmax, wmax = max(h for h, _ in sizes), max(w for _, w in sizes)
    batch = torch.zeros(len(images), 3, hmax, wmax).double()
    samples = []
    for i, (img, (h, w)) in enumerate(zip(images, sizes)):
        batch[i, :, :h, :w] = img
        meta = dict(img_shape=(h, w), ori_shape=(h, w), batch_input_shape=(hmax, wmax))
        samples.append(DataSample(metainfo=meta))
    return images, batch, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="IDEA-Research/DINO checkout")
    parser.add_argument("--size", type=int, nargs=2, default=(75, 411), metavar=("H", "W"))
    parser.add_argument("--second", type=int, nargs=2, metavar=("H", "W"),
                        help="a second image of this size: a padded batch of two")  # fmt: skip
    parser.add_argument("--levels", type=int, default=4, choices=(4, 5))
    parser.add_argument("--queries", type=int, default=700)
    parser.add_argument("--full", action="store_true", help="the published layer sizes")
    opts = parser.parse_args()
    theirs, args = their_dino(opts.repo.resolve(), opts.levels, opts.queries, opts.full)
    from util.misc import nested_tensor_from_tensor_list  # noqa: PLC0415 (their repo)

    state = read_checkpoint({"model": theirs.state_dict(), "args": args})
    ours = MODELS.build(dino_model_config(state)).double().eval()
    load_converted(ours, convert_dino_checkpoint(state, ours), strict=True)
    sizes = [tuple(opts.size)] + ([tuple(opts.second)] if opts.second else [])
    images, batch, samples = _batch(sizes)
    with torch.no_grad():
        ref = theirs(nested_tensor_from_tensor_list(images))
        layers = [*ref["aux_outputs"], ref]
        ref_logits = torch.stack([o["pred_logits"] for o in layers])
        ref_boxes = torch.stack([o["pred_boxes"] for o in layers])
        border = (ref["interm_outputs"]["pred_boxes"] == 1).all(-1).sum().item()
        rows = []
        for eps in (1e-3, 1e-5):
            ours.head.decoder.logit_eps = eps
            out = ours.head(ours.backbone(batch), samples)
            rows.append((eps, (out["logits"] - ref_logits).abs().max().item(),
                         (out["boxes"] - ref_boxes).abs().max().item(),
                         (out["enc_logits"] - ref["interm_outputs"]["pred_logits"]).abs().max().item()))  # fmt: skip
    what = "published layer sizes" if opts.full else "2 + 3 layers, FFN 512"
    shown = " + ".join(f"{h}x{w}" for h, w in sizes) + (" (padded batch)" if opts.second else "")
    print(f"DINO-{opts.levels}scale ({what}), {shown}, {opts.queries} queries ({border} border "
          f"proposals selected), max |logit| {ref_logits.abs().max():.2f}; max abs differences:")  # fmt: skip
    print("| logit_eps | logits (every layer) | boxes (every layer) | two-stage logits |")
    print("|---|---|---|---|")
    for eps, dl, db, de in rows:
        print(f"| {eps:g} | {dl:.2e} | {db:.2e} | {de:.2e} |")


if __name__ == "__main__":
    main()
