"""PVT v2 backbone: equality with timm / Hugging Face / original-repo weights, and options.

Reference models are tiny (widths 16-64, 5 blocks) with random weights, compared in float64
at a non-default, non-square input size (96 x 128 -> levels 24x32 .. 3x4), for both the
spatial-reduction and the linear attention.
"""

from __future__ import annotations

import re

import pytest
import timm
import torch
from _helpers import image, randomize
from timm.models.pvt_v2 import PyramidVisionTransformerV2 as TimmPvt
from timm.models.vision_transformer import VisionTransformer

from visionfm.backbones.pvt import PVT_PRESETS, PyramidVisionTransformerV2
from visionfm.registry import MODELS, ConfigError
from visionfm.weights import CheckpointError

T = pytest.importorskip("transformers")

TINY = dict(
    depths=(2, 1, 1, 1), embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 3, 4),
    sr_ratios=(8, 4, 2, 1), mlp_ratios=(2, 2, 2, 2),
)  # fmt: skip
H, W = 96, 128
SIZES = {"p2": (24, 32), "p3": (12, 16), "p4": (6, 8), "p5": (3, 4)}


def ours_from(checkpoint, **kwargs) -> PyramidVisionTransformerV2:
    model = PyramidVisionTransformerV2(**{**TINY, **kwargs})
    report = model.load_pretrained(checkpoint)
    assert not report.missing and not report.unexpected and not report.mismatched, str(report)
    return model.double().eval()


def assert_levels_close(ours: dict, expected: list, tol: float = 1e-5) -> None:
    assert list(ours) == list(SIZES)
    for (name, a), b in zip(ours.items(), expected):
        assert a.shape == b.shape == (a.shape[0], a.shape[1], *SIZES[name]), (a.shape, b.shape)
        diff = (a - b).abs().max().item()
        assert diff <= tol, f"{name}: max abs diff {diff:.3g} > {tol}"
        assert b.abs().max() > 0.1  # the comparison is not vacuous


def timm_reference(linear: bool) -> TimmPvt:
    return randomize(TimmPvt(**TINY, linear=linear, num_classes=5))


def to_original_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm names -> the whai362/PVT names (what timm's own filter undoes)."""
    out = {}
    for k, v in sd.items():
        k = k.replace("patch_embed.", "patch_embed1.")
        k = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"patch_embed{int(m[1]) + 1}.", k)
        k = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"block{int(m[1]) + 1}.", k)
        k = re.sub(r"^stages\.(\d+)\.norm\.", lambda m: f"norm{int(m[1]) + 1}.", k)
        out[k.replace(".mlp.dwconv.", ".mlp.dwconv.dwconv.")] = v
    return out


# -- equality with reference implementations ---------------------------------------------
@pytest.mark.parametrize("linear", [False, True], ids=["sra", "linear"])
def test_matches_timm(tmp_path, linear):
    ref = timm_reference(linear)
    path = tmp_path / "pvt.pth"
    torch.save({"state_dict": {k: v.float() for k, v in ref.state_dict().items()}}, path)
    ours = ours_from(path, linear=linear)
    x = image(H, W)
    expected = ref.float().double().forward_intermediates(x, intermediates_only=True)
    assert_levels_close(ours(x), expected)


@pytest.mark.parametrize("linear", [False, True], ids=["sra", "linear"])
def test_matches_original_repo_format(linear):
    """whai362/PVT layout (detection checkpoints keep it under ``backbone.``)."""
    ref = timm_reference(linear)
    orig = {f"backbone.{k}": v for k, v in to_original_layout(ref.state_dict()).items()}
    assert "backbone.block1.1.mlp.dwconv.dwconv.weight" in orig and "backbone.norm4.bias" in orig
    model = PyramidVisionTransformerV2(**TINY, linear=linear)
    report = model.load_pretrained({"meta": {}, "state_dict": orig})
    assert report.ok and report.source_format == "PVT v2 (original repo)", str(report)
    assert report.ignored == ["backbone.head.weight", "backbone.head.bias"]
    x = image(H, W)
    expected = ref.forward_intermediates(x, intermediates_only=True)
    assert_levels_close(model.double().eval()(x), expected)


