"""Our DINO (TaskModel(TimmBackbone, DETRHead), converted weights) against detrex's own DINO
modules with the same random weights: every decoder layer's logits and boxes and the
two-stage logits, float64 (not a test: it needs a checkout of github.com/IDEA-Research/detrex).

detrex's ``DINOTransformer`` (encoder / decoder), ``ChannelMapper``, ``PositionEmbeddingSine``
and prediction heads are built as ``projects/dino/configs/models/dino_r50.py`` builds them, from
their files (detectron2, fairscale and detrex's compiled op stubbed out: on CPU their deformable
attention runs its pure-PyTorch path); their ``DINO.forward`` inference branch is followed step
by step (it needs detectron2's ImageList). The ResNet-50 is torchvision's, written under
detectron2's names (``tests/heads/test_dino_published.detrex_state``): detectron2's ResNet with
``stride_in_1x1=False`` and frozen batch norms computes the same. Ours is built by
``dino_model_config`` from that state dict and loaded strictly.

    git clone https://github.com/IDEA-Research/detrex /tmp/detrex
    .venv/bin/python benchmarks/dino_detrex.py --repo /tmp/detrex --size 75 411 --queries 700
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch
import torchvision
from torch import nn

from visionfm.data import DataSample
from visionfm.heads.detr.convert_dino import convert_dino_checkpoint, dino_model_config
from visionfm.registry import MODELS
from visionfm.weights import load_converted, read_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "heads"))
from test_dino_published import detrex_state  # noqa: E402

C, LAYERS, CLASSES = 256, 6, 80


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _package(name: str, **attrs):
    module = types.ModuleType(name)
    module.__path__ = []
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def detrex_modules(repo: Path) -> dict:
    """detrex's modules by file, without detectron2 / fairscale / its compiled op."""
    _package("detrex")
    _package("detrex._C")
    layers = _package("detrex.layers")
    _package("fairscale")
    _package("fairscale.nn")
    _package("fairscale.nn.checkpoint", checkpoint_wrapper=lambda m: m)
    for name in ("shape_spec", "conv", "mlp", "attention", "transformer",
                 "multi_scale_deform_attn", "position_embedding"):  # fmt: skip
        module = _load(f"detrex.layers.{name}", repo / f"detrex/layers/{name}.py")
        layers.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("_")})
    misc = _load("detrex.utils.misc", repo / "detrex/utils/misc.py")
    _package("detrex.utils", inverse_sigmoid=misc.inverse_sigmoid)
    neck = _load("detrex_channel_mapper", repo / "detrex/modeling/neck/channel_mapper.py")
    transformer = _load(
        "detrex_dino_transformer", repo / "projects/dino/modeling/dino_transformer.py"
    )
    return dict(layers=layers, misc=misc, neck=neck, transformer=transformer)


def their_dino(repo: Path, queries: int) -> tuple[nn.Module, callable]:
    """detrex's DINO-4scale R50 parts (random weights, float64, eval) and its inference."""
    m = detrex_modules(repo)
    layers, dt = m["layers"], m["transformer"]
    body = torchvision.models.resnet50()
    del body.fc
    shapes = {k: layers.ShapeSpec(channels=c) for k, c in (("res3", 512), ("res4", 1024), ("res5", 2048))}  # fmt: skip
    neck = m["neck"].ChannelMapper(
        input_shapes=shapes, in_features=list(shapes), out_channels=C, num_outs=4, kernel_size=1,
        norm_layer=nn.GroupNorm(num_groups=32, num_channels=C),
    )  # fmt: skip
    common = dict(embed_dim=C, num_heads=8, feedforward_dim=2048, attn_dropout=0.0,
                  ffn_dropout=0.0, num_layers=LAYERS, num_feature_levels=4)  # fmt: skip
    transformer = dt.DINOTransformer(
        encoder=dt.DINOTransformerEncoder(**common, post_norm=False),
        decoder=dt.DINOTransformerDecoder(**common, return_intermediate=True, use_checkpoint=False),
        num_feature_levels=4,
        two_stage_num_proposals=queries,
    )
    position = layers.PositionEmbeddingSine(
        num_pos_feats=128, temperature=10000, normalize=True, offset=-0.5
    )
    # DINO.__init__: num_layers + 1 deep copies, the last for the two-stage proposals
    class_embed = nn.ModuleList(nn.Linear(C, CLASSES) for _ in range(LAYERS + 1))
    bbox_embed = nn.ModuleList(layers.MLP(C, C, 4, 3) for _ in range(LAYERS + 1))
    transformer.decoder.class_embed, transformer.decoder.bbox_embed = class_embed, bbox_embed
    model = nn.Module()
    model.backbone, model.neck, model.transformer = body, neck, transformer
    model.class_embed, model.bbox_embed = class_embed, bbox_embed
    model.label_enc = nn.Embedding(CLASSES, C)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(
                torch.randn(p.shape, generator=gen) / (p[0].numel() if p.dim() > 1 else 4) ** 0.5
            )
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
                bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
    model = model.double().eval()

    def forward(x: torch.Tensor):
        """DINO.forward's inference branch (all-zero image masks, as detrex infers)."""
        f, feats = body.maxpool(body.relu(body.bn1(body.conv1(x)))), {}
        for name, stage in zip(("res2", "res3", "res4", "res5"),
                               (body.layer1, body.layer2, body.layer3, body.layer4)):  # fmt: skip
            f = feats[name] = stage(f)
        img_masks = x.new_zeros(x.shape[0], *x.shape[-2:])
        maps = neck({k: feats[k] for k in shapes})
        masks = [
            nn.functional.interpolate(img_masks[None], size=f.shape[-2:]).bool()[0] for f in maps
        ]
        states, init_ref, refs, enc_state, enc_ref = transformer(
            maps, masks, [position(k) for k in masks], (None, None), attn_masks=[None, None]
        )
        classes, coords = [], []
        for lvl in range(states.shape[0]):
            reference = m["misc"].inverse_sigmoid(init_ref if lvl == 0 else refs[lvl - 1])
            classes.append(class_embed[lvl](states[lvl]))
            coords.append((bbox_embed[lvl](states[lvl]) + reference).sigmoid())
        return torch.stack(classes), torch.stack(coords), class_embed[LAYERS](enc_state), enc_ref

    return model, forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="IDEA-Research/detrex checkout")
    parser.add_argument("--size", type=int, nargs=2, default=(75, 411), metavar=("H", "W"))
    parser.add_argument("--queries", type=int, default=700)
    opts = parser.parse_args()
    model, forward = their_dino(opts.repo.resolve(), opts.queries)
    state = read_checkpoint({"model": detrex_state(model)})
    ours = MODELS.build(dino_model_config(state)).double().eval()
    load_converted(ours, convert_dino_checkpoint(state, ours), strict=True)
    h, w = opts.size
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        logits, boxes, enc_logits, enc_boxes = forward(x)
        sample = DataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        out = ours.head(ours.backbone(x), [sample])
    border = (enc_boxes == 1).all(-1).sum().item()
    print(f"detrex DINO-4scale R50 (published layer sizes), {h}x{w}, {opts.queries} queries "
          f"({border} border proposals selected), max |logit| {logits.abs().max():.2f}; max abs "
          f"differences: logits (every layer) {(out['logits'] - logits).abs().max():.2e}, boxes "
          f"{(out['boxes'] - boxes).abs().max():.2e}, two-stage logits "
          f"{(out['enc_logits'] - enc_logits).abs().max():.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
