"""MultiScaleProjector (LW-DETR / RF-DETR) against Hugging Face's ``LwDetrMultiScaleProjector``
and ``RfDetrScaleProjector``: random weights (batch-norm statistics too), float64, the same
input maps at a non-square size, weights through ``convert_projector_checkpoint``."""

from __future__ import annotations

import re

import pytest
import torch
from _helpers import randomize

from visionfm.necks import MultiScaleProjector, convert_projector_checkpoint
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

T = pytest.importorskip("transformers")
LW = pytest.importorskip("transformers.models.lw_detr.modeling_lw_detr")
RF = pytest.importorskip("transformers.models.rf_detr.modeling_rf_detr")

D_MODEL, BLOCKS = 32, ("block1", "block3", "block4")


def maps(dim: int, h: int = 6, w: int = 10) -> dict[str, torch.Tensor]:
    """One (2, dim, h, w) float64 map per ViT output block, the same on every call."""
    gen = torch.Generator().manual_seed(1)
    return {k: torch.randn(2, dim, h, w, generator=gen).double() for k in BLOCKS}


def random_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Batch-norm running statistics away from (0, 1), so that eval mode is not a no-op."""
    gen = torch.Generator().manual_seed(2)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model


def hf_lw_detr(dim: int, scales: list[float]):
    backbone = dict(model_type="lw_detr_vit", hidden_size=dim, num_hidden_layers=5,
                    num_attention_heads=2, out_indices=[2, 4, 5], image_size=64)  # fmt: skip
    config = T.LwDetrConfig(
        backbone_config=backbone, d_model=D_MODEL, projector_scale_factors=scales,
        c2f_num_blocks=2, batch_norm_eps=1e-3,
    )  # fmt: skip
    return random_statistics(randomize(LW.LwDetrMultiScaleProjector(config)))


def ours_from(state: dict, dim: int, **kwargs) -> MultiScaleProjector:
    model = MODELS.build(
        dict(type="MultiScaleProjector", in_channels=dict.fromkeys(BLOCKS, dim),
             strides=dict.fromkeys(BLOCKS, 16), out_channels=D_MODEL, num_blocks=2, **kwargs)
    )  # fmt: skip
    model.load_state_dict(convert_projector_checkpoint(state), strict=True)
    return model.double().eval()


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = (a - b).abs().max().item()
    assert diff <= tol and b.abs().max() > 0.1, diff
    return diff


@pytest.mark.parametrize(
    "dim, scales", [(48, [2.0, 1.0, 0.5]), (520, [2.0])], ids=["p3-p4-p5", "wide-halved-first"]
)
def test_lw_detr_projector_equals_hugging_face(dim, scales):
    """Deconv / identity / strided-conv resampling, C2f with batch norm, closing LayerNorm; a
    map wider than 512 is halved by a 1x1 conv before the deconv."""
    ref = hf_lw_detr(dim, scales)
    ours = ours_from(ref.state_dict(), dim, scale_factors=scales, norm_layer="BN_1e-3")
    feats = maps(dim)
    expected = ref(tuple(feats.values()))
    out = ours(feats)
    names = {2.0: "p3", 1.0: "p4", 0.5: "p5"}
    assert list(out) == [names[s] for s in scales] == list(ours.out_channels)
    assert ours.out_strides == {names[s]: int(16 / s) for s in scales}
    for got, want in zip(out.values(), expected):
        assert_close(got, want)


def test_rf_detr_projector_equals_hugging_face():
    """One level (scale 1), C2f with channels-first LayerNorm (HF: config.layer_norm_eps)."""
    backbone = dict(model_type="rf_detr_dinov2", hidden_size=48, num_hidden_layers=5,
                    num_attention_heads=2, out_indices=[2, 4, 5])  # fmt: skip
    config = T.RfDetrConfig(backbone_config=backbone, d_model=D_MODEL, c2f_num_blocks=2)
    ref = randomize(RF.RfDetrScaleProjector(config))
    ours = ours_from(ref.state_dict(), 48, norm_layer=f"LN2d_{config.layer_norm_eps}")
    feats = maps(48, 7, 5)
    assert_close(ours(feats)["p4"], ref(tuple(feats.values())))


def test_original_repo_names_convert_as_hugging_face_ones():
    """The original LW-DETR / RF-DETR ``stages_sampling`` / ``stages`` layout."""
    state = hf_lw_detr(48, [2.0, 0.5]).state_dict()
    original = {}
    for name, tensor in state.items():
        name = re.sub(r"^scale_layers\.(\d+)\.sampling_layers\.(\d+)\.layers\.", r"stages_sampling.\1.\2.", name)  # fmt: skip
        name = re.sub(r"^scale_layers\.(\d+)\.projector_layer\.", r"stages.\1.0.", name)
        name = re.sub(r"^scale_layers\.(\d+)\.layer_norm\.", r"stages.\1.1.", name)
        name = re.sub(r"\.bottlenecks\.(\d+)\.conv([12])\.", r".m.\1.cv\2.", name)
        name = (
            name.replace(".conv1.", ".cv1.").replace(".conv2.", ".cv2.").replace(".norm.", ".bn.")
        )
        original[name] = tensor
    assert "stages.0.0.m.1.cv2.bn.running_var" in original
    converted = convert_projector_checkpoint(original)
    assert converted.keys() == convert_projector_checkpoint(state).keys()
    ours = ours_from(original, 48, scale_factors=[2.0, 0.5], norm_layer="BN")
    assert set(ours(maps(48))) == {"p3", "p5"}


def test_bad_inputs_are_refused():
    with pytest.raises(CheckpointError, match="not in a known LW-DETR / RF-DETR projector"):
        convert_projector_checkpoint({"input_proj.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="maps of one stride"):
        MultiScaleProjector(dict(p3=8, p4=8), dict(p3=8, p4=16))
    with pytest.raises(ValueError, match="use 2, 1 or 0.5"):
        MultiScaleProjector(dict(block0=8), dict(block0=16), scale_factors=(4.0,))
    with pytest.raises(ValueError, match="repeat an output level"):
        MultiScaleProjector(dict(block0=8), dict(block0=16), scale_factors=(1.0, 1.0))
    projector = MultiScaleProjector(dict(block0=8, block1=8), dict(block0=16, block1=16))
    with pytest.raises(KeyError, match="expects levels"):
        projector({"block0": torch.zeros(1, 8, 4, 4)})


def test_trains_with_odd_strides():
    """Patch 7 at scales 2 and 0.5: strides 3.5 (reported as such) and 14; gradients reach
    every parameter."""
    model = MultiScaleProjector(dict(b0=16, b1=16), dict(b0=7, b1=7), out_channels=16,
                                scale_factors=(2.0, 0.5), norm_layer="BN").train()  # fmt: skip
    assert model.out_strides == {"p2": 3.5, "p4": 14}
    out = model({"b0": torch.randn(2, 16, 5, 9), "b1": torch.randn(2, 16, 5, 9)})
    assert out["p2"].shape == (2, 16, 10, 18) and out["p4"].shape == (2, 16, 3, 5)
    sum(o.square().mean() for o in out.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
