"""ViT backbone: equality with timm / Hugging Face references, position handling, options.

Reference models are tiny (embed 48, 2 blocks, 32-px training size, patch 8) with random
weights, compared in float64 at a non-default, non-square input size (48 x 40 -> 6 x 5 grid).
"""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torch.nn.functional as F
from _helpers import image, randomize
from safetensors.torch import save_file
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_sam import VisionTransformerSAM

from visionfm.backbones import ViT
from visionfm.backbones.vit_attention import RotaryEmbedding2d, apply_rope, rel_pos_bias
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

T = pytest.importorskip("transformers")

DIM, HEADS, DEPTH, PATCH, TRAIN = 48, 3, 2, 8, 32
TINY = dict(img_size=TRAIN, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS)
H, W = 48, 40  # run size: grid 6 x 5, trained on 4 x 4


def tokens_to_map(tokens: torch.Tensor, num_prefix: int, hw: tuple[int, int]) -> torch.Tensor:
    """(B, P + h*w, C) reference tokens -> (B, C, h, w) patch map."""
    b, _, c = tokens.shape
    return tokens[:, num_prefix:].reshape(b, *hw, c).permute(0, 3, 1, 2)


def ours_from(checkpoint, **kwargs) -> ViT:
    model = ViT(**{**TINY, **kwargs})
    report = model.load_pretrained(checkpoint)
    assert not report.missing and not report.unexpected and not report.mismatched, str(report)
    return model.double().eval()


def assert_refused_without(checkpoint, ours_kwargs: dict, overrides: dict, message: str) -> None:
    """A model built with ``overrides`` instead of what the checkpoint needs is refused, and
    the message names the argument to set."""
    model = ViT(**{**TINY, **ours_kwargs, **overrides})
    with pytest.raises(CheckpointError, match=re.escape(message)):
        model.load_pretrained(checkpoint)


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff <= tol, f"max abs diff {diff:.3g} > {tol}"
    assert b.abs().max() > 0.1  # the comparison is not vacuous


# -- equality with reference implementations ---------------------------------------------
@pytest.mark.parametrize(
    "timm_kwargs, ours_kwargs, num_prefix, suffix, without",
    [
        (dict(qk_norm=True), dict(qk_norm=True), 1, ".pth", (dict(qk_norm=False), "qk_norm=True")),
        (  # DINOv2-reg as timm stores it: registers, layer scale, pos embed without prefix
            dict(reg_tokens=4, no_embed_class=True, init_values=1e-5),
            dict(reg_tokens=4, init_values=1.0),
            5,
            ".safetensors",
            (dict(init_values=None), "set init_values=1e-5 (any value"),
        ),
        (  # timm default: pos embed also covers the register tokens
            dict(reg_tokens=2, init_values=1e-5, mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU),
            dict(reg_tokens=2, init_values=1.0, mlp_layer="gated", act_layer="silu", mlp_ratio=2),
            3,
            ".bin",
            (dict(reg_tokens=0), "set reg_tokens=2"),
        ),
    ],
    ids=["vit-qknorm", "dinov2-reg4", "reg-swiglu"],
)
def test_matches_timm(tmp_path, timm_kwargs, ours_kwargs, num_prefix, suffix, without):
    """Equal to timm; and refused, naming the argument, by a model built without it."""
    ref = VisionTransformer(**TINY, num_classes=0, dynamic_img_size=True, **timm_kwargs)
    ref = randomize(ref)
    path = tmp_path / f"ckpt{suffix}"
    sd = {k: v.float().contiguous() for k, v in ref.state_dict().items()}
    save_file(sd, path) if suffix == ".safetensors" else torch.save({"state_dict": sd}, path)
    assert_refused_without(path, ours_kwargs, *without)
    ours = ours_from(path, pos_embed_antialias=True, **ours_kwargs)
    x = image(H, W)
    expected = tokens_to_map(ref.float().double().forward_features(x), num_prefix, (6, 5))
    assert_close(ours(x)["block1"], expected)


