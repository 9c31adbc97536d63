"""visionfm.layers.mlp: the in-place GELU taken when no gradient flows gives the autograd
path's output and leaves the caller's tensors alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from visionfm.layers import Mlp


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_inplace_gelu_equals_autograd_path(approximate):
    torch.manual_seed(0)
    mlp = Mlp(8, 24, act_layer=lambda: nn.GELU(approximate=approximate)).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    kept = x.clone()
    reference = mlp.fc2(mlp.act(mlp.fc1(x)))  # out of place, with autograd
    with torch.no_grad():
        fast = mlp(x)
    assert torch.equal(x, kept)
    assert torch.equal(fast, reference.detach())
    mlp(x).sum().backward()  # the autograd path still runs backward
    assert mlp.fc1.weight.grad is not None