def _hf_config(linear: bool):
    return T.PvtV2Config(
        depths=list(TINY["depths"]), hidden_sizes=list(TINY["embed_dims"]),
        num_attention_heads=list(TINY["num_heads"]), sr_ratios=list(TINY["sr_ratios"]),
        mlp_ratios=list(TINY["mlp_ratios"]), linear_attention=linear, num_labels=3,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip


@pytest.mark.parametrize(
    "kind, linear",
    [("PvtV2Model", False), ("PvtV2ForImageClassification", True), ("PvtV2Backbone", False)],
)
def test_matches_huggingface(tmp_path, kind, linear):
    torch.manual_seed(0)
    ref = randomize(getattr(T, kind)(_hf_config(linear)))
    if kind == "PvtV2Model":  # a saved folder with the published names
        ref.float().save_pretrained(tmp_path)
        ref.double()
        checkpoint = tmp_path
    else:
        checkpoint = ref.state_dict()
    if kind == "PvtV2Model":  # config.json says eps 1e-6 everywhere; the default differs
        with pytest.raises(CheckpointError, match=re.escape("set embed_norm_layer='LN_1e-06'")):
            PyramidVisionTransformerV2(**TINY, linear=linear).load_pretrained(checkpoint)
    ours = ours_from(checkpoint, linear=linear, embed_norm_layer="LN")  # HF: eps 1e-6 everywhere
    x = image(H, W)
    if kind == "PvtV2Backbone":
        expected = list(ref(pixel_values=x).feature_maps)
    else:
        base = ref if kind == "PvtV2Model" else ref.pvt_v2
        expected = list(base(pixel_values=x, output_hidden_states=True).hidden_states)
    assert_levels_close(ours(x), expected)


def test_own_state_dict_round_trips():
    model = randomize(PyramidVisionTransformerV2(**TINY, linear=True))
    again = PyramidVisionTransformerV2(**TINY, linear=True)
    report = again.load_pretrained({f"model.{k}": v for k, v in model.state_dict().items()})
    assert report.ok and report.source_format == "visionfm"
    x = image(64, 64)
    assert torch.equal(again.double().eval()(x)["p5"], model(x)["p5"])


# -- wrong checkpoints -------------------------------------------------------------------
def test_wrong_checkpoints_raise_with_what_does_not_match():
    model = PyramidVisionTransformerV2(**TINY)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=3)
    with pytest.raises(CheckpointError, match="not a PVT v2 checkpoint.*patch_embed.proj"):
        model.load_pretrained(vit.state_dict())
    deeper = TimmPvt(**{**TINY, "depths": (2, 2, 1, 1)}, num_classes=0).state_dict()
    with pytest.raises(
        CheckpointError,
        match=r"\(2, 2, 1, 1\) blocks per stage.*\(2, 1, 1, 1\): set depths=\(2, 2, 1, 1\)",
    ):
        model.load_pretrained(deeper)
    wider = TimmPvt(**{**TINY, "embed_dims": (16, 32, 48, 96)}, num_classes=0).state_dict()
    with pytest.raises(CheckpointError, match=r"(?s)shapes differ.*stages\.3\.norm\.weight: "):
        model.load_pretrained(wider)
    linear = TimmPvt(**TINY, linear=True, num_classes=0).state_dict()
    with pytest.raises(CheckpointError, match=r"linear spatial-reduction .* set linear=True"):
        model.load_pretrained(linear)
    with pytest.raises(CheckpointError, match=r"set linear=False"):
        PyramidVisionTransformerV2(**TINY, linear=True).load_pretrained(
            timm_reference(False).state_dict()
        )
    other_sr = TimmPvt(**{**TINY, "sr_ratios": (4, 4, 2, 1)}, num_classes=0).state_dict()
    with pytest.raises(CheckpointError, match=r"set sr_ratios=\(4, 4, 2, 1\)"):
        model.load_pretrained(other_sr)
    no_bias = PyramidVisionTransformerV2(**TINY, qkv_bias=False)
    with pytest.raises(CheckpointError, match=r"qkv biases \(.*set qkv_bias=True"):
        no_bias.load_pretrained(timm_reference(False).state_dict())
    with pytest.raises(CheckpointError, match="not found"):
        model.load_pretrained("/nonexistent/pvt_v2_b0.pth")


# -- any input size ----------------------------------------------------------------------
def test_odd_and_tiny_input_sizes():
    model = PyramidVisionTransformerV2(**TINY).eval()
    shapes = {k: tuple(v.shape) for k, v in model(torch.randn(1, 3, 67, 93)).items()}
    assert shapes == {
        "p2": (1, 16, 17, 24), "p3": (1, 32, 9, 12), "p4": (1, 48, 5, 6), "p5": (1, 64, 3, 3)
    }  # fmt: skip
    assert model.out_channels == {"p2": 16, "p3": 32, "p4": 48, "p5": 64}
    assert model.out_strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    # 20 x 12: stage maps 5x3 .. 1x1 are smaller than their sr_ratio; they are padded for it
    tiny = model(torch.randn(1, 3, 20, 12))
    assert {k: tuple(v.shape[2:]) for k, v in tiny.items()} == {
        "p2": (5, 3), "p3": (3, 2), "p4": (2, 1), "p5": (1, 1)
    }  # fmt: skip
    assert all(torch.isfinite(v).all() for v in tiny.values())