def test_matches_dinov2_original_repo_format():
    """Original DINOv2 layout: cls pos inside pos_embed, register_tokens, chunked blocks, w12/w3."""
    ref = VisionTransformer(
        **TINY, num_classes=0, dynamic_img_size=True, reg_tokens=4, no_embed_class=True,
        init_values=1.0, mlp_layer=SwiGLUPacked, act_layer=torch.nn.SiLU, mlp_ratio=4.0,
    )  # fmt: skip
    ref = randomize(ref)
    sd = ref.state_dict()
    cls_pos = torch.randn(1, 1, DIM, dtype=torch.float64)
    orig = {
        "cls_token": sd["cls_token"] - cls_pos,
        "pos_embed": torch.cat([cls_pos, sd["pos_embed"]], dim=1),
        "register_tokens": sd["reg_token"],
        "mask_token": torch.zeros(1, DIM),
    }
    for k, v in sd.items():
        if k.startswith("blocks."):
            k = k.replace("blocks.", "blocks.0.").replace("mlp.fc1", "mlp.w12")
            orig[k.replace("mlp.fc2", "mlp.w3")] = v
        elif k not in ("cls_token", "pos_embed", "reg_token"):
            orig[k] = v
    gated = dict(reg_tokens=4, init_values=1.0, mlp_layer="gated", act_layer="silu", mlp_ratio=2.0)
    plain = dict(mlp_layer="mlp", act_layer="gelu")
    assert_refused_without({"model": orig}, gated, plain, "set mlp_layer='gated', act_layer='silu'")
    ours = ViT(**TINY, **gated, pos_embed_antialias=True)
    report = ours.load_pretrained({"teacher_unused": 0, "model": orig})
    assert report.ok and report.source_format == "DINOv2 (original repo)", str(report)
    x = image(H, W)
    assert_close(
        ours.double().eval()(x)["block1"], tokens_to_map(ref.forward_features(x), 5, (6, 5))
    )


def _hf_case(kind: str):
    common = dict(
        hidden_size=DIM, num_hidden_layers=DEPTH, num_attention_heads=HEADS,
        image_size=TRAIN, patch_size=PATCH,
    )  # fmt: skip
    if kind == "vit":
        cfg = T.ViTConfig(**common, intermediate_size=2 * DIM)
        ours = dict(mlp_ratio=2, norm_layer="LN_1e-12")
        return T.ViTModel(cfg), ours, 1, (dict(norm_layer="LN"), "set norm_layer='LN_1e-12'")
    if kind == "dinov2":
        cfg = T.Dinov2Config(**common, layerscale_value=0.5, use_swiglu_ffn=True)
        hidden = (int(DIM * 4 * 2 / 3) + 7) // 8 * 8
        ours = dict(init_values=1.0, mlp_layer="gated", act_layer="silu", mlp_ratio=hidden / DIM)
        return T.Dinov2Model(cfg), ours, 1, (dict(init_values=None), "set init_values=1e-5")
    if kind == "dinov2_reg":
        cfg = T.Dinov2WithRegistersConfig(**common, num_register_tokens=2)
        ours = dict(init_values=1.0, reg_tokens=2, pos_embed_antialias=True)
        return T.Dinov2WithRegistersModel(cfg), ours, 3, (dict(reg_tokens=0), "set reg_tokens=2")
    cfg = T.DINOv3ViTConfig(**common, intermediate_size=2 * DIM, num_register_tokens=2)
    ours = dict(
        init_values=1.0, reg_tokens=2, mlp_ratio=2, abs_pos_embed=False, rope_base=100.0,
        norm_layer="LN_1e-5",
    )  # fmt: skip
    without = (dict(rope_base=None), "set rope_base=100.0")
    return T.DINOv3ViTModel(cfg), ours, 3, without


