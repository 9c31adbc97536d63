"""Checkpoint reading, unwrapping, load reports and the errors of bad checkpoints."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

from visionfm.backbones import ViT
from visionfm.weights import (
    CheckpointError,
    ConvertedCheckpoint,
    find_prefix,
    load_converted,
    read_checkpoint,
)

TINY = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3)


def timm_state(**kwargs) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return VisionTransformer(**{**TINY, **kwargs}, num_classes=0).state_dict()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}},
        lambda sd: {"meta": {"epoch": 1}, "state_dict": {"model": sd}},
    ],
    ids=["flat", "state_dict", "model+ddp", "nested"],
)
@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin"])
def test_read_checkpoint_unwraps_containers(tmp_path, wrap, suffix):
    sd = timm_state()
    torch.save(wrap(sd), tmp_path / f"c{suffix}")
    got = read_checkpoint(tmp_path / f"c{suffix}")
    assert got.keys() == sd.keys()
    assert all(torch.equal(got[k], sd[k]) for k in sd)


def test_read_checkpoint_safetensors_folder_and_memory(tmp_path):
    sd = timm_state()
    save_file(sd, tmp_path / "model.safetensors")
    for source in (tmp_path / "model.safetensors", tmp_path, str(tmp_path), {"model": sd}):
        got = read_checkpoint(source)
        assert got.keys() == sd.keys() and torch.equal(got["pos_embed"], sd["pos_embed"])


def test_unreadable_checkpoints_raise_clear_errors(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"\x00not a pickle" * 10)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 10)
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "notensors.pth")
    cases = {
        "bad.pth": "cannot read checkpoint",
        "bad.safetensors": "cannot read checkpoint",
        "tensor.pth": "not a state dict",
        "notensors.pth": "contains no tensors",
        "missing.pth": "not found",
        ".": "without any of",
    }
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="cannot read"):
        ViT(**TINY).load_pretrained(tmp_path / "bad.pth")


def test_find_prefix_prefers_the_shortest_whole_prefix():
    keys = ["backbone.vit.patch_embed.proj.weight", "vit.patch_embed.proj.weight", "xpatch.w"]
    assert find_prefix(keys, ("patch_embed.proj.weight",)) == ("vit.", "patch_embed.proj.weight")
    assert find_prefix(["mypatch_embed.proj.weight"], ("patch_embed.proj.weight",)) is None


def test_wrong_family_lists_what_does_not_match():
    torch.manual_seed(0)
    swin = SwinTransformer(img_size=32, patch_size=4, window_size=2, embed_dim=24, depths=(1, 1),
                           num_heads=(1, 2), num_classes=0).state_dict()  # fmt: skip
    with pytest.raises(CheckpointError) as err:
        ViT(**TINY).load_pretrained(swin)
    text = str(err.value)
    assert "another family" in text and "missing in checkpoint" in text
    assert "blocks.0.attn.qkv.weight (144, 48)" in text  # missing, with the model's shape
    assert "layers.0.blocks.0.attn.qkv.weight" in text  # unexpected
    with pytest.raises(CheckpointError, match="not a ViT checkpoint.*such as: conv.weight"):
        ViT(**TINY).load_pretrained({"conv.weight": torch.zeros(1), "fc.bias": torch.zeros(1)})


def test_wrong_size_raises_with_shapes_and_leaves_model_untouched():
    model = ViT(**TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        model.load_pretrained(timm_state(embed_dim=64, num_heads=4))
    text = str(err.value)
    assert "shapes differ" in text
    assert "blocks.0.attn.qkv.weight: checkpoint (192, 64) vs model (144, 48)" in text
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_report_lists_missing_and_ignored_with_shapes(caplog):
    """Zero-initialised parts the checkpoint lacks (qkv biases) load with a warning."""
    sd = timm_state(qkv_bias=False)
    sd["head.weight"] = torch.zeros(10, 48)
    model = ViT(**TINY)
    with caplog.at_level(logging.WARNING, logger="visionfm.weights"):
        report = model.load_pretrained(sd)
    assert set(report.missing) == {(f"blocks.{i}.attn.qkv.bias", (144,)) for i in range(2)}
    assert report.ignored == ["head.weight"] and not report.ok and not report.unexpected
    assert "blocks.0.attn.qkv.bias (144)" in caplog.text
    assert torch.equal(model.blocks[1].attn.qkv.weight, sd["blocks.1.attn.qkv.weight"])
    with pytest.raises(CheckpointError, match="strict=True"):
        ViT(**TINY).load_pretrained(sd, strict=True)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.update(timm_state(depth=3)), "has 3 blocks, the model 2: set depth=3"),
        (lambda sd: [sd.pop(f"norm.{p}") for p in ("weight", "bias")], "set final_norm=False"),
        (lambda sd: sd.update(extra=torch.zeros(2)), "1 tensors the model has no place for"),
    ],
    ids=["deeper", "no-final-norm", "foreign-tensor"],
)
def test_parameters_left_over_or_left_at_init_are_refused(edit, message):
    """A deeper model's blocks, a tensor nothing uses, or a final norm the checkpoint lacks
    would give other features than the checkpoint's model: refused, model untouched."""
    sd = timm_state()
    edit(sd)
    model = ViT(**TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        model.load_pretrained(sd)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_pretrained_argument_loads_at_construction(tmp_path):
    sd = timm_state()
    torch.save(sd, tmp_path / "vit.pth")
    model = ViT(**TINY, pretrained=str(tmp_path / "vit.pth"))
    expected = sd["cls_token"] + sd["pos_embed"][:, :1]  # class position folded into the token
    assert torch.equal(model.cls_token, expected)
    assert torch.equal(model.pos_embed, sd["pos_embed"][:, 1:].reshape(1, 4, 4, 48))


def test_load_converted_coverage_threshold():
    model = torch.nn.Linear(4, 4)
    half = ConvertedCheckpoint({"bias": torch.ones(4)}, "test")
    with pytest.raises(CheckpointError, match="only 20%"):
        load_converted(model, half)
    report = load_converted(model, half, min_loaded=0.1)
    assert report.loaded == ["bias"] and report.missing == [("weight", (4, 4))]
    assert torch.equal(model.bias, torch.ones(4))


def test_read_checkpoint_carries_the_pickled_training_args(tmp_path):
    """Original repositories save {'model': ..., 'args': Namespace, 'epoch': ...}: the
    tensors come back as the state dict, the args beside them (``CheckpointState.args``),
    from a file (weights_only with the allow-list) and from memory alike."""
    import argparse

    import numpy as np

    from visionfm.engine.checkpoint import SAFE_GLOBALS
    from visionfm.safe_pickle import PICKLED_ARGS_GLOBALS

    args = argparse.Namespace(num_queries=300, lr=np.float32(1e-4), names=["a", "b"])
    ckpt = {"model": {"w": torch.ones(2)}, "args": args, "epoch": 3}
    torch.save(ckpt, tmp_path / "original.pth")
    for source in (tmp_path / "original.pth", ckpt):
        state = read_checkpoint(source)
        assert set(state) == {"w"} and state.args["num_queries"] == 300
        assert state.args["names"] == ["a", "b"] and state.args["lr"] == np.float32(1e-4)
    assert read_checkpoint({"w": torch.ones(1)}).args is None  # a plain state dict: none
    # one allow-list: the engine's (mmengine checkpoints) extends the weights reader's
    assert all(any(g is s for s in SAFE_GLOBALS) for g in PICKLED_ARGS_GLOBALS)
