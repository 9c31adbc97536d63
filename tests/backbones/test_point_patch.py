"""Point-MAE patch transformer: packing, grouping / tokenizer and a full forward against a
reference written here from Point-MAE's description and module structure (its checkpoint
names and shapes), checkpoint conversion, bad input, and a tiny learning check.

Tiny: embed 32, 2 blocks, 2 heads, 8 groups of 8 points, clouds of 64-128 points, float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import randomize

from visionfm.backbones import PointPatchTransformer
from visionfm.backbones.point_patch import group_points
from visionfm.data.synthetic.points import make_shape_cloud
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, load_converted

DIM, DEPTH, HEADS, G, K = 32, 2, 2, 8, 8
TINY = dict(num_groups=G, group_size=K, embed_dim=DIM, depth=DEPTH, num_heads=HEADS)
SIZES = (64, 101, 128)


def clouds(sizes=SIZES, seed: int = 0, channels: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed float64 (N, 3 + channels) random clouds and their (B,) offsets."""
    gen = torch.Generator().manual_seed(seed)
    points = torch.randn(sum(sizes), 3 + channels, generator=gen).double()
    return points, torch.tensor(sizes).cumsum(0)


def tiny_model(**kw) -> PointPatchTransformer:
    model = randomize(PointPatchTransformer(**{**TINY, **kw}))
    gen = torch.Generator().manual_seed(3)
    for name, b in model.named_buffers():  # batch-norm statistics away from 0 / 1
        if name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=gen, dtype=b.dtype) + 0.5)
        elif name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=gen, dtype=b.dtype) * 0.5)
    return model