@pytest.mark.parametrize(
    "kind, storage",
    [
        ("vit", "save_pretrained"),  # published names, HF folder
        ("dinov2", "memory"),  # transformers >= 5 in-memory names
        ("dinov2_reg", "bin_prefixed"),  # published names under 'dinov2.' in a .bin
        ("dinov3", "save_pretrained"),  # RoPE reference
    ],
)
def test_matches_huggingface(tmp_path, kind, storage):
    """Equal to HF; and refused, naming the argument, by a model built without it (read from
    the parameters, or from config.json for what they cannot tell: eps, RoPE)."""
    torch.manual_seed(0)
    ref, ours_kwargs, num_prefix, without = _hf_case(kind)
    ref = randomize(ref)
    if storage == "save_pretrained":
        ref.float().save_pretrained(tmp_path)
        ref.double()
        checkpoint = tmp_path
    elif storage == "memory":
        checkpoint = ref.state_dict()
    else:
        ref.float().save_pretrained(tmp_path / "hf")
        ref.double()
        legacy = T.modeling_utils.load_state_dict(str(tmp_path / "hf" / "model.safetensors"))
        checkpoint = tmp_path / "pytorch_model.bin"
        legacy = {f"dinov2.{k}": v for k, v in legacy.items()}
        torch.save({**legacy, "classifier.weight": torch.zeros(3, DIM)}, checkpoint)
    assert_refused_without(checkpoint, ours_kwargs, *without)
    if storage == "save_pretrained":  # config.json is read for a weights file in the folder too
        assert_refused_without(tmp_path / "model.safetensors", ours_kwargs, *without)
    ours = ours_from(checkpoint, **ours_kwargs)
    x = image(H, W)
    kwargs = dict(interpolate_pos_encoding=True) if kind == "vit" else {}
    expected = tokens_to_map(ref(pixel_values=x, **kwargs).last_hidden_state, num_prefix, (6, 5))
    assert_close(ours(x)["block1"], expected)


@pytest.mark.parametrize(
    "kind, other_resize, argument",
    [
        ("dinov2", dict(pos_embed_offset=0.1), "pos_embed_offset=0.0"),  # the DINOv2 repo's
        ("dinov2_reg", dict(pos_embed_antialias=False), "pos_embed_antialias=True"),
        ("vit", dict(pos_embed_antialias=True), "pos_embed_antialias=False"),  # timm's
    ],
)
def test_hf_folder_sets_how_the_position_embedding_is_resized(
    tmp_path, kind, other_resize, argument
):
    """HF's code for the folder's model_type resizes the position embedding its own way
    (ViT / Dinov2: bicubic, no offset; Dinov2 with registers: antialiased): a model resizing
    it otherwise (e.g. as the DINOv2 repo, which our ``*_dinov2`` presets follow) would differ
    from HF at every input size but the training one, so it is refused naming the argument;
    with HF's way the outputs equal HF's at a non-default size."""
    torch.manual_seed(0)
    ref, ours_kwargs, num_prefix, _ = _hf_case(kind)
    ref = randomize(ref)
    ref.float().save_pretrained(tmp_path)
    ref.double()
    assert_refused_without(tmp_path, ours_kwargs, other_resize, argument)
    ours = ours_from(tmp_path, **ours_kwargs)
    x = image(H, W)
    kwargs = dict(interpolate_pos_encoding=True) if kind == "vit" else {}
    expected = tokens_to_map(ref(pixel_values=x, **kwargs).last_hidden_state, num_prefix, (6, 5))
    assert_close(ours(x)["block1"], expected)


def test_matches_timm_sam_windows_and_rel_pos(tmp_path):
    """Windowed blocks (padding to the window) + decomposed rel pos, global tables resized."""
    ref = VisionTransformerSAM(
        **TINY, num_classes=0, use_rel_pos=True, window_size=4, global_attn_indexes=(1,),
        neck_chans=16,
    )  # fmt: skip
    ref = randomize(ref)
    save_file({k: v.float() for k, v in ref.state_dict().items()}, tmp_path / "sam.safetensors")
    windows = dict(class_token=False, window_size=4, window_block_indices=[0], final_norm=False)
    assert_refused_without(tmp_path / "sam.safetensors", windows, {}, "set use_rel_pos=True")
    other_window = dict(use_rel_pos=True, window_size=3)
    assert_refused_without(tmp_path / "sam.safetensors", windows, other_window, "window_size=4")
    ours = ViT(
        **TINY, class_token=False, use_rel_pos=True, window_size=4, window_block_indices=[0],
        pos_embed_antialias=True, final_norm=False, out_indices=(0, 1),
    )  # fmt: skip
    report = ours.load_pretrained(tmp_path / "sam.safetensors", strict=True)
    assert any("neck" in k for k in report.ignored)
    x = image(56, 40)  # grid 7 x 5: windows of 4 need padding, global tables 7 / 4 -> 13 / 9
    expected = ref.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
    got = ours.double().eval()(x)
    assert_close(got["block0"], expected[0])
    assert_close(got["block1"], expected[1])


