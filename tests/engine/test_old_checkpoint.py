"""Checkpoints written before a refactor still load, and give the outputs they gave then.

tests/fixtures/old_checkpoints/ holds one runner-style checkpoint (``meta``, ``state_dict``)
per tiny model below, written by the commit named in its ``meta`` (before the shared layers
moved to ``visionfm/layers/``, issue 14 part 1): random float16 weights from a fixed seed,
plus ``reference``: a fixed input (1, 3, 16, 24) and the raw head outputs (``mode='tensor'``)
the model gave on it then. A renamed parameter fails the strict load; a changed computation
fails the comparison.

``python tests/engine/test_old_checkpoint.py`` rewrites the fixtures with the current code;
do that only when a change of outputs or keys is intended (and say so in the commit).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from visionfm.engine.checkpoint import load_checkpoint_file, load_model_weights
from visionfm.registry import MODELS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "old_checkpoints"
C = 16  # every tiny model's width


def _vit(depth: int = 1, **kwargs) -> dict:
    """A ViT (``depth`` blocks) for 16 px inputs (run on 16 x 24: its position embedding
    interpolates), 4 px patches, no class token: stride-4 levels."""
    return dict(type="ViT", img_size=16, patch_size=4, embed_dim=C, depth=depth, num_heads=2,
                mlp_ratio=2.0, class_token=False, **kwargs)  # fmt: skip


def _sfp() -> dict:
    """ViTDet's simple pyramid: levels p2, p3 (strides 4, 8)."""
    return dict(type="SimpleFeaturePyramid", in_channels=C, out_channels=C,
                scale_factors=(1.0, 0.5), in_stride=4)  # fmt: skip


def _encoder(num_levels: int) -> dict:
    """One deformable-attention encoder layer over ``num_levels`` levels."""
    attn = dict(type="DeformableMemoryAttention", embed_dims=C, num_heads=2,
                num_levels=num_levels, num_points=2)  # fmt: skip
    return dict(type="DetrEncoder", num_layers=1,
                layer=dict(type="DetrEncoderLayer", self_attn=attn, ffn=_ffn()))  # fmt: skip


def _ffn() -> dict:
    return dict(type="DetrFFN", embed_dims=C, feedforward_dims=2 * C)


def _dino() -> dict:
    """DINO (two-stage, box refinement, mixed query selection, denoising) on ViT + SFP."""
    deform = dict(type="DeformableMemoryAttention", embed_dims=C, num_heads=2, num_levels=3,
                  num_points=2)  # fmt: skip
    head = dict(
        type="DETRHead", num_classes=3, embed_dims=C, num_queries=8,
        in_channels=dict(p2=C, p3=C), strides=dict(p2=4, p3=8), num_feature_levels=3,
        input_norm="GN_8",
        encoder=_encoder(3),
        decoder=dict(
            type="DetrDecoder", num_layers=2,
            ref_point_head=dict(type="DetrMLP", in_dims=2 * C, hidden_dims=C, out_dims=C,
                                num_layers=2),
            layer=dict(type="DetrDecoderLayer",
                       self_attn=dict(type="DetrMultiheadAttention", embed_dims=C, num_heads=2),
                       cross_attn=deform, ffn=_ffn()),
        ),
        matcher=dict(type="HungarianMatcher"), two_stage=True, with_box_refine=True,
        mixed_query_selection=True, look_forward_twice=True,
        denoising=dict(type="CdnQueryGenerator", num_classes=3, embed_dims=C, num_dn_queries=4),
        test_cfg=dict(max_per_img=8),
    )  # fmt: skip
    return dict(type="Detector", backbone=_vit(), neck=_sfp(), head=head)


def _mask2former() -> dict:
    """Mask2Former (deformable pixel decoder, masked-attention decoder) on ViT + SFP."""
    attn = dict(type="DetrMultiheadAttention", embed_dims=C, num_heads=2)
    head = dict(
        type="Mask2FormerHead", num_things_classes=2, num_stuff_classes=1, num_queries=6,
        num_points=64,
        pixel_decoder=dict(type="MSDeformAttnPixelDecoder", in_channels=dict(p2=C, p3=C),
                           strides=dict(p2=4, p3=8), embed_dims=C, mask_dims=C,
                           num_encoder_levels=2, norm_layer="GN_8", encoder=_encoder(2)),
        transformer_decoder=dict(
            type="MaskedAttentionDecoder", num_layers=1,
            layer=dict(type="MaskedAttentionDecoderLayer", cross_attn=attn, self_attn=attn,
                       ffn=_ffn()),
        ),
        matcher=dict(type="MaskHungarianMatcher", num_points=64),
    )  # fmt: skip
    return dict(type="TaskModel", backbone=_vit(), neck=_sfp(), head=head)


def _dpt() -> dict:
    """DPT depth head on two ViT blocks' outputs (layer scale on, so its tensors are saved)."""
    decoder = dict(type="DPTDecoder", in_channels=dict(block0=C, block1=C),
                   in_strides=dict(block0=4, block1=4), neck_channels=8, channels=8)  # fmt: skip
    return dict(
        type="TaskModel",
        backbone=_vit(depth=2, out_indices=(0, 1), init_values=0.1),
        head=dict(type="DPTDepthHead", decoder=decoder, head_channels=8),
    )


MODELS_UNDER_TEST = dict(dino=_dino, mask2former=_mask2former, dpt=_dpt)


def _flat(out, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a nested dict / list / tensor output, keyed by their path."""
    if isinstance(out, torch.Tensor):
        return {prefix: out}
    items = out.items() if isinstance(out, dict) else enumerate(out)
    flat: dict[str, torch.Tensor] = {}
    for key, value in items:
        if isinstance(value, (torch.Tensor, dict, list, tuple)):
            flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _outputs(model: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The head's raw outputs on ``inputs`` (B, 3, H, W), flattened by :func:`_flat`."""
    with torch.no_grad():
        return _flat(model.eval()(inputs, mode="tensor"))


@pytest.mark.parametrize("name", sorted(MODELS_UNDER_TEST))
def test_old_checkpoint_loads_and_gives_its_outputs(name):
    path = FIXTURES / f"{name}.pth"
    model = MODELS.build(MODELS_UNDER_TEST[name]())
    load_model_weights(model, str(path))  # strict: every key and shape
    reference = load_checkpoint_file(str(path))["reference"]
    outputs = _outputs(model, reference["inputs"].float())
    assert outputs.keys() == reference["outputs"].keys()
    for key, expected in reference["outputs"].items():
        torch.testing.assert_close(outputs[key], expected, rtol=1e-4, atol=1e-4, msg=key)


def _write_fixtures() -> None:
    """Write every model's checkpoint with the current code (see the module docstring)."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for seed, (name, config) in enumerate(sorted(MODELS_UNDER_TEST.items())):
        model = MODELS.build(config())
        gen = torch.Generator().manual_seed(seed)
        state = {
            k: (torch.randn(v.shape, generator=gen) * 0.2).half() if v.is_floating_point() else v
            for k, v in model.state_dict().items()
        }
        model.load_state_dict(state)
        inputs = torch.randn(1, 3, 16, 24, generator=gen).half()
        reference = dict(inputs=inputs, outputs=_outputs(model, inputs.float()))
        meta = dict(commit=commit, seed=seed, note="random weights, written by " + __file__)
        ckpt = dict(meta=meta, state_dict=state, reference=reference)
        # torch's legacy format: a third smaller than the zip one for so many tiny tensors
        torch.save(ckpt, FIXTURES / f"{name}.pth", _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    _write_fixtures()
