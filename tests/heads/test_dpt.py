"""DPT decoder + DPTDepthHead: equality with Hugging Face ``DPTForDepthEstimation``,
pyramid inputs, predictions mapped to the original image, losses wired, a learning check."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from _helpers import image, randomize

from visionfm.data import DataPreprocessor, DataSample
from visionfm.data.synthetic import dataset_scene
from visionfm.data.transforms import KBCrop, PackInputs, RandomFlip, Resize
from visionfm.evaluation.depth_metric import depth_errors
from visionfm.heads.depth import (
    DPTDecoder,
    DPTDepthHead,
    convert_dpt_checkpoint,
    dpt_model_from_hf,
)
from visionfm.models import TaskModel
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

T = pytest.importorskip("transformers")

HF_TINY = dict(
    hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
    image_size=64, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
    neck_hidden_sizes=[8, 16, 24, 32], fusion_hidden_size=16,
)  # fmt: skip


# -- equality with Hugging Face --------------------------------------------------------------
@pytest.mark.parametrize(
    "variant",
    [
        dict(readout_type="project"),
        dict(readout_type="add"),
        dict(readout_type="ignore", use_batch_norm_in_fusion_residual=True),
    ],
    ids=["project", "add", "ignore-bn"],
)
def test_matches_huggingface_dpt_at_a_non_default_size(tmp_path, variant):
    """Whole model built from a config and loaded from a saved HF folder (backbone and head
    each take their part), float64, 96 x 96 input for a model trained at 64 x 64."""
    ref = randomize(T.DPTForDepthEstimation(T.DPTConfig(**HF_TINY, **variant)))
    ref.float().save_pretrained(tmp_path)
    ref.double()
    cfg = dpt_model_from_hf(tmp_path / "config.json")
    assert cfg["backbone"]["pretrained"] == cfg["head"]["pretrained"] == str(tmp_path)
    model = MODELS.build(dict(type="TaskModel", **cfg))
    assert model.backbone.load_pretrained(tmp_path).ok  # nothing missing or left over
    assert model.head.load_pretrained(tmp_path).ok
    model = model.double().eval()
    x = image(96, 96)
    with torch.no_grad():
        expected = ref(pixel_values=x).predicted_depth  # (B, 96, 96)
        got = model(x, mode="tensor")[:, 0]
    assert got.shape == expected.shape == (2, 96, 96)
    scale = expected.abs().max().item()
    assert scale > 1.0  # not a vacuous comparison
    assert (got - expected).abs().max().item() <= 1e-5 * scale


def test_head_checkpoint_errors():
    head = DPTDepthHead(DPTDecoder([32] * 4, [16] * 4, neck_channels=8, channels=16))
    with pytest.raises(CheckpointError, match="not a Hugging Face DPT checkpoint"):
        convert_dpt_checkpoint({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, head)
    ref = T.DPTForDepthEstimation(T.DPTConfig(**HF_TINY, readout_type="project"))
    with pytest.raises(CheckpointError, match="readout"):  # built with readout='ignore'
        head.load_pretrained(ref.state_dict())


# -- decoder on plain and hierarchical backbones ----------------------------------------------
def test_decoder_on_a_pyramid_and_on_vit_blocks():
    torch.manual_seed(0)
    pyramid = {f"p{i}": torch.randn(2, 8 * 2**i, 64 // 2**i, 48 // 2**i) for i in range(2, 6)}
    strides = {k: 2 ** int(k[1]) for k in pyramid}  # 4 .. 32
    decoder = DPTDecoder({k: v.shape[1] for k, v in pyramid.items()}, strides, 16, channels=24)
    assert all(isinstance(r.resample, torch.nn.Identity) for r in decoder.reassembles)
    assert decoder(pyramid).shape == (2, 24, 128 // 4, 96 // 4)  # stride 2
    head = DPTDepthHead(decoder, max_depth=5.0)
    out = head(pyramid)
    assert out.shape == (2, 1, 64, 48) and (out > 0).all() and (out < 5).all()

    vit = {f"block{i}": torch.randn(2, 32, 4, 3) for i in range(4)}  # stride 16
    dec = DPTDecoder([32] * 4, [16] * 4, neck_channels=(8, 8, 16, 16), channels=16)
    assert [type(r.resample).__name__ for r in dec.reassembles] == [
        "ConvTranspose2d", "ConvTranspose2d", "Identity", "Conv2d",
    ]  # fmt: skip
    assert dec(vit).shape == (2, 16, 32, 24)
    with pytest.raises(ValueError, match="class token"):
        DPTDecoder([32] * 4, [16] * 4, 8, 16, readout="project")(vit)
    with pytest.raises(ValueError, match="twice the stride"):
        DPTDecoder([8, 8], [8, 32], 8, 16)


def test_vit_class_tokens_reach_the_readout():
    vit = MODELS.build(
        dict(type="ViT", img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2,
             out_indices=(0, 1), return_class_token=True, final_norm=False)
    )  # fmt: skip
    feats = vit(torch.randn(1, 3, 32, 48))
    assert feats["block1_cls"].shape == (1, 32) and list(vit.out_channels) == ["block0", "block1"]
    decoder = DPTDecoder(vit.out_channels, vit.out_strides, 8, 16, readout="add")
    plain = {k: v for k, v in feats.items() if not k.endswith("_cls")}
    assert not torch.allclose(decoder(feats), decoder(plain | _zero_cls(feats)))


def _zero_cls(feats: dict) -> dict:
    return {k: torch.zeros_like(v) for k, v in feats.items() if k.endswith("_cls")}


# -- predictions in original-image pixels -----------------------------------------------------
def _packed(h: int, w: int, flip: bool) -> dict:
    """A sample whose depth is a ramp in x and y, resized (and flipped) like a test pipeline."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    depth = 1.0 + 0.05 * xx + 0.02 * yy
    results = dict(img=np.zeros((h, w, 3), np.uint8), ori_shape=(h, w), img_shape=(h, w))
    results["gt_depth"] = depth
    results = Resize((80, 80), keep_ratio=True, depth_interpolation="bilinear")(results)
    results = RandomFlip(prob=1.0 if flip else 0.0)(results)
    return PackInputs()(results), depth