def test_mae_checkpoint_into_vitdet_drops_the_class_token_knowingly():
    """The ViTDet / ViTPose recipe: a plain ViT checkpoint into a model built without class
    token and final norm; its relative-position tables start at zero (no bias)."""
    ref = randomize(VisionTransformer(**TINY, num_classes=0))
    ours = ViT(
        **TINY, class_token=False, use_rel_pos=True, window_size=2, window_block_indices=[0],
        final_norm=False,
    )  # fmt: skip
    report = ours.load_pretrained(ref.state_dict())
    assert {n for n, _ in report.missing} == {
        f"blocks.{i}.attn.rel_pos_{a}" for i in range(DEPTH) for a in "hw"
    }
    assert {"cls_token", "norm.weight"} <= set(report.ignored) and not report.unexpected
    assert any("class_token=False" in n for n in report.notes)


# -- position handling -------------------------------------------------------------------
def test_input_not_multiple_of_patch_is_padded():
    model = randomize(ViT(**TINY))
    x = image(45, 37)
    out = model(x)["block1"]
    assert out.shape == (2, DIM, 6, 5)
    assert_close(out, model(F.pad(x, (0, 3, 0, 3)))["block1"], tol=1e-12)


def test_resized_pos_embed_cache_follows_weight_updates():
    model = randomize(ViT(**TINY))
    x = image(H, W)
    with torch.no_grad():
        first = model(x)["block1"]
        assert model._pos_cache is not None
        assert torch.equal(model(x)["block1"], first)  # served from the cache
        model.pos_embed.mul_(-1.0)  # in-place update, as an optimizer step does
        flipped = model(x)["block1"]
    assert not torch.allclose(flipped, first)
    model._pos_cache = None
    with torch.no_grad():
        assert torch.equal(model(x)["block1"], flipped)
    assert model(x)["block1"].requires_grad and model._pos_cache is None  # training: no cache


def test_pos_embed_of_other_grid_is_resized_on_load():
    ref = randomize(VisionTransformer(**TINY, num_classes=0, dynamic_img_size=True))
    ours = ViT(**{**TINY, "img_size": 48}, pos_embed_antialias=True)
    report = ours.load_pretrained(ref.state_dict())
    assert ours.pos_embed.shape == (1, 6, 6, DIM)
    assert any("(4, 4) to (6, 6)" in n for n in report.notes)
    x = image(48, 48)
    expected = tokens_to_map(ref.forward_features(x), 1, (6, 6))
    assert_close(ours.double().eval()(x)["block1"], expected)


def test_rel_pos_bias_matches_explicit_sum():
    q = torch.randn(1, 2, 3 * 4, 8, dtype=torch.float64)
    rh, rw = torch.randn(5, 8, dtype=torch.float64), torch.randn(7, 8, dtype=torch.float64)
    bias = rel_pos_bias(q, rh, rw, (3, 4))
    for qi, ki in [(0, 0), (5, 11), (11, 0), (7, 2)]:
        (qy, qx), (ky, kx) = divmod(qi, 4), divmod(ki, 4)
        manual = q[0, 1, qi] @ rh[qy - ky + 2] + q[0, 1, qi] @ rw[qx - kx + 3]
        assert torch.isclose(bias[0, 1, qi, ki], manual)


