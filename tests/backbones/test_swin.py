"""Swin V1 / V2 backbones: equality with timm / Hugging Face references, windows, options.

Reference models are tiny (embed 32, depths (1, 1, 2, 2)) with random weights, compared in
float64 at non-default, non-square input sizes. Every stage output is compared: the
references' un-normed intermediate maps go through our (checkpoint-less) output norms.
"""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torch.nn.functional as F
from _helpers import image, randomize
from safetensors.torch import save_file
from timm.models.swin_transformer import SwinTransformer as TimmSwin
from timm.models.swin_transformer_v2 import SwinTransformerV2 as TimmSwinV2
from timm.models.vision_transformer import VisionTransformer

from visionfm.backbones import SwinTransformer, SwinTransformerV2
from visionfm.backbones.swin import SWIN_PRESETS, shift_window_mask, window_attention
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

T = pytest.importorskip("transformers")

TINY = dict(embed_dim=32, depths=(1, 1, 2, 2), num_heads=(1, 2, 2, 4))
HF_TINY = dict(embed_dim=32, depths=[1, 1, 2, 2], num_heads=[1, 2, 2, 4])
LEVELS = ["p2", "p3", "p4", "p5"]


def loaded(model, checkpoint, **kwargs):
    report = model.load_pretrained(checkpoint, **kwargs)
    assert not report.unexpected and not report.mismatched, str(report)
    return model.double().eval(), report


