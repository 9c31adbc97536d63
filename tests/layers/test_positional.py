"""visionfm.layers.positional: the sine encoding of a padded map measures positions inside
the image only; resized position-embedding grids equal timm's."""

from __future__ import annotations

import torch
from timm.layers.pos_embed import resample_abs_pos_embed_nhwc

from visionfm.layers import SinePositionalEncoding, resize_pos_embed


def test_sine_encoding_ignores_padding():
    pe = SinePositionalEncoding(8, normalize=True, offset=-0.5)
    mask = torch.zeros(2, 6, 8, dtype=torch.bool)
    mask[1, 4:] = True
    mask[1, :, 5:] = True
    pos = pe(mask)
    alone = pe(torch.zeros(1, 4, 5, dtype=torch.bool))
    assert pos.shape == (2, 16, 6, 8)
    torch.testing.assert_close(pos[1, :, :4, :5], alone[0])


def test_resize_pos_embed_matches_timm_non_square():
    pos = torch.randn(1, 4, 4, 48, dtype=torch.float64)
    for size in [(6, 5), (3, 7), (4, 4)]:
        ref = resample_abs_pos_embed_nhwc(pos, list(size))
        torch.testing.assert_close(
            resize_pos_embed(pos, size, antialias=True), ref, rtol=0, atol=1e-10
        )
    const = torch.full((1, 4, 4, 2), 3.0, dtype=torch.float64)
    assert torch.allclose(resize_pos_embed(const, (9, 5)), const.new_full((1, 9, 5, 2), 3.0))