def test_predictions_return_to_the_original_size_through_resize_flip_and_padding():
    samples = [_packed(37, 61, flip=False), _packed(53, 29, flip=True)]
    data = DataPreprocessor(size_divisor=32)(
        dict(inputs=[s[0]["inputs"] for s in samples], data_samples=[s[0]["data_samples"] for s in samples])
    )  # fmt: skip
    batch = torch.stack([s.gt_depth for s in data["data_samples"]])  # (B, H, W) input pixels
    head = DPTDepthHead(DPTDecoder([8], [16], 8, 16), max_depth=10.0)
    preds = head.predict_by_logits(batch[:, None], data["data_samples"])
    for pred, (_, depth) in zip(preds, samples):
        assert pred.pred_depth.shape == depth.shape
        err = (pred.pred_depth.numpy() - depth)[1:-1, 1:-1]  # borders see the clamp
        assert np.abs(err).max() < 0.05, np.abs(err).max()  # unflipped would be off by ~1 m
    small = head.predict_by_logits(batch[:, None], data["data_samples"], rescale=False)
    assert small[1].pred_depth.shape == tuple(small[1].img_shape)


def test_pixels_cropped_away_come_back_unknown():
    results = dict(
        img=np.zeros((10, 10, 3), np.uint8), homography_matrix=np.eye(3, dtype=np.float32)
    )
    matrix = KBCrop(4, 6)(results)["homography_matrix"]
    # the crop (4, 6) sits in a (6, 8) padded batch whose padding the network fills with 9
    sample = DataSample(
        metainfo=dict(
            img_shape=(4, 6), ori_shape=(10, 10), batch_input_shape=(6, 8),
            homography_matrix=matrix,
        )
    )  # fmt: skip
    outputs = torch.full((1, 1, 6, 8), 9.0)
    outputs[..., :4, :6] = 2.0
    head = DPTDepthHead(DPTDecoder([8], [16], 8, 16), max_depth=10.0)
    (out,) = head.predict_by_logits(outputs, [sample])
    depth = out.pred_depth
    assert depth.shape == (10, 10)
    # the kept part reads the prediction (never the padding); the rest is 0 = unknown, not
    # clamped up to min_depth
    assert (depth[6:, 2:8] == 2).all()
    assert depth[:6].abs().sum() == 0 and depth[:, :2].abs().sum() == 0
    assert depth[:, 8:].abs().sum() == 0


def test_relative_mode_losses_and_prediction_field():
    torch.manual_seed(0)
    feats = {"p2": torch.randn(2, 8, 8, 8)}
    head = DPTDepthHead(DPTDecoder([8], [4], 8, 16), mode="relative")
    samples = [DataSample(metainfo=dict(img_shape=(32, 32))) for _ in range(2)]
    for s in samples:
        s.gt_depth = torch.rand(32, 32) * 4 + 0.5
    samples[1].gt_depth[:, 16:] = 0  # invalid half
    losses = head.loss(feats, samples)
    assert set(losses) == {"loss_ssi", "loss_grad"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    out = head.predict(feats, samples)
    assert "pred_disparity" in out[0] and "pred_depth" not in out[0]
    with pytest.raises(ValueError, match="mode"):
        DPTDepthHead(DPTDecoder([8], [4], 8, 16), mode="absolute")


# -- learning --------------------------------------------------------------------------------
def _scenes(n: int, size: int = 64) -> tuple[torch.Tensor, list[DataSample]]:
    images, samples = [], []
    for i in range(n):
        scene = dataset_scene(seed=0, split="train", index=i, image_size=(size, size + 8))
        img = torch.from_numpy(scene.image[:size, :size].copy()).permute(2, 0, 1)
        images.append((img.float() - 128) / 64)
        sample = DataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        sample.gt_depth = torch.from_numpy(scene.depth[:size, :size].copy())
        samples.append(sample)
    return torch.stack(images), samples


def _abs_rel(preds) -> float:
    return float(
        np.mean(
            [depth_errors(p.pred_depth.numpy().ravel(), p.gt_depth.numpy().ravel())["abs_rel"]
             for p in preds]
        )
    )  # fmt: skip


def test_tiny_dpt_overfits_a_few_synthetic_images():
    """AbsRel on 4 memorised 48-px scenes falls from about 0.8 (5 m everywhere) below 0.1
    in 110 steps (about 12 s on one thread)."""
    torch.manual_seed(0)
    backbone = MODELS.build(
        dict(type="ViT", img_size=48, patch_size=8, embed_dim=32, depth=2, num_heads=2,
             out_indices=(0, 1), final_norm=False, embed_layer="conv")
    )  # fmt: skip
    decoder = DPTDecoder(backbone.out_channels, backbone.out_strides, 16, channels=16)
    model = TaskModel(backbone, DPTDepthHead(decoder, max_depth=10.0, head_channels=16))
    images, samples = _scenes(4, size=48)
    model.eval()
    before = _abs_rel(model(images, samples, mode="predict"))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    start = time.time()
    for _ in range(110):
        losses = model(images, samples, mode="loss")
        opt.zero_grad()
        losses["loss_depth"].backward()
        opt.step()
    model.eval()
    after = _abs_rel(model(images, samples, mode="predict"))
    assert before > 0.3 and after < 0.1, (before, after, time.time() - start)