def normed(ours, level: str, nchw: torch.Tensor) -> torch.Tensor:
    """A reference's un-normed (B, C, H, W) stage map through our output norm of ``level``."""
    return ours.norms[level](nchw.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff <= tol, f"max abs diff {diff:.3g} > {tol}"
    assert b.abs().max() > 0.1  # the comparison is not vacuous


def to_official(sd: dict, num_stages: int = 4) -> dict:
    """timm layout -> the official Microsoft detection one: merging at the end of the previous
    stage, persistent index / mask buffers, per-output norms ``norm0 .. norm3`` (the final
    ``norm`` is ``norm3``), under a 'backbone.' prefix next to a detector's other parts."""
    gen = torch.Generator().manual_seed(3)
    out = {"neck.conv.weight": torch.zeros(5, 8)}
    for i in range(num_stages - 1):
        for p in ("weight", "bias"):
            out[f"backbone.norm{i}.{p}"] = torch.randn(32 * 2**i, generator=gen)
    for k, v in sd.items():
        for i in range(1, num_stages):
            k = k.replace(f"layers.{i}.downsample.", f"layers.{i - 1}.downsample.")
        if k.startswith("norm."):
            k = f"norm{num_stages - 1}." + k[len("norm.") :]
        out[f"backbone.{k}"] = v
        if k.endswith("attn.qkv.weight"):
            block = k[: -len("attn.qkv.weight")]
            out[f"backbone.{block}attn.relative_position_index"] = torch.zeros(9, 9).long()
            out[f"backbone.{block}attn_mask"] = torch.zeros(4, 9, 9)
    return out


# -- equality with reference implementations ---------------------------------------------
@pytest.mark.parametrize("layout", ["timm", "official"])
@pytest.mark.parametrize("version", [1, 2])
def test_matches_timm(tmp_path, version, layout):
    """V1: window 3 at 96 x 192 (stage 4 is 3 x 6: unshifted along H, shifted along W);
    V2: window 4 at 128 x 256. timm is built at the run size (it fixes windows there)."""
    ws, (h, w) = (3, (96, 192)) if version == 1 else (4, (128, 256))
    ref_cls, cls = (TimmSwin, SwinTransformer) if version == 1 else (TimmSwinV2, SwinTransformerV2)
    ref = randomize(ref_cls(img_size=(h, w), window_size=ws, num_classes=0, **TINY))
    sd = {k: v.float() for k, v in ref.state_dict().items()}
    if layout == "timm":
        path = tmp_path / "ckpt.safetensors"
        save_file(sd, path)
    else:
        path = tmp_path / "ckpt.pth"
        torch.save({"model": to_official(sd)}, path)
    ours, report = loaded(cls(window_size=ws, **TINY), path)
    norms = {f"norms.{k}.{p}" for k in LEVELS[:3] for p in ("weight", "bias")}
    assert {n for n, _ in report.missing} == (norms if layout == "timm" else set())
    assert layout == "timm" or "neck.conv.weight" in report.ignored
    assert report.source_format.startswith("timm" if layout == "timm" else "official")
    x = image(h, w)
    expected = ref.float().double().forward_intermediates(x, norm=True, intermediates_only=True)
    got = ours(x)
    assert list(got) == LEVELS
    for i, level in enumerate(LEVELS):
        assert_close(got[level], expected[i] if i == 3 else normed(ours, level, expected[i]))


def test_matches_hf_swin_model_at_odd_size(tmp_path):
    """Published names (save_pretrained), 67 x 93 input: padding at every stage."""
    cfg = T.SwinConfig(image_size=64, window_size=3, **HF_TINY)
    ref = randomize(T.SwinModel(cfg))
    ref.float().save_pretrained(tmp_path)
    # config.json decides what the tensors cannot tell (a window 4 table would be resized)
    for kwargs, message in [
        (dict(window_size=4), "set window_size=3"),
        (dict(window_size=3, norm_layer="LN"), "set norm_layer='LN_1e-05'"),
        (dict(window_size=3, act_layer="relu"), "set act_layer='gelu'"),
    ]:
        with pytest.raises(CheckpointError, match=re.escape(message)):
            SwinTransformer(**TINY, **kwargs).load_pretrained(tmp_path / "model.safetensors")
    ours, _ = loaded(SwinTransformer(window_size=3, **TINY), tmp_path)
    x = image(67, 93)
    out = ref.double()(
        pixel_values=x, output_hidden_states=True, output_hidden_states_before_downsampling=True
    )
    got = ours(x)
    assert [tuple(v.shape[2:]) for v in got.values()] == [(17, 24), (9, 12), (5, 6), (3, 3)]
    for i, level in enumerate(LEVELS):
        assert_close(got[level], normed(ours, level, out.reshaped_hidden_states[i + 1]))
    assert_close(got["p5"].flatten(2).transpose(1, 2), out.last_hidden_state)  # HF final norm


def test_matches_hf_swin_backbone_always_partition():
    """transformers >= 5 in-memory names under 'swin.', per-output norms outside it;
    SwinBackbone shifts windows even on maps that fit in one (always_partition)."""
    cfg = T.SwinConfig(
        image_size=64,
        window_size=3,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        **HF_TINY,
    )
    ref = randomize(T.SwinBackbone(cfg))
    ours, report = loaded(
        SwinTransformer(window_size=3, always_partition=True, **TINY), ref.state_dict()
    )
    assert report.ok, str(report)
    x = image(67, 93)
    expected = ref(pixel_values=x).feature_maps
    got = ours(x)
    for i, level in enumerate(LEVELS):
        assert_close(got[level], expected[i])
    ours.always_partition = False  # the last stage (3 x 3, window 3) is then not shifted
    assert not torch.allclose(ours(x)["p5"], expected[3])


def test_matches_hf_swinv2_with_other_pretrained_window(tmp_path):
    """Swin V2 run with window 3 while its position-bias MLP was trained with window 2."""
    cfg = T.Swinv2Config(
        image_size=96, window_size=3, pretrained_window_sizes=[2, 2, 2, 2], **HF_TINY
    )
    ref = randomize(T.Swinv2Model(cfg))
    sd = {f"swinv2.{k}": v for k, v in ref.state_dict().items()}
    torch.save({**sd, "classifier.weight": torch.zeros(3, 256)}, tmp_path / "pytorch_model.bin")
    ours, report = loaded(
        SwinTransformerV2(window_size=3, pretrained_window_sizes=2, **TINY), tmp_path
    )
    assert "classifier.weight" in report.ignored
    x = image(67, 93)
    emb, dims = ref.embeddings(x)
    out = ref.encoder(
        emb, dims, output_hidden_states=True, output_hidden_states_before_downsampling=True
    )
    got = ours(x)
    for i, level in enumerate(LEVELS):
        assert_close(got[level], normed(ours, level, out.reshaped_hidden_states[i + 1]))
    # the same weights read with window 3 as the trained window give other biases
    other = SwinTransformerV2(window_size=3, **TINY)
    other.load_state_dict(ours.state_dict())
    assert not torch.allclose(other.double().eval()(x)["p2"], got["p2"])


# -- windows -----------------------------------------------------------------------------
def naive_shifted_attention(attn, x: torch.Tensor, ws: int, shift: int) -> torch.Tensor:
    """Global attention over all tokens of x (1, H, W, C), each query restricted to keys of
    its shifted window, i.e. the window grid offset by ``shift`` with no wrap-around."""
    _, h, w, c = x.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    group = ((ys - shift) // ws) * 1000 + (xs - shift) // ws  # floor: y < shift -> group -1
    same = group[:, None] == group[None, :]
    dy = (ys[:, None] - ys[None, :]).clamp(1 - ws, ws - 1) + ws - 1
    dx = (xs[:, None] - xs[None, :]).clamp(1 - ws, ws - 1) + ws - 1
    bias = attn.rel_pos_table[dy * (2 * ws - 1) + dx].permute(2, 0, 1)  # (heads, HW, HW)
    bias = bias.masked_fill(~same, float("-inf"))
    q, k, v = (t[0, 0] for t in attn.qkv_heads(x.reshape(1, 1, h * w, c)))  # (heads, HW, d)
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5 + bias
    out = (logits.softmax(-1) @ v).transpose(0, 1).reshape(h * w, c)
    return attn.proj(out).view(1, h, w, c)


def test_shifted_windows_equal_naive_masked_attention():
    model = randomize(SwinTransformer(window_size=4, **TINY))
    attn = model.stages[1].blocks[0].attn  # 64 channels, 2 heads
    x = torch.randn(1, 8, 12, 64, dtype=torch.float64)
    mask = shift_window_mask((8, 12), (4, 4), (2, 2))
    assert mask.shape == (6, 16, 16) and not mask.all() and mask[0].all()  # only border windows
    got = window_attention(x, attn, (4, 4), (2, 2), mask)
    assert_close(got, naive_shifted_attention(attn, x, ws=4, shift=2), tol=1e-10)
    # the mask matters: without it the wrapped-around tokens would attend to each other
    assert not torch.allclose(window_attention(x, attn, (4, 4), (2, 2), None), got)
    unshifted = window_attention(x, attn, (4, 4), (0, 0), None)
    assert_close(unshifted, naive_shifted_attention(attn, x, ws=4, shift=0), tol=1e-10)


@pytest.mark.parametrize("cls", [SwinTransformer, SwinTransformerV2])
@pytest.mark.parametrize("size", [(67, 93), (17, 9), (4, 4)])
def test_any_input_size_runs(cls, size):
    model = randomize(cls(window_size=5, **TINY))
    with torch.no_grad():
        out = model(image(*size, batch=1))
    h, w = size
    for i, level in enumerate(LEVELS):
        stride = 4 * 2**i
        assert out[level].shape == (1, 32 * 2**i, -(-h // stride), -(-w // stride))
        assert torch.isfinite(out[level]).all()


def test_input_not_multiple_of_patch_is_padded():
    model = randomize(SwinTransformer(window_size=3, **TINY))
    x = image(61, 90)
    padded = F.pad(x, (0, 2, 0, 3))
    for level, y in model(x).items():
        assert_close(y, model(padded)[level], tol=1e-12)


# -- checkpoints -------------------------------------------------------------------------
def test_v1_table_of_another_window_is_resized():
    ref = TimmSwin(img_size=64, window_size=2, num_classes=0, **TINY)
    model = SwinTransformer(window_size=3, **TINY)
    report = model.load_pretrained(ref.state_dict())
    assert any("resized from window 2 to 3" in n for n in report.notes), report.notes
    assert model.stages[0].blocks[0].attn.rel_pos_table.shape == (25, 1)


def test_timm_table_of_a_shrunk_window_is_refused_not_resized():
    """timm built at 96 px with window 6 shrinks the last stage's window to its 3 x 3 map (a
    5 x 5 table); resizing that table to window 6 would change the stage's outputs, so the
    load is refused naming the per-stage windows, which then give timm's outputs."""
    ref = randomize(TimmSwin(img_size=96, window_size=6, num_classes=0, **TINY))
    with pytest.raises(CheckpointError, match=re.escape("window_size=(6, 6, 6, 3)")):
        SwinTransformer(window_size=6, **TINY).load_pretrained(ref.state_dict())
    ours, _ = loaded(SwinTransformer(window_size=(6, 6, 6, 3), **TINY), ref.state_dict())
    x = image(96, 96)
    expected = ref.forward_intermediates(x, norm=True, intermediates_only=True)
    got = ours(x)
    for i, level in enumerate(LEVELS):
        assert_close(got[level], expected[i] if i == 3 else normed(ours, level, expected[i]))


def test_pads_before_shifting_as_the_official_code_not_as_timm():
    """At 80 x 48 with window 3 the p3 map (10 x 6) is padded in a shifted block: timm shifts
    then pads, the official code, HF and we pad then shift (README), so timm differs there
    (the unshifted p2 stage agrees) and HF does not."""
    kw = dict(embed_dim=32, depths=(1, 2, 2), num_heads=(1, 2, 2))
    ref = randomize(TimmSwin(img_size=(80, 48), window_size=3, num_classes=0, **kw))
    ours, _ = loaded(SwinTransformer(window_size=3, out_indices=(0, 1), **kw), ref.state_dict())
    x = image(80, 48)
    timm_maps = ref.forward_intermediates(x, indices=[0, 1], norm=True, intermediates_only=True)
    got = ours(x)
    assert_close(got["p2"], normed(ours, "p2", timm_maps[0]))
    assert (got["p3"] - normed(ours, "p3", timm_maps[1])).abs().max() > 0.1
    hf_cfg = T.SwinConfig(image_size=64, window_size=3, embed_dim=32, depths=[1, 2, 2],
                          num_heads=[1, 2, 2])  # fmt: skip
    hf = randomize(T.SwinModel(hf_cfg))
    ours, _ = loaded(SwinTransformer(window_size=3, out_indices=(0, 1), **kw), hf.state_dict())
    out = hf(
        pixel_values=x, output_hidden_states=True, output_hidden_states_before_downsampling=True
    )
    got = ours(x)
    for i, level in enumerate(["p2", "p3"]):
        assert_close(got[level], normed(ours, level, out.reshaped_hidden_states[i + 1]))


def test_checkpoint_parts_the_model_lacks_are_refused():
    for ref_cls, cls in [(TimmSwin, SwinTransformer), (TimmSwinV2, SwinTransformerV2)]:
        sd = ref_cls(img_size=64, window_size=2, num_classes=0, **TINY).state_dict()
        with pytest.raises(CheckpointError, match=r"qkv biases \(.*set qkv_bias=True"):
            cls(window_size=2, qkv_bias=False, **TINY).load_pretrained(sd)
        shallower = dict(TINY, depths=(1, 1, 1, 2))
        with pytest.raises(CheckpointError, match=re.escape("set depths=(1, 1, 2, 2)")):
            cls(window_size=2, **shallower).load_pretrained(sd)


def test_wrong_family_raises_naming_keys():
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3
    ).state_dict()
    with pytest.raises(CheckpointError) as err:
        SwinTransformer(window_size=3, **TINY).load_pretrained(vit)
    text = str(err.value)
    assert "another family" in text and "missing in checkpoint" in text
    assert "  stages.0.blocks.0.attn.qkv.weight (96, 32)" in text  # missing, model's shape
    assert "  blocks.0.attn.qkv.weight (144, 48)" in text  # unexpected, checkpoint's shape
    v1 = TimmSwin(img_size=64, window_size=2, num_classes=0, **TINY).state_dict()
    with pytest.raises(CheckpointError, match="Swin V1 .* model is SwinTransformerV2"):
        SwinTransformerV2(window_size=2, **TINY).load_pretrained(v1)
    with pytest.raises(CheckpointError, match="not a Swin checkpoint.*such as: conv.weight"):
        SwinTransformer(**TINY).load_pretrained({"conv.weight": torch.zeros(1)})


def test_wrong_size_raises_with_shapes_and_leaves_model_untouched():
    ckpt = TimmSwinV2(
        img_size=64, window_size=2, num_classes=0, **dict(TINY, embed_dim=48)
    ).state_dict()
    model = SwinTransformerV2(window_size=2, **TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        model.load_pretrained(ckpt)
    assert "shapes differ" in str(err.value)
    assert "stages.0.blocks.0.attn.qkv.weight: checkpoint (144, 48) vs model (96, 32)" in str(
        err.value
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- training features -------------------------------------------------------------------
def _grads(model, x, seed: int = 123) -> tuple[dict, dict]:
    model.zero_grad()
    torch.manual_seed(seed)
    out = model(x)
    loss = sum((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum() for y in out.values())
    loss.backward()
    return out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cls", [SwinTransformer, SwinTransformerV2])
def test_grad_checkpointing_same_outputs_and_grads(cls):
    model = randomize(cls(window_size=3, drop_path_rate=0.3, **TINY)).float().train()
    x = torch.randn(2, 3, 52, 40)
    out_a, grads_a = _grads(model, x)
    grads_a = {n: g.clone() for n, g in grads_a.items()}
    model.set_grad_checkpointing(True)
    out_b, grads_b = _grads(model, x)
    assert all(torch.equal(out_a[k], out_b[k]) for k in out_a)
    assert grads_a.keys() == grads_b.keys() == {n for n, _ in model.named_parameters()}
    for name, g in grads_a.items():
        assert torch.allclose(g, grads_b[name], atol=1e-6), name


@pytest.mark.parametrize("cls", [SwinTransformer, SwinTransformerV2])
def test_every_parameter_gets_a_gradient(cls):
    model = randomize(cls(window_size=3, **TINY)).train()
    _, grads = _grads(model, image(44, 52))
    assert grads.keys() == {n for n, _ in model.named_parameters()}
    assert [n for n, g in grads.items() if not g.abs().sum() > 0] == []


@pytest.mark.parametrize("frozen", [-1, 0, 2, 4])
def test_frozen_stages(frozen):
    model = SwinTransformerV2(window_size=3, frozen_stages=frozen, drop_path_rate=0.2, **TINY)
    model.train()
    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad}
    prefixes = ["patch_embed.", "patch_norm."] if frozen >= 0 else []
    prefixes += [f"stages.{i}." for i in range(max(frozen, 0))]
    prefixes += [f"norms.{LEVELS[i]}." for i in range(max(frozen, 0))]
    assert frozen_names == {n for n, _ in model.named_parameters() if n.startswith(tuple(prefixes))}
    for i, stage in enumerate(model.stages):
        assert all(not m.training for m in stage.modules()) == (i < frozen)
    out = model(torch.randn(1, 3, 40, 40))
    if frozen < 4:
        sum(y.sum() for y in out.values() if y.requires_grad).backward()
        assert all((p.grad is None) == (n in frozen_names) for n, p in model.named_parameters())
    else:
        assert not any(y.requires_grad for y in out.values())
    model.freeze_stages(-1)
    assert all(p.requires_grad for p in model.parameters())


def test_layer_ids_count_blocks_across_stages():
    model = SwinTransformer(window_size=3, **TINY)  # blocks 1 | 2 | 3 4 | 5 6
    ids = model.layer_ids()
    assert set(ids) == {n for n, _ in model.named_parameters()}
    assert model.num_layers == 6 and set(ids.values()) == set(range(8))
    assert ids["patch_embed.proj.weight"] == ids["patch_norm.weight"] == 0
    assert ids["stages.0.blocks.0.attn.qkv.weight"] == 1
    assert ids["stages.2.downsample.reduction.weight"] == 2  # with the block before it
    assert ids["stages.2.blocks.1.mlp.fc2.weight"] == 4
    assert ids["stages.3.blocks.1.attn.rel_pos_table"] == 6
    assert ids["norms.p2.weight"] == 7
    order = [ids[n] for n, _ in model.named_parameters() if not n.startswith("norms.")]
    assert order == sorted(order)


def test_out_indices_and_attn_backends():
    model = randomize(
        SwinTransformerV2(window_size=3, out_indices=(1, -2), attn_backend="math", **TINY)
    )
    assert model.out_channels == {"p3": 64, "p4": 128} and model.out_strides == {"p3": 8, "p4": 16}
    assert set(model.norms) == {"p3", "p4"}
    x = image(52, 44)
    ref = model(x)
    assert list(ref) == ["p3", "p4"] and ref["p4"].shape == (2, 128, 4, 3)
    for m in model.modules():
        if hasattr(m, "attn_backend"):
            m.attn_backend = "sdpa"
    got = model(x)
    assert_close(got["p4"], ref["p4"], tol=1e-10)


@pytest.mark.parametrize("cls", [SwinTransformer, SwinTransformerV2])
def test_bf16_autocast_trains(cls):
    model = cls(window_size=3, **TINY).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(1, 3, 44, 36))
    assert all(y.dtype == torch.bfloat16 for y in out.values())
    sum(y.float().sum() for y in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_incompatible_options_fail_at_construction():
    with pytest.raises(ValueError, match="Swin V2 option"):
        SwinTransformer(pretrained_window_sizes=8, **TINY)
    with pytest.raises(ValueError, match="one value per stage"):
        SwinTransformer(**dict(TINY, num_heads=(1, 2)))
    with pytest.raises(ValueError, match="attention backend"):
        SwinTransformer(attn_backend="flash", **TINY)


# -- registered presets ------------------------------------------------------------------
_TIMM_TWINS = {
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "swin_small": "swin_small_patch4_window7_224",
    "swin_base": "swin_base_patch4_window7_224",
    "swin_large": "swin_large_patch4_window7_224",
    "swin_base_window12": "swin_base_patch4_window12_384",
    "swin_large_window12": "swin_large_patch4_window12_384",
    "swinv2_tiny": "swinv2_tiny_window8_256",
    "swinv2_small": "swinv2_small_window8_256",
    "swinv2_base": "swinv2_base_window8_256",
    "swinv2_tiny_window16": "swinv2_tiny_window16_256",
    "swinv2_small_window16": "swinv2_small_window16_256",
    "swinv2_base_window16": "swinv2_base_window16_256",
}


@pytest.mark.parametrize("name", sorted(_TIMM_TWINS))
def test_every_preset_builds_with_the_reference_architecture(name):
    """Built on the meta device; every converted tensor shape equals ours (output norms of
    p2 .. p4 are ours alone)."""
    assert set(SWIN_PRESETS) == set(_TIMM_TWINS)
    with torch.device("meta"):
        ours = MODELS.build(dict(type=name))
        ref = timm.create_model(_TIMM_TWINS[name], pretrained=False, num_classes=0)
    converted = ours.convert_checkpoint(ref.state_dict()).state_dict
    own = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in converted.items()}
    assert set(own) - set(got) == {f"norms.{k}.{p}" for k in LEVELS[:3] for p in ("weight", "bias")}
    assert all(own[k] == s for k, s in got.items()), {k: (s, own.get(k)) for k, s in got.items()}


def test_small_preset_runs_from_the_registry():
    model = MODELS.build(dict(type="swinv2_tiny", depths=(1, 1, 1, 1), out_indices=(3,)))
    assert isinstance(model, SwinTransformerV2) and model.stages[3].window_size == 8
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 42))
    assert out["p5"].shape == (1, 768, 3, 2) and model.out_strides == {"p5": 32}