def test_window_covering_the_grid_equals_global_attention():
    """Window 4 on a 4 x 4 grid, with rel pos: same tables, so exactly global attention."""
    kwargs = dict(TINY, class_token=False, use_rel_pos=True)
    glob = randomize(ViT(**kwargs))
    win = ViT(**kwargs, window_size=4, window_block_indices=[0, 1])
    win.load_state_dict(glob.state_dict())
    x = image(32, 32)
    assert_close(win.double().eval()(x)["block1"], glob(x)["block1"], tol=1e-12)
    # a window of 5 pads the grid to 5 x 5 and its padded tokens act as keys: not global
    win5 = ViT(**dict(kwargs, use_rel_pos=False), window_size=5, window_block_indices=[0, 1])
    glob_plain = ViT(**dict(kwargs, use_rel_pos=False))
    glob_plain.load_state_dict(win5.state_dict())
    x = x.float()
    assert not torch.allclose(win5.eval()(x)["block1"], glob_plain.eval()(x)["block1"])


def test_rel_pos_gradients_agree_across_backends():
    """The rel-pos bias depends on q and the tables: its gradient must reach both."""
    model = ViT(
        **TINY, class_token=False, use_rel_pos=True, window_size=3, window_block_indices=[0]
    )
    model = randomize(model).train()  # float64, random rel-pos tables
    x = image(40, 32)
    grads = {}
    for backend in ("math", "sdpa"):
        for blk in model.blocks:
            blk.attn.attn_backend = backend
        model.zero_grad()
        out = model(x)["block1"]
        # a random projection: sum(out ** 2) is nearly constant after a LayerNorm
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(2))).sum().backward()
        grads[backend] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert grads["math"]["blocks.0.attn.rel_pos_h"].abs().sum() > 0
    for name, g in grads["math"].items():
        assert torch.allclose(g, grads["sdpa"][name], atol=1e-9, rtol=1e-7), name


def test_rope_depends_on_relative_position_only():
    rope = RotaryEmbedding2d(head_dim=16, base=100.0)
    cos, sin = rope((5, 5), torch.device("cpu"), torch.float64)
    q = torch.randn(16, dtype=torch.float64).expand(1, 1, 25, 16)
    k = torch.randn(16, dtype=torch.float64).expand(1, 1, 25, 16)
    logits = (apply_rope(q, (cos, sin)) @ apply_rope(k, (cos, sin)).transpose(-1, -2))[0, 0]
    idx = lambda y, x: 5 * y + x  # noqa: E731
    # same offset (1, 2) at two places -> same logit; another offset -> different logit
    assert torch.isclose(logits[idx(0, 0), idx(1, 2)], logits[idx(2, 1), idx(3, 3)])
    assert not torch.isclose(logits[idx(0, 0), idx(1, 2)], logits[idx(0, 0), idx(2, 1)])
    # prefix tokens are not rotated
    x = torch.randn(1, 1, 27, 16, dtype=torch.float64)
    assert torch.equal(apply_rope(x, (cos, sin))[:, :, :2], x[:, :, :2])


# -- training features -------------------------------------------------------------------
def test_grad_checkpointing_same_outputs_and_grads():
    model = ViT(**TINY, drop_path_rate=0.5, reg_tokens=1).train()
    x = torch.randn(2, 3, 40, 32)

    def run(enable: bool):
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        torch.manual_seed(123)
        out = model(x)["block1"]
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    out_a, grads_a = run(False)
    out_b, grads_b = run(True)
    assert torch.equal(out_a, out_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6), name


@pytest.mark.parametrize("frozen", [-1, 0, 1, DEPTH])
def test_frozen_stages(frozen):
    model = ViT(**TINY, reg_tokens=1, frozen_stages=frozen, drop_path_rate=0.2)
    model.train()
    frozen_names = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = set()
    if frozen >= 0:
        expected |= {"cls_token", "reg_tokens", "pos_embed"}
        expected |= {n for n, _ in model.named_parameters() if n.startswith("patch_embed.")}
    for i in range(max(frozen, 0)):
        expected |= {n for n, _ in model.named_parameters() if n.startswith(f"blocks.{i}.")}
    if frozen == DEPTH:
        expected |= {"norm.weight", "norm.bias"}
    assert frozen_names == expected
    for i, blk in enumerate(model.blocks):
        assert all(not m.training for m in blk.modules()) == (i < frozen)
    out = model(torch.randn(1, 3, 32, 32))["block1"]
    assert out.requires_grad == (frozen < DEPTH)
    if frozen < DEPTH:
        out.sum().backward()
        assert all((p.grad is None) == (n in frozen_names) for n, p in model.named_parameters())
    model.freeze_stages(-1)  # unfreezing restores everything
    assert all(p.requires_grad for p in model.parameters())


