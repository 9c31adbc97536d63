"""TimmBackbone: outputs equal timm's own feature extraction, local weights, training features.

Models are timm's tiny ``test_*`` models with random weights (saved to a local file and
loaded by both sides), compared in float64 at odd, non-default input sizes.
"""

from __future__ import annotations

import pytest
import timm
import torch
from _helpers import image
from safetensors.torch import save_file

from visionfm.backbones.timm_backbone import TimmBackbone
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

CNNS = ["test_resnet", "test_convnext"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Nothing here may touch the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def random_timm(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A plain timm model with random weights everywhere (zero-init layer scales included)."""
    model = timm.create_model(name, pretrained=False, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.2 if p.dim() > 1 else 0.5))
    return model.eval()


def saved(model: torch.nn.Module, path, safetensors: bool = False):
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, path) if safetensors else torch.save({"state_dict": sd, "epoch": 3}, path)
    return path


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff <= tol, f"max abs diff {diff:.3g} > {tol}"
    assert b.abs().max() > 0.1


# -- equality with timm ------------------------------------------------------------------
@pytest.mark.parametrize("name", CNNS)
@pytest.mark.parametrize("mode", ["auto", "features_only"])
def test_cnn_levels_equal_timm_features_only(tmp_path, name, mode):
    path = saved(random_timm(name), tmp_path / "w.pth")
    ours = TimmBackbone(name, checkpoint=path, feature_mode=mode).double().eval()
    assert ours.feature_mode == ("intermediates" if mode == "auto" else mode)
    ref = timm.create_model(
        name, features_only=True, out_indices=ours.out_indices, pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)),
    ).double().eval()  # fmt: skip
    x = image(67, 93)
    got, expected = ours(x), ref(x)
    assert list(got) == ["p2", "p3", "p4", "p5"] == list(ours.out_channels)
    assert ours.out_strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
    assert list(ours.out_channels.values()) == ref.feature_info.channels()
    for (key, a), b in zip(got.items(), expected):
        assert a.shape[1] == ours.out_channels[key]
        assert_close(a, b)


def test_vit_blocks_equal_timm_forward_intermediates(tmp_path):
    """ViT: dynamic size and padding on by default; block outputs, stride = patch size."""
    ref = random_timm("test_vit", dynamic_img_size=True, dynamic_img_pad=True).double()
    path = saved(ref.float(), tmp_path / "vit.safetensors", safetensors=True)
    ref.double()
    ours = TimmBackbone("test_vit", checkpoint=path, out_indices=(1, -1)).double().eval()
    assert ours.feature_mode == "intermediates"
    x = image(70, 100)  # padded to 80 x 112: a 5 x 7 grid (the model was made for 160 x 160)
    got = ours(x)
    expected = ref.forward_intermediates(x, indices=[1, 5], intermediates_only=True)
    assert list(got) == ["block1", "block5"]
    assert ours.out_strides == {"block1": 16, "block5": 16}
    assert ours.out_channels == {"block1": 64, "block5": 64}
    for a, b in zip(got.values(), expected):
        assert a.shape == (2, 64, 5, 7)
        assert_close(a, b)
    # timm's own features_only wrapper for ViTs gives the same maps
    getter = timm.create_model(
        "test_vit", features_only=True, out_indices=(1, 5), dynamic_img_size=True,
        dynamic_img_pad=True,
    )  # fmt: skip
    missing, _ = getter.load_state_dict(
        {f"model.{k}": v for k, v in ref.state_dict().items()}, strict=False
    )
    assert not missing
    assert_close(got["block5"], getter.double().eval()(x)[1])
    # with norm=True the final norm is kept and applied to every output
    normed = TimmBackbone("test_vit", checkpoint=path, norm=True).double().eval()
    expected = ref.forward_intermediates(x, indices=[5], norm=True, intermediates_only=True)
    assert_close(normed(x)["block5"], expected[0])


def test_default_levels():
    assert list(TimmBackbone("test_resnet").out_strides.values()) == [4, 8, 16, 32]  # no C1
    assert TimmBackbone("test_vit").out_indices == [5]  # plain ViT: the last block
    everything = TimmBackbone("test_resnet", out_indices=range(5))
    assert everything.out_strides == {"p1": 2, "p2": 4, "p3": 8, "p4": 16, "p5": 32}
    with pytest.raises(ValueError, match="out of range: the model has 5 feature levels"):
        TimmBackbone("test_resnet", out_indices=(5,))


# -- weights -----------------------------------------------------------------------------
def test_pretrained_needs_a_local_file(tmp_path):
    with pytest.raises(ValueError, match="never downloads"):
        TimmBackbone("test_resnet", pretrained=True)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        TimmBackbone("test_resnet", pretrained=True, checkpoint=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="feature_mode"):
        TimmBackbone("test_resnet", feature_mode="hooks")


def test_wrong_checkpoints_raise(tmp_path):
    convnext = saved(random_timm("test_convnext"), tmp_path / "convnext.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint of timm model 'test_resnet'"):
        TimmBackbone("test_resnet", checkpoint=convnext)
    wider = saved(random_timm("test_convnext", dims=(24, 32, 48, 80)), tmp_path / "wide.pth")
    with pytest.raises(CheckpointError, match="(?s)shapes differ.*stages.3"):
        TimmBackbone("test_convnext", checkpoint=wider)
    partial = random_timm("test_resnet").state_dict()
    partial = {k: v for k, v in partial.items() if not k.startswith("layer4.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="(?s)strict=True.*layer4.0.conv1.weight"):
        TimmBackbone("test_resnet", checkpoint=tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="timm cannot read"):
        TimmBackbone("test_resnet", checkpoint=tmp_path / "junk.pth")


def test_head_is_ignored_and_load_pretrained_after_construction(tmp_path):
    ref = random_timm("test_resnet", num_classes=7)  # a fine-tuned head of another size
    ours = TimmBackbone("test_resnet", checkpoint=saved(ref, tmp_path / "ft.pth"))
    fresh = TimmBackbone("test_resnet")
    report = fresh.load_pretrained({f"module.{k}": v for k, v in ref.state_dict().items()})
    assert report.ok and sorted(report.ignored) == ["fc.bias", "fc.weight"], str(report)
    x = image(40, 56).float()
    a, b = ours.eval()(x), fresh.eval()(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- training features -------------------------------------------------------------------
@pytest.mark.parametrize("name", ["test_convnext", "test_vit"])
def test_grad_checkpointing_same_grads_and_every_param_learns(name):
    model = TimmBackbone(name, out_indices=(0, -1)).train()
    x = torch.randn(2, 3, 48, 64)

    def run(enable: bool):
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        out = model(x)
        sum(
            (v * torch.linspace(-1, 1, v.numel()).view_as(v)).sum() for v in out.values()
        ).backward()
        return out, {n: p.grad for n, p in model.named_parameters()}

    out_a, grads_a = run(False)
    out_b, grads_b = run(True)
    assert all(torch.allclose(out_a[k], out_b[k]) for k in out_a)
    for name_, g in grads_a.items():
        assert g is not None and g.abs().sum() > 0, name_
        assert torch.allclose(g, grads_b[name_], atol=1e-6), name_


def test_frozen_stages_resnet():
    model = TimmBackbone("test_resnet", frozen_stages=1, drop_path_rate=0.1).train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    expected = {
        n for n, _ in model.named_parameters() if n.startswith(("model.conv1", "model.bn1", "model.layer1"))
    }  # fmt: skip
    assert frozen == expected and frozen
    assert not model.model.bn1.training and not model.model.layer1[0].bn1.training
    assert model.model.layer2[0].bn1.training
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.sum() for v in out.values()).backward()
    assert all((p.grad is None) == (n in frozen) for n, p in model.named_parameters())
    model.freeze_stages(-1)
    assert all(p.requires_grad for p in model.parameters()) and model.model.bn1.training


@pytest.mark.parametrize(
    "name, mode", [("test_vit", "auto"), ("test_efficientnet", "features_only")]
)
def test_layer_ids_cover_all_params_and_are_monotone(name, mode):
    model = TimmBackbone(name, feature_mode=mode)
    ids = model.layer_ids()
    assert set(ids) == {n for n, _ in model.named_parameters()}
    assert set(ids.values()) == set(range(model.num_layers + 1))
    order = [ids[n] for n, _ in model.named_parameters() if not n.startswith("model.cls_token")]
    assert order == sorted(order) and order[0] == 0
    if name == "test_vit":  # timm's group matcher: stem, then one id per block
        assert model.num_layers == 6
        assert ids["model.cls_token"] == ids["model.pos_embed"] == 0
        assert ids["model.blocks.2.attn.qkv.weight"] == 3


def test_built_from_config():
    model = MODELS.build(dict(type="TimmBackbone", model_name="test_convnext", out_indices=(2, 3)))
    assert isinstance(model, TimmBackbone)
    assert model.out_channels == {"p4": 48, "p5": 64}


def test_timm_checkpoint_filter_resizes_position_embeddings(tmp_path):
    """A ViT checkpoint made for 160 px loads into a 96 px model through timm's own filter."""
    ref = random_timm("test_vit")
    model = TimmBackbone("test_vit", img_size=96, checkpoint=saved(ref, tmp_path / "v.pth"))
    assert model.model.pos_embed.shape == (1, 1 + 6 * 6, 64)
    report = model.load_pretrained(ref.state_dict())
    assert "checkpoint_filter_fn" in report.source_format and not report.missing


def test_parts_the_model_lacks_are_refused_naming_the_timm_argument(tmp_path):
    """A layer-scale checkpoint into a model built without ``init_values`` is refused (not
    loaded with its gammas dropped); with the argument named, outputs equal timm's."""
    ref = random_timm("test_vit", init_values=1e-5, dynamic_img_size=True, dynamic_img_pad=True)
    path = saved(ref, tmp_path / "ls.pth")
    with pytest.raises(CheckpointError, match=r"layer scale \(blocks\.0\.ls1\.gamma.*init_values="):
        TimmBackbone("test_vit", checkpoint=path)
    ours = TimmBackbone("test_vit", checkpoint=path, init_values=1e-5).double().eval()
    x = image(70, 100)
    expected = ref.double().forward_intermediates(x, indices=[5], intermediates_only=True)
    assert_close(ours(x)["block5"], expected[0])