# -- a reference written from the paper / Point-MAE's modules --------------------------------
def ref_group(xyz: torch.Tensor, g: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One cloud (n, 3): FPS from point 0 (taking the farthest point each step), then the
    k nearest points of each centre minus the centre -> (g, k, 3), (g, 3)."""
    chosen, dist = [0], torch.full((xyz.shape[0],), float("inf"), dtype=xyz.dtype)
    for _ in range(g - 1):
        dist = torch.minimum(dist, ((xyz - xyz[chosen[-1]]) ** 2).sum(1))
        chosen.append(int(dist.argmax()))
    centre = xyz[chosen]
    near = torch.cdist(centre, xyz).argsort(dim=1, stable=True)[:, :k]
    return xyz[near] - centre[:, None], centre


def official_state(
    dim: int, depth: int, seed: int = 0, prefix: str = "", enc_dim: int | None = None
) -> dict:
    """Random tensors with the names and shapes of Point-MAE's ``PointTransformer``
    (``prefix='MAE_encoder.'``: its pre-training ``MaskTransformer``, plus decoder keys);
    ``enc_dim``: Point-BERT's ``PointTransformer`` (tokenizer width ``enc_dim`` and its
    ``reduce_dim`` projection)."""
    enc = enc_dim or dim
    shapes = {
        "encoder.first_conv.0.weight": (128, 3, 1),
        "encoder.first_conv.0.bias": (128,),
        "encoder.first_conv.3.weight": (256, 128, 1),
        "encoder.first_conv.3.bias": (256,),
        "encoder.second_conv.0.weight": (512, 512, 1),
        "encoder.second_conv.0.bias": (512,),
        "encoder.second_conv.3.weight": (enc, 512, 1),
        "encoder.second_conv.3.bias": (enc,),
        "pos_embed.0.weight": (128, 3),
        "pos_embed.0.bias": (128,),
        "pos_embed.2.weight": (dim, 128),
        "pos_embed.2.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    for bn, c in (("encoder.first_conv.1", 128), ("encoder.second_conv.1", 512)):
        shapes |= {f"{bn}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")}
    for i in range(depth):
        b = f"blocks.blocks.{i}."
        shapes |= {
            b + "norm1.weight": (dim,),
            b + "norm1.bias": (dim,),
            b + "attn.qkv.weight": (3 * dim, dim),  # qkv_bias=False
            b + "attn.proj.weight": (dim, dim),
            b + "attn.proj.bias": (dim,),
            b + "norm2.weight": (dim,),
            b + "norm2.bias": (dim,),
            b + "mlp.fc1.weight": (4 * dim, dim),
            b + "mlp.fc1.bias": (4 * dim,),
            b + "mlp.fc2.weight": (dim, 4 * dim),
            b + "mlp.fc2.bias": (dim,),
        }
    if enc_dim:
        shapes |= {"reduce_dim.weight": (dim, enc_dim), "reduce_dim.bias": (dim,)}
    if not prefix:
        shapes |= {"cls_token": (1, 1, dim), "cls_pos": (1, 1, dim)}
        shapes |= {"cls_head_finetune.0.weight": (256, 2 * dim), "cls_head_finetune.0.bias": (256,)}
    gen = torch.Generator().manual_seed(seed)
    state = {prefix + n: torch.randn(s, generator=gen).double() * 0.2 for n, s in shapes.items()}
    for n in state:
        if n.endswith("running_var"):
            state[n] = state[n].abs() + 0.5
    for bn in ("encoder.first_conv.1", "encoder.second_conv.1"):  # BatchNorm1d's counter
        state[f"{prefix}{bn}.num_batches_tracked"] = torch.tensor(100)
    if prefix:
        state |= {"MAE_decoder.norm.weight": torch.ones(dim), "mask_token": torch.zeros(1, 1, dim)}
    return state


def ref_tokenize(s: dict, groups: torch.Tensor) -> torch.Tensor:
    """(g, k, 3) -> (g, C): per-point MLP, max, concat, MLP, max (eval batch norm)."""

    def mlp(x, p):  # x (g, k, c_in)
        x = F.linear(x, s[p + ".0.weight"][..., 0], s[p + ".0.bias"])
        x = (x - s[p + ".1.running_mean"]) / (s[p + ".1.running_var"] + 1e-5).sqrt()
        x = F.relu(x * s[p + ".1.weight"] + s[p + ".1.bias"])
        return F.linear(x, s[p + ".3.weight"][..., 0], s[p + ".3.bias"])

    f = mlp(groups, "encoder.first_conv")
    f = torch.cat([f.amax(1, keepdim=True).expand_as(f), f], -1)
    return mlp(f, "encoder.second_conv").amax(1)


def ref_blocks(s: dict, x: torch.Tensor, pos: torch.Tensor, depth: int, heads: int):
    """Point-MAE's TransformerEncoder (position added before every block) and final norm on
    one cloud's tokens (n, c)."""
    n, c = x.shape
    for i in range(depth):
        b = f"blocks.blocks.{i}."
        p = {n.removeprefix(b): v for n, v in s.items() if n.startswith(b)}.__getitem__
        x = x + pos
        h = F.layer_norm(x, (c,), p("norm1.weight"), p("norm1.bias"))
        q, k, v = (h @ p("attn.qkv.weight").T).view(n, 3, heads, c // heads).permute(1, 2, 0, 3)
        a = ((q @ k.transpose(1, 2)) * (c // heads) ** -0.5).softmax(-1) @ v
        x = x + F.linear(
            a.transpose(0, 1).reshape(n, c), p("attn.proj.weight"), p("attn.proj.bias")
        )
        h = F.layer_norm(x, (c,), p("norm2.weight"), p("norm2.bias"))
        h = F.linear(
            F.gelu(F.linear(h, p("mlp.fc1.weight"), p("mlp.fc1.bias"))),
            p("mlp.fc2.weight"),
            p("mlp.fc2.bias"),
        )
        x = x + h
    return F.layer_norm(x, (c,), s["norm.weight"], s["norm.bias"])


def ref_pos(s: dict, centre: torch.Tensor) -> torch.Tensor:
    return F.linear(
        F.gelu(F.linear(centre, s["pos_embed.0.weight"], s["pos_embed.0.bias"])),
        s["pos_embed.2.weight"],
        s["pos_embed.2.bias"],
    )


def ref_forward(s: dict, xyz: torch.Tensor, depth: int, heads: int) -> dict:
    """One cloud through Point-MAE's PointTransformer (without its classifier)."""
    groups, centre = ref_group(xyz, G, K)
    x = ref_tokenize(s, groups)
    if "reduce_dim.weight" in s:
        x = F.linear(x, s["reduce_dim.weight"], s["reduce_dim.bias"])
    pos = ref_pos(s, centre)
    x, pos = torch.cat([s["cls_token"][0], x]), torch.cat([s["cls_pos"][0], pos])
    x = ref_blocks(s, x, pos, depth, heads)
    return {"tokens": x[1:], "centres": centre, "pooled": torch.cat([x[0], x[1:].amax(0)])}


# -- tests -----------------------------------------------------------------------------------
def test_packed_batch_equals_each_cloud_alone():
    model = tiny_model()
    points, offsets = clouds(channels=2)
    with torch.no_grad():
        out = model(points, offsets)
        start = 0
        for b, end in enumerate(offsets.tolist()):
            alone = model(points[start:end], torch.tensor([end - start]))
            for key in ("tokens", "centres", "pooled"):
                torch.testing.assert_close(out[key][b], alone[key][0], rtol=0, atol=1e-12)
            torch.testing.assert_close(
                out["points"][start:end], alone["points"], rtol=0, atol=1e-12
            )
            start = end
    assert out["tokens"].shape == (3, G, DIM) and out["pooled"].shape == (3, 2 * DIM)
    assert out["points"].shape == (len(points), DIM)
    assert model.out_channels == {"tokens": DIM, "pooled": 2 * DIM, "points": DIM}


def test_point_features_at_a_centre_are_its_token():
    """A centre is an input point at distance 0 from itself: its interpolated feature is
    its token's (the other two neighbours' weights are ~1e-8 / distance)."""
    model = tiny_model()
    points, offsets = clouds(channels=0)
    with torch.no_grad():
        out = model(points, offsets)
    start = 0
    for b, end in enumerate(offsets.tolist()):
        cloud = points[start:end, :3]
        at = torch.cdist(out["centres"][b], cloud).argmin(1)  # each centre's own row
        torch.testing.assert_close(out["points"][start + at], out["tokens"][b], rtol=0, atol=1e-5)
        start = end


def test_grouping_and_tokenizer_equal_reference():
    model = tiny_model()
    points, offsets = clouds()
    groups, centres = group_points(points, offsets, G, K)
    state = {
        "encoder." + k.removeprefix("tokenizer."): v
        for k, v in model.state_dict().items()
        if k.startswith("tokenizer.")
    }
    with torch.no_grad():
        tokens = model.tokenizer(groups)
    start = 0
    for b, end in enumerate(offsets.tolist()):
        ref_groups, ref_centres = ref_group(points[start:end], G, K)
        torch.testing.assert_close(centres[b], ref_centres, rtol=0, atol=0)
        torch.testing.assert_close(groups[b], ref_groups, rtol=0, atol=0)
        diff = (tokens[b] - ref_tokenize(state, ref_groups)).abs().max()
        assert diff <= 1e-10, diff
        start = end


def test_official_finetune_checkpoint_equals_reference_forward():
    state = official_state(DIM, DEPTH)
    model = PointPatchTransformer(**TINY).double().eval()
    converted = model.convert_checkpoint(state)
    report = load_converted(model, converted, strict=True)
    assert report.ok and report.ignored == [
        "cls_head_finetune.0.weight",
        "cls_head_finetune.0.bias",
    ]
    points, offsets = clouds()
    with torch.no_grad():
        out = model(points, offsets)
    start = 0
    for b, end in enumerate(offsets.tolist()):
        ref = ref_forward(state, points[start:end], DEPTH, HEADS)
        for key in ("tokens", "centres", "pooled"):
            diff = (out[key][b] - ref[key]).abs().max()
            assert diff <= 1e-10, (key, diff)
        start = end


def test_official_pretrain_checkpoint_loads_without_class_token():
    state = official_state(DIM, DEPTH, prefix="MAE_encoder.")
    with pytest.raises(CheckpointError, match="strict=True and keys are missing"):
        PointPatchTransformer(**TINY).double().load_pretrained(state, strict=True)
    model = PointPatchTransformer(**TINY, class_token=False).double()
    report = model.load_pretrained(state, strict=True)
    assert report.ok and set(report.ignored) == {"MAE_decoder.norm.weight", "mask_token"}
    torch.testing.assert_close(model.norm.weight, state["MAE_encoder.norm.weight"])
    assert model.out_channels["pooled"] == DIM


def test_pretrain_checkpoint_fine_tunes_a_model_with_a_class_token():
    """Point-MAE's fine-tuning: the pre-trained encoder + a fresh class token (not strict);
    a fine-tuning layout without the class token is still refused."""
    state = official_state(DIM, DEPTH, prefix="MAE_encoder.")
    model = PointPatchTransformer(**TINY).double()
    cls_before = model.cls_token.detach().clone()
    report = model.load_pretrained(state)
    assert {n for n, _ in report.missing} == {"cls_token", "cls_pos"}
    assert any("no class token" in note for note in report.notes)
    torch.testing.assert_close(model.cls_token, cls_before, rtol=0, atol=0)
    torch.testing.assert_close(model.norm.weight, state["MAE_encoder.norm.weight"])
    finetune_layout = {k.removeprefix("MAE_encoder."): v for k, v in state.items()}
    with pytest.raises(CheckpointError, match="class_token=False"):
        PointPatchTransformer(**TINY).double().load_pretrained(finetune_layout)


def test_unknown_checkpoint_key_is_refused():
    state = official_state(DIM, DEPTH) | {"group_divider.extra": torch.zeros(DIM)}
    with pytest.raises(CheckpointError, match="group_divider.extra"):
        PointPatchTransformer(**TINY).convert_checkpoint(state)


def test_point_bert_checkpoint_equals_reference_forward():
    """Point-BERT's pre-training layout (``module.transformer_q.*`` beside the momentum
    encoder, dVAE and queue) into ``tokenizer_dim=48``, then its fine-tuned forward."""
    inner = official_state(DIM, DEPTH, enc_dim=48)
    state = {"module.transformer_q." + k: v for k, v in inner.items()}
    extra = ("transformer_k.norm.weight", "dvae.codebook", "queue", "queue_ptr")
    extra += ("transformer_q.lm_head.weight", "transformer_q.cls_head.0.weight")
    state |= {"module." + k: torch.zeros(2) for k in extra + ("transformer_q.mask_token",)}
    with pytest.raises(CheckpointError, match="tokenizer_dim=48"):
        PointPatchTransformer(**TINY).double().load_pretrained(state, strict=True)
    model = PointPatchTransformer(**TINY, tokenizer_dim=48).double().eval()
    report = model.load_pretrained(state, strict=True)
    assert report.ok and len(report.ignored) == 2 + 7
    points, offsets = clouds()
    with torch.no_grad():
        out = model(points, offsets)
    ref = ref_forward(inner, points[: int(offsets[0])], DEPTH, HEADS)
    for key in ("tokens", "centres", "pooled"):
        diff = (out[key][0] - ref[key]).abs().max()
        assert diff <= 1e-10, (key, diff)
    assert model.layer_ids()["reduce_dim.weight"] == 0


@pytest.mark.parametrize(
    ("sizes", "kw", "match"),
    [
        ((64, 5), {}, "cloud 1 has 5 points, fewer than"),
        ((64, 20), dict(num_groups=24), "cloud 1 has 20 points.*num_groups=24"),
    ],
)
def test_too_small_cloud_is_refused(sizes, kw, match):
    points, offsets = clouds(sizes)
    with pytest.raises(ValueError, match=match):
        tiny_model(**kw)(points, offsets)


def test_nan_coordinate_names_the_cloud():
    points, offsets = clouds()
    points[70, 1] = float("nan")
    with pytest.raises(ValueError, match="cloud 1 has a NaN"):
        tiny_model()(points, offsets)
    with pytest.raises(ValueError, match=r"\(N, 3 \+ C\)"):
        tiny_model()(points[:, :2], offsets)


def test_registry_layer_ids_and_grad_checkpointing():
    model = MODELS.build(dict(type="PointPatchTransformer", **TINY)).double()
    ids = model.layer_ids()
    assert ids["tokenizer.first_conv.0.weight"] == ids["cls_pos"] == 0
    assert ids["blocks.1.attn.qkv.weight"] == 2 and ids["norm.weight"] == DEPTH + 1
    points, offsets = clouds()
    model.eval()
    ref = model(points, offsets)["pooled"]
    model.set_grad_checkpointing()
    out = model(points, offsets)["pooled"]
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    assert model.blocks[0].attn.qkv.weight.grad is not None


def test_tiny_model_learns_three_shapes():
    """Sphere / cube / torus in random poses, linear head on ``pooled``: 80 AdamW steps of 16
    clouds (about 20 s on 2 CPU cores) take held-out accuracy from chance to >= 0.7."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = PointPatchTransformer(**{**TINY, "num_groups": 16, "group_size": 16})
    head = torch.nn.Linear(2 * DIM, 3)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=2e-3)
    shapes = (0, 1, 4)  # SHAPES: sphere, cube, torus

    def batch(n):
        coords = [make_shape_cloud(rng, shapes[i % 3], 96).coord for i in range(n)]
        labels = torch.arange(n) % 3
        return torch.from_numpy(np.concatenate(coords)), torch.full((n,), 96).cumsum(0), labels

    def accuracy():
        model.eval()
        points, offsets, labels = batch(30)
        with torch.no_grad():
            acc = (head(model(points, offsets)["pooled"]).argmax(1) == labels).float().mean()
        model.train()
        return float(acc)

    before = accuracy()
    for _ in range(80):
        points, offsets, labels = batch(16)
        loss = F.cross_entropy(head(model(points, offsets)["pooled"]), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    assert after >= 0.7 and after >= before + 0.2, (before, after)


@pytest.mark.parametrize(
    ("name", "tokenizer_width"), [("point_mae_base", 384), ("point_bert_base", 256)]
)
def test_presets(name, tokenizer_width):
    model = MODELS.build(dict(type=name, depth=1))
    assert model.out_channels == {"tokens": 384, "pooled": 768, "points": 384}
    assert model.tokenizer.out_dim == tokenizer_width and model.num_groups == 64


def test_frozen_stages_freeze_stem_and_first_block():
    model = PointPatchTransformer(**TINY, tokenizer_dim=16, frozen_stages=1).train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"cls_token", "cls_pos", "reduce_dim.weight", "blocks.0.attn.qkv.weight"} <= frozen
    assert not any(n.startswith(("blocks.1.", "norm.")) for n in frozen)
    assert not model.tokenizer.training and model.blocks[1].training  # frozen BN stays in eval


def test_released_file_wrapping_loads(tmp_path):
    """The released .pth files hold ``{'base_model': weights, 'optimizer': ..., 'epoch': ...}``
    (Point-BERT's with DDP's ``module.`` prefix): read from disk and loaded strictly."""
    state = {f"module.{k}": v for k, v in official_state(DIM, DEPTH, prefix="MAE_encoder.").items()}
    path = tmp_path / "pretrain.pth"
    torch.save(dict(base_model=state, optimizer=dict(state={}), epoch=300), path)
    model = PointPatchTransformer(**TINY, class_token=False).double()
    report = model.load_pretrained(str(path), strict=True)
    assert report.ok
    torch.testing.assert_close(model.norm.weight, state["module.MAE_encoder.norm.weight"])
    built = MODELS.build(  # the config route: model.backbone.pretrained=PATH
        dict(type="PointPatchTransformer", **TINY, class_token=False, pretrained=str(path))
    )
    torch.testing.assert_close(
        built.blocks[1].mlp.fc2.weight.double(), model.blocks[1].mlp.fc2.weight
    )


def test_masked_encoder_equals_reference_on_visible_groups():
    """Point-MAE's pre-training encoder (MaskTransformer): tokens and positions of the
    visible groups only, no class token; masked groups change nothing."""
    state = official_state(DIM, DEPTH, prefix="MAE_encoder.")
    inner = {k.removeprefix("MAE_encoder."): v for k, v in state.items()}
    model = PointPatchTransformer(**TINY, class_token=False).double().eval()
    model.load_pretrained(state, strict=True)
    points, offsets = clouds()
    groups, centres = model.group(points, offsets)
    gen = torch.Generator().manual_seed(1)
    mask = torch.rand(3, G, generator=gen).argsort(1) < 5  # 5 of 8 masked per cloud
    with torch.no_grad():
        visible = model.encode_groups(groups, centres, mask)
        moved = groups.clone()
        moved[mask] += 1.0  # masked groups' content must not reach the visible tokens
        torch.testing.assert_close(model.encode_groups(moved, centres, mask), visible)
    assert visible.shape == (3, 3, DIM)
    start = 0
    for b, end in enumerate(offsets.tolist()):
        ref_groups, ref_centres = ref_group(points[start:end], G, K)
        keep = ~mask[b]
        x = ref_tokenize(inner, ref_groups[keep])
        ref = ref_blocks(inner, x, ref_pos(inner, ref_centres[keep]), DEPTH, HEADS)
        assert (visible[b] - ref).abs().max() <= 1e-10
        start = end
    with torch.no_grad():  # an all-visible mask is the plain forward
        none = torch.zeros(3, G, dtype=torch.bool)
        torch.testing.assert_close(
            model.encode_groups(groups, centres, none), model(points, offsets)["tokens"]
        )


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.zeros(3, G + 1, dtype=torch.bool), r"mask must be bool \(B, G\) = \(3, 8\)"),
        (torch.zeros(3, G), "got torch.float32"),
        (
            torch.zeros(3, G, dtype=torch.bool).index_fill(1, torch.tensor([0]), True)
            & torch.tensor([[True], [False], [True]]),
            r"same number .* got \[7, 8, 7\]",
        ),
        (torch.tensor([[True] * G, [False] * G, [False] * G]), r"got \[0, 8, 8\]"),
    ],
)
def test_bad_mask_is_refused(mask, match):
    model = tiny_model(class_token=False)
    points, offsets = clouds()
    groups, centres = model.group(points, offsets)
    with pytest.raises(ValueError, match=match):
        model.encode_groups(groups, centres, mask)


# -- the published classifier family (visionfm.models.convert_point_mae) ---------------------
def official_head(dim: int, hidden: tuple[int, ...], classes: int, seed: int = 5) -> dict:
    """Random tensors with the names and shapes of Point-MAE's ``cls_head_finetune``
    (Linear - BatchNorm1d - ReLU - Dropout per hidden width, then a Linear)."""
    gen = torch.Generator().manual_seed(seed)
    state, c_in = {}, 2 * dim
    for j, width in enumerate((*hidden, classes)):
        p = f"cls_head_finetune.{4 * j}."
        state[p + "weight"] = torch.randn(width, c_in, generator=gen).double() * 0.2
        state[p + "bias"] = torch.randn(width, generator=gen).double() * 0.2
        if j < len(hidden):
            bn = f"cls_head_finetune.{4 * j + 1}."
            state[bn + "weight"] = torch.randn(width, generator=gen).double() * 0.5 + 1
            state[bn + "bias"] = torch.randn(width, generator=gen).double() * 0.5
            state[bn + "running_mean"] = torch.randn(width, generator=gen).double() * 0.5
            state[bn + "running_var"] = torch.rand(width, generator=gen).double() + 0.5
            state[bn + "num_batches_tracked"] = torch.tensor(100)
        c_in = width
    return state


def ref_head(s: dict, pooled: torch.Tensor, hidden: int) -> torch.Tensor:
    """Point-MAE's cls_head_finetune in eval mode (dropout off, batch norm statistics)."""
    x = pooled
    for j in range(hidden):
        p, bn = f"cls_head_finetune.{4 * j}.", f"cls_head_finetune.{4 * j + 1}."
        x = F.linear(x, s[p + "weight"], s[p + "bias"])
        x = (x - s[bn + "running_mean"]) / (s[bn + "running_var"] + 1e-5).sqrt()
        x = F.relu(x * s[bn + "weight"] + s[bn + "bias"])
    last = f"cls_head_finetune.{4 * hidden}."
    return F.linear(x, s[last + "weight"], s[last + "bias"])


@pytest.mark.parametrize("wrap", ["plain", "module"])
def test_published_classifier_equals_reference_logits(tmp_path, wrap):
    """A Point-MAE fine-tuned file (``{'base_model': ...}``, maybe with ``module.``): its
    family is found, sizes the model from the tensors, loads strictly, and the logits equal
    Point-MAE's PointTransformer forward (encoder + cls_head_finetune) in float64."""
    from visionfm.engine.checkpoint import load_model_weights
    from visionfm.models.published import find_family

    state = official_state(DIM, DEPTH) | official_head(DIM, (24, 16), classes=5)
    prefix = "module." if wrap == "module" else ""
    path = tmp_path / "modelnet_1k.pth"
    torch.save(dict(base_model={prefix + k: v for k, v in state.items()}, epoch=3), path)
    family = find_family({prefix + k: v for k, v in state.items()})
    assert family is not None and family.name == "point_mae_classifier"
    cfg = family.model_config(state, None)
    assert cfg["backbone"] == dict(
        type="PointPatchTransformer", num_groups=64, group_size=32, embed_dim=DIM, depth=DEPTH,
        num_heads=6, class_token=True,
    )  # fmt: skip
    assert cfg["head"] == dict(
        type="PointClsHead", num_classes=5, in_channels=2 * DIM, hidden_dims=(24, 16)
    )
    cfg["backbone"].update(num_groups=G, group_size=K, num_heads=HEADS)  # not in the tensors
    model = MODELS.build(cfg).double().eval()
    assert load_model_weights(model, str(path)) == {}  # strict: raises on any leftover
    points, offsets = clouds()
    with torch.no_grad():
        logits = model(dict(points=points, offsets=offsets), mode="tensor")
    start = 0
    for b, end in enumerate(offsets.tolist()):
        pooled = ref_forward(state, points[start:end], DEPTH, HEADS)["pooled"]
        diff = (logits[b] - ref_head(state, pooled[None], 2)[0]).abs().max()
        assert diff <= 1e-10, diff
        start = end


def test_published_classifier_family_is_specific():
    """Pre-training files and our own checkpoints are not this family's; a head of other
    depth is refused naming hidden_dims."""
    from visionfm.models.convert_point_mae import convert_point_mae_checkpoint
    from visionfm.models.published import find_family

    assert find_family(official_state(DIM, DEPTH, prefix="MAE_encoder.")) is None
    state = official_state(DIM, DEPTH) | official_head(DIM, (24,), classes=5)
    model = MODELS.build(
        dict(
            type="PointModel",
            backbone=dict(type="PointPatchTransformer", **TINY),
            head=dict(type="PointClsHead", num_classes=5, in_channels=2 * DIM, hidden_dims=(8, 8)),
        )
    )
    assert find_family(model.state_dict()) is None
    with pytest.raises(CheckpointError, match=r"set the head's hidden_dims to \[24\]"):
        convert_point_mae_checkpoint(state, model)


def test_convert_checkpoint_writes_a_point_config(tmp_path):
    """tools/convert_checkpoint.py on a 40-class Point-MAE classifier without --config: the
    written config is a PointModel with ModelNet40's test data, metric and class names (not
    the image defaults); Inferencer on the folder predicts a point cloud with it."""
    import importlib.util
    from pathlib import Path

    from visionfm.apis import Inferencer
    from visionfm.engine.config import load_config

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "convert_tool", root / "tools/convert_checkpoint.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    state = official_state(48, 1) | official_head(48, (16,), classes=40)
    torch.save(dict(base_model=state), tmp_path / "modelnet_1k.pth")
    tool.convert(str(tmp_path / "modelnet_1k.pth"), str(tmp_path / "out"))
    cfg = load_config(str(tmp_path / "out/config.py"))
    assert cfg.model.type == "PointModel"
    assert cfg.model.data_preprocessor.type == "PointDataPreprocessor"
    assert cfg.test_dataloader.dataset.type == "ModelNetDataset"
    assert cfg.test_evaluator.type == "PointClsMetric"
    assert cfg.metainfo.classes[23] == "night_stand" and len(cfg.metainfo.classes) == 40
    inferencer = Inferencer(str(tmp_path / "out"))
    cloud = make_shape_cloud(np.random.default_rng(0), 1, 700)
    sample = inferencer(cloud.coord)
    assert sample.pred_score.shape == (40,) and 0 <= int(sample.pred_label) < 40
