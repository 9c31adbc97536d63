"""visionfm.layers.residual: post-norm layers keep their sublayers' names and order (the
state-dict keys and parameter order of saved checkpoints), and their configs are checked."""

from __future__ import annotations

import pytest

from visionfm.registry import MODELS, ConfigError


def _attn(dims: int = 16) -> dict:
    return dict(type="DetrMultiheadAttention", embed_dims=dims, num_heads=2)


def _ffn(dims: int = 16) -> dict:
    return dict(type="DetrFFN", embed_dims=dims, feedforward_dims=32)


@pytest.mark.parametrize(
    "layer, order",
    [
        (dict(type="DetrEncoderLayer", self_attn=_attn(), ffn=_ffn()), ["self_attn", "ffn"]),
        (
            dict(type="DetrDecoderLayer", self_attn=_attn(), cross_attn=_attn(), ffn=_ffn()),
            ["self_attn", "cross_attn", "ffn"],
        ),
        (
            dict(
                type="MaskedAttentionDecoderLayer",
                cross_attn=_attn(),
                self_attn=_attn(),
                ffn=_ffn(),
            ),  # fmt: skip
            ["cross_attn", "self_attn", "ffn"],
        ),
    ],
)
def test_post_norm_layers_register_their_sublayers_then_one_norm_each(layer, order):
    built = MODELS.build(dict(layer, dropout=0.25, norm_layer="LN_1e-6"))
    norms = [f"norm{i}" for i in range(1, len(order) + 1)]
    assert [name for name, _ in built.named_children()] == order + norms + ["drop"]
    assert built.embed_dims == 16 and built.drop.p == 0.25
    assert all(getattr(built, n).eps == 1e-6 and getattr(built, n).weight.shape == (16,)
               for n in norms)  # fmt: skip


@pytest.mark.parametrize(
    "layer_type", ["DetrEncoderLayer", "DetrDecoderLayer", "MaskedAttentionDecoderLayer"]
)
def test_post_norm_arguments_are_checked_against_the_base(layer_type):
    with pytest.raises(ConfigError, match=rf"model\.dropuot: {layer_type} takes no argument "
                       r"'dropuot'\. Did you mean 'dropout'"):  # fmt: skip
        MODELS.build(dict(type=layer_type, dropuot=0.1))
    # the base's positional-only sublayers are not a config key
    with pytest.raises(ConfigError, match=r"model\.sublayers: .* It accepts: .*ffn, dropout, "
                       r"norm_layer\.$"):  # fmt: skip
        MODELS.build(dict(type=layer_type, sublayers={}))
