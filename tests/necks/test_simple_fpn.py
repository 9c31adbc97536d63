"""SimpleFeaturePyramid (ViTDet): levels, strides, channels, and values against a
functional re-statement of the paper's recipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from visionfm.backbones import ViT
from visionfm.necks import SimpleFeaturePyramid
from visionfm.registry import MODELS


def _ln2d(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """Channel LayerNorm written out: normalise over C at every pixel."""
    mean = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    y = (x - mean) / torch.sqrt(var + norm.eps)
    return y * norm.weight[:, None, None] + norm.bias[:, None, None]


def _reference(neck: SimpleFeaturePyramid, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """ViTDet's recipe with F.* calls and the neck's own weights (norm = channel LN)."""
    outs = {}
    for scale, stage, key in zip((4, 2, 1, 0.5), neck.stages, ("p2", "p3", "p4", "p5")):
        mods = list(stage)
        y = x
        if scale == 4:
            d1, n1, _, d2 = mods[0]
            y = F.conv_transpose2d(y, d1.weight, d1.bias, stride=2)
            y = F.conv_transpose2d(F.gelu(_ln2d(y, n1)), d2.weight, d2.bias, stride=2)
        elif scale == 2:
            y = F.conv_transpose2d(y, mods[0].weight, mods[0].bias, stride=2)
        elif scale == 0.5:
            y = F.max_pool2d(y, 2)
        conv1, norm1, conv3, norm3 = mods[1:]
        y = _ln2d(F.conv2d(y, conv1.weight), norm1)
        outs[key] = _ln2d(F.conv2d(y, conv3.weight, padding=1), norm3)
    outs["p6"] = outs["p5"][..., ::2, ::2]
    return outs


def test_values_match_the_vitdet_recipe():
    torch.manual_seed(0)
    neck = SimpleFeaturePyramid(in_channels=32, out_channels=16, top_block=True)
    with torch.no_grad():
        for p in neck.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(2, 32, 5, 7)
    got = neck({"block11": x})
    expected = _reference(neck, x)
    assert list(got) == ["p2", "p3", "p4", "p5", "p6"]
    for key in expected:
        assert got[key].shape == expected[key].shape, key
        assert torch.allclose(got[key], expected[key], atol=1e-5), key


def test_levels_strides_channels_follow_the_scale_factors():
    neck = MODELS.build(
        dict(type="SimpleFeaturePyramid", in_channels=64, out_channels=24, top_block=True)
    )
    assert neck.out_strides == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    assert neck.out_channels == dict.fromkeys(neck.out_strides, 24)
    outs = neck(torch.randn(1, 64, 8, 6))
    assert {k: tuple(v.shape[1:]) for k, v in outs.items()} == {
        "p2": (24, 32, 24),
        "p3": (24, 16, 12),
        "p4": (24, 8, 6),
        "p5": (24, 4, 3),
        "p6": (24, 2, 2),
    }
    two = SimpleFeaturePyramid(64, 8, scale_factors=(2.0, 1.0), in_stride=8, norm_layer="GN_4")
    assert two.out_strides == {"p2": 4, "p3": 8}
    assert isinstance(two.stages[0][2], nn.GroupNorm) and two.stages[0][2].num_groups == 4
    plain = SimpleFeaturePyramid(64, 8, scale_factors=(1.0,), norm_layer=None)
    assert plain.stages[0][1].bias is not None and len(plain.stages[0]) == 3


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="not supported"):
        SimpleFeaturePyramid(64, scale_factors=(3.0,), in_stride=12)
    with pytest.raises(ValueError, match="power of two"):
        SimpleFeaturePyramid(64, scale_factors=(4.0, 1.0), in_stride=14)


def test_on_a_vit_backbone_end_to_end():
    backbone = ViT(
        img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=2, out_indices=(0, 1)
    )
    neck = SimpleFeaturePyramid(backbone.out_channels["block1"], 16, in_key="block0")
    feats = backbone(torch.randn(2, 3, 64, 80))
    outs = neck(feats)
    assert {k: v.shape[-2:] for k, v in outs.items()} == {
        "p2": (16, 20),
        "p3": (8, 10),
        "p4": (4, 5),
        "p5": (2, 2),
    }
    ref = SimpleFeaturePyramid(64, 16)
    ref.load_state_dict(neck.state_dict())
    assert torch.allclose(ref(feats["block0"])["p4"], outs["p4"])  # in_key picked block0
    assert not torch.allclose(ref(feats)["p4"], outs["p4"])  # default: the last entry
    sum(v.sum() for v in outs.values()).backward()
    assert backbone.blocks[0].attn.qkv.weight.grad is not None