def test_layer_ids_cover_all_params_and_are_monotone():
    model = ViT(**TINY, reg_tokens=2, qk_norm=True, init_values=0.1)
    ids = model.layer_ids()
    assert set(ids) == {n for n, _ in model.named_parameters()}
    assert set(ids.values()) == set(range(model.num_layers + 2))
    assert ids["pos_embed"] == ids["cls_token"] == ids["patch_embed.proj.weight"] == 0
    assert ids["norm.weight"] == model.num_layers + 1
    order = [ids[n] for n, _ in model.named_parameters()]  # registration order is depth order
    assert order == sorted(order)


def test_out_indices_and_attn_backend_override():
    model = randomize(ViT(**TINY, out_indices=(0, -1), attn_backend="math"))
    x = image(H, W)
    outs = model(x)
    assert list(outs) == ["block0", "block1"] == list(model.out_channels)
    assert model.out_strides == {"block0": PATCH, "block1": PATCH}
    for blk in model.blocks:
        blk.attn.attn_backend = "sdpa"
    assert_close(model(x)["block1"], outs["block1"], tol=1e-10)
    assert not torch.allclose(outs["block0"], outs["block1"])
    first_only = ViT(**TINY, out_indices=(0,))
    first_only.load_state_dict(model.state_dict())
    assert_close(first_only.double().eval()(x)["block0"], outs["block0"], tol=1e-12)


def test_incompatible_options_fail_at_construction():
    with pytest.raises(ValueError, match="class_token=False"):
        ViT(**TINY, window_size=2, window_block_indices=[0])
    with pytest.raises(ValueError, match="rope_base"):
        ViT(**TINY, class_token=False, use_rel_pos=True, rope_base=100.0)
    with pytest.raises(ValueError, match="go together"):
        ViT(**TINY, class_token=False, window_size=2)
    with pytest.raises(ValueError, match="norm_layer"):
        ViT(**TINY, norm_layer="batchnorm")


# -- registered presets ------------------------------------------------------------------
_TIMM_TWINS = {
    "vit_tiny_patch16": "vit_tiny_patch16_224",
    "vit_small_patch16": "vit_small_patch16_224",
    "vit_base_patch16": "vit_base_patch16_224",
    "vit_large_patch16": "vit_large_patch16_224",
    "vit_huge_patch14": "vit_huge_patch14_224",
    "vit_small_patch14_dinov2": "vit_small_patch14_dinov2",
    "vit_base_patch14_dinov2": "vit_base_patch14_dinov2",
    "vit_large_patch14_dinov2": "vit_large_patch14_dinov2",
    "vit_giant_patch14_dinov2": "vit_giant_patch14_dinov2",
    "vit_small_patch14_reg4_dinov2": "vit_small_patch14_reg4_dinov2",
    "vit_base_patch14_reg4_dinov2": "vit_base_patch14_reg4_dinov2",
    "vit_large_patch14_reg4_dinov2": "vit_large_patch14_reg4_dinov2",
    "vit_giant_patch14_reg4_dinov2": "vit_giant_patch14_reg4_dinov2",
    "vitdet_base_patch16": "samvit_base_patch16",
    "vitdet_large_patch16": "samvit_large_patch16",
    "vitdet_huge_patch16": "samvit_huge_patch16",
}
_HF_DINOV3 = {  # name: (hidden, layers, heads)
    "vit_small_patch16_dinov3": (384, 12, 6),
    "vit_base_patch16_dinov3": (768, 12, 12),
    "vit_large_patch16_dinov3": (1024, 24, 16),
}


