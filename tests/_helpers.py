"""Small helpers shared by the tests that hold our modules equal to a reference
implementation: random weights everywhere and a fixed random image batch, both float64.

Tests import it as ``from _helpers import ...`` (tests/ is on ``sys.path``, see
``_tiny_models.py``).
"""

from __future__ import annotations

import torch


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` with random weights everywhere, in float64 and eval mode.

    Default inits leave parts at zero or one (layer scale, relative position tables, Swin V2
    post-norms, class tokens, biases), where a wrong conversion would go unnoticed; these
    weights differ everywhere: N(0, 0.2) for matrices, N(0, 0.5) for vectors.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.2 if p.dim() > 1 else 0.5))
    return model.double().eval()


def image(h: int, w: int, batch: int = 2) -> torch.Tensor:
    """(batch, 3, h, w) float64 standard-normal pixels, the same on every call."""
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1)).double()