def test_out_indices_and_backends_agree():
    model = randomize(PyramidVisionTransformerV2(**TINY, attn_backend="math"))
    x = image(64, 96)
    outs = model(x)
    for blk in model.modules():
        if hasattr(blk, "attn_backend"):
            blk.attn_backend = "sdpa"
    sdpa = model(x)
    assert all(torch.allclose(outs[k], sdpa[k], atol=1e-10) for k in outs)
    partial = PyramidVisionTransformerV2(**TINY, out_indices=(1, -2))
    partial.load_state_dict(model.state_dict())
    got = partial.double().eval()(x)
    assert list(got) == ["p3", "p4"] == list(partial.out_channels)
    assert torch.allclose(got["p4"], outs["p4"], atol=1e-10)


# -- training features -------------------------------------------------------------------
def test_grad_checkpointing_same_outputs_and_grads():
    model = PyramidVisionTransformerV2(**TINY, drop_path_rate=0.5).train()
    x = torch.randn(2, 3, 64, 48)

    def run(enable: bool):
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        torch.manual_seed(123)
        out = model(x)
        loss = sum((v * torch.linspace(-1, 1, v.numel()).view_as(v)).sum() for v in out.values())
        loss.backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters()}

    out_a, grads_a = run(False)
    out_b, grads_b = run(True)
    assert all(torch.equal(out_a[k], out_b[k]) for k in out_a)
    assert grads_a.keys() == grads_b.keys() == {n for n, _ in model.named_parameters()}
    for name in grads_a:  # every trainable parameter gets a gradient, the same with checkpointing
        assert grads_a[name].abs().sum() > 0, name
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6), name


@pytest.mark.parametrize("frozen", [-1, 0, 1, 4])
def test_frozen_stages(frozen):
    model = PyramidVisionTransformerV2(**TINY, frozen_stages=frozen, drop_path_rate=0.2).train()
    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = set()
    for n, _ in model.named_parameters():
        i = int(n.split(".")[1])
        stem = n.startswith("stages.0.patch_embed.")
        if (frozen >= 0 and stem) or i < frozen:
            expected.add(n)
    assert frozen_names == expected
    for i, stage in enumerate(model.stages):
        assert all(not m.training for m in stage.blocks.modules()) == (i < frozen)
    out = model(torch.randn(1, 3, 64, 64))
    if frozen < 4:
        sum(v.sum() for v in out.values() if v.requires_grad).backward()
        assert all((p.grad is None) == (n in frozen_names) for n, p in model.named_parameters())
    else:
        assert not any(v.requires_grad for v in out.values())
    model.freeze_stages(-1)
    assert all(p.requires_grad for p in model.parameters())


def test_layer_ids_cover_all_params_and_are_monotone():
    model = PyramidVisionTransformerV2(**TINY, linear=True)
    ids = model.layer_ids()
    assert model.num_layers == 5
    assert set(ids) == {n for n, _ in model.named_parameters()}
    assert set(ids.values()) == set(range(model.num_layers + 2))
    assert ids["stages.0.patch_embed.proj.weight"] == 0
    assert ids["stages.0.blocks.1.mlp.fc1.weight"] == 2
    assert ids["stages.1.patch_embed.proj.weight"] == ids["stages.0.norm.weight"] == 2
    assert ids["stages.3.norm.weight"] == model.num_layers + 1
    order = [ids[n] for n, _ in model.named_parameters()]
    assert order == sorted(order)


# -- registered presets ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PVT_PRESETS))
def test_every_preset_has_the_reference_architecture(name):
    """Built on the meta device; timm's checkpoint converts to exactly our tensor shapes."""
    with torch.device("meta"):
        ours = MODELS.build(dict(type=name))
        ref = timm.create_model(name, pretrained=False, num_classes=0)
    assert isinstance(ours, PyramidVisionTransformerV2)
    converted = ours.convert_checkpoint(ref.state_dict())
    assert converted.source_format == "timm"
    own = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in converted.state_dict.items()}
    assert got == own


def test_construction_errors_are_actionable():
    with pytest.raises(ValueError, match="num_heads has 2 entries for 4 stages"):
        PyramidVisionTransformerV2(**{**TINY, "num_heads": (1, 2)})
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        PyramidVisionTransformerV2(**{**TINY, "num_heads": (3, 2, 3, 4)})
    with pytest.raises(ValueError, match="powers of two"):
        PyramidVisionTransformerV2(**TINY, strides=(4, 3, 2, 2), patch_sizes=(7, 5, 3, 3))
    with pytest.raises(ConfigError, match="Did you mean 'depths'"):
        MODELS.build(dict(type="pvt_v2_b0", depth=3))