_HF_DETR = {  # name: HF backbone config (windows, outputs: checked against the preset)
    "vit_small_patch14_rf_detr": dict(
        model_type="rf_detr_dinov2", hidden_size=384, num_attention_heads=6, image_size=518,
        patch_size=14, num_windows=4, out_indices=[2, 5, 8, 11],
    ),
    "vit_small_patch16_rf_detr": dict(
        model_type="rf_detr_dinov2", hidden_size=384, num_attention_heads=6, image_size=512,
        patch_size=16, num_windows=2, out_indices=[3, 6, 9, 12],
    ),
    **{
        f"vit_{size}_patch16_lw_detr": dict(
            model_type="lw_detr_vit", hidden_size=dim, num_hidden_layers=10,
            num_attention_heads=12, pretrain_image_size=224, image_size=640, num_windows=16,
            window_block_indices=[0, 1, 3, 6, 7, 9], out_indices=[3, 5, 6, 10],
        )
        for size, dim in (("tiny", 192), ("small", 384), ("base", 768))
    },
}  # fmt: skip


def _shapes_match_reference(ours: ViT, reference_sd: dict, config: dict | None = None) -> None:
    converted = ours.convert_checkpoint(reference_sd, config)
    own = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in converted.state_dict.items()}
    assert got == own, {k: (got.get(k), own.get(k)) for k in own.keys() | got.keys()}


@pytest.mark.parametrize("name", sorted(_TIMM_TWINS) + sorted(_HF_DINOV3) + sorted(_HF_DETR))
def test_every_preset_builds_with_the_reference_architecture(name):
    """Built on the meta device (no memory); every tensor shape equals the reference model's
    (RF-DETR / LW-DETR: and HF's config.json agrees with the preset's windows and outputs)."""
    config = None
    with torch.device("meta"):
        ours = MODELS.build(dict(type=name))
        if name in _HF_DETR:
            config = T.AutoConfig.for_model(**_HF_DETR[name])
            ref = T.AutoBackbone.from_config(config)
            config = config.to_dict()
        elif name in _TIMM_TWINS:
            ref = timm.create_model(_TIMM_TWINS[name], pretrained=False, num_classes=0)
        else:
            hidden, layers, heads = _HF_DINOV3[name]
            cfg = T.DINOv3ViTConfig(
                hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=4 * hidden, num_register_tokens=4, image_size=224,
            )  # fmt: skip
            ref = T.DINOv3ViTModel(cfg)
    assert isinstance(ours, ViT)
    _shapes_match_reference(ours, ref.state_dict(), config)


def test_all_presets_are_covered_and_small_ones_run():
    from visionfm.backbones.vit import VIT_PRESETS

    assert set(VIT_PRESETS) == set(_TIMM_TWINS) | set(_HF_DINOV3) | set(_HF_DETR)
    model = MODELS.build(dict(type="vit_small_patch14_reg4_dinov2", img_size=56, depth=1))
    out = model(torch.randn(1, 3, 70, 42))
    assert out["block0"].shape == (1, 384, 5, 3) and model.reg_tokens.shape == (1, 4, 384)
    tiny = MODELS.build(dict(type="vit_tiny_patch16", img_size=32, out_indices=(3, 11)))
    assert {k: v.shape[1:] for k, v in tiny(torch.randn(1, 3, 32, 48)).items()} == {
        "block3": (192, 2, 3),
        "block11": (192, 2, 3),
    }


def test_conv_stem_matches_patch_grid_and_trains():
    """The conv stem gives the patch embedding's grid for any input size, and learns."""
    from visionfm.layers import ConvStemEmbed, PatchEmbed

    x = torch.randn(2, 3, 45, 38)
    conv, patch = ConvStemEmbed(8, 3, 32), PatchEmbed(8, 3, 32)
    assert conv(x).shape == patch(x).shape == (2, 32, 6, 5)
    model = MODELS.build(
        dict(
            type="ViT",
            img_size=32,
            patch_size=8,
            embed_dim=32,
            depth=1,
            num_heads=2,
            class_token=False,
            embed_layer="conv",
        )
    )
    assert isinstance(model.patch_embed, ConvStemEmbed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    target = torch.randn(2, 32, 6, 5)
    losses = []
    for _ in range(5):
        loss = (model(x)["block0"] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="power-of-two"):
        ConvStemEmbed(14, 3, 32)
