"""Layer-wise lr decay groups and bf16 autocast training on CPU."""

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from torch import nn

from visionfm.backbones import ViT
from visionfm.engine import AutocastOptimWrapper


@pytest.fixture(autouse=True)
def _visionfm_scope():
    init_default_scope("visionfm")  # as the runner does for every visionfm config


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = ViT(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
        self.head = nn.Linear(32, 3)


def _groups_by_param(optim):
    out = {}
    for group in optim.param_groups:
        for p in group["params"]:
            out[id(p)] = group
    return out


def test_layer_decay_lr_and_no_decay_groups():
    model = _Model()
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05),
            constructor="LayerDecayOptimWrapperConstructor",
            paramwise_cfg=dict(decay_rate=0.5),
        ),
    )
    groups = _groups_by_param(wrapper.optimizer)
    backbone = model.backbone
    top = backbone.num_layers + 1
    for name, p in backbone.named_parameters():
        expected = 0.5 ** (top - backbone.get_layer_id(name))
        assert groups[id(p)]["lr"] == pytest.approx(expected), name
    # embeddings learn slowest, later blocks faster, head at the base lr
    assert groups[id(backbone.patch_embed.proj.weight)]["lr"] == pytest.approx(0.5**top)
    assert groups[id(model.head.weight)]["lr"] == 1.0
    # no weight decay on biases, norms and position embeddings; decay on matrices
    assert groups[id(model.head.bias)]["weight_decay"] == 0.0
    assert groups[id(backbone.pos_embed)]["weight_decay"] == 0.0
    assert groups[id(model.head.weight)]["weight_decay"] == 0.05
    assert sum(len(g["params"]) for g in wrapper.optimizer.param_groups) == len(
        list(model.parameters())
    )


def test_layer_decay_needs_a_backbone():
    with pytest.raises(ValueError, match="no backbone 'encoder'"):
        build_optim_wrapper(
            _Model(),
            dict(
                optimizer=dict(type="SGD", lr=0.1),
                constructor="LayerDecayOptimWrapperConstructor",
                paramwise_cfg=dict(backbone="encoder"),
            ),
        )


def test_autocast_wrapper_runs_bf16_forward_and_updates_fp32_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    wrapper = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    before = model[0].weight.clone()
    with wrapper.optim_context(model):
        out = model(x)
    assert out.dtype == torch.bfloat16
    loss = ((out.float() - y) ** 2).mean()
    wrapper.update_params(loss)
    assert model[0].weight.dtype == torch.float32
    assert not torch.equal(model[0].weight, before)
