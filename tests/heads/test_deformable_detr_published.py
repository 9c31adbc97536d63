"""Published Deformable DETR weights (HF DeformableDetrForObjectDetection: plain, box
refinement, two-stage; the fundamentalvision layout) give HF's outputs in our TaskModel
(timm ResNet + DETRHead), float64, 75x117; architecture from config.json; bad input."""

from __future__ import annotations

import argparse

import pytest
import torch
from _helpers import TINY_DEFORMABLE_DETR_ARGS, randomize, randomize_frozen_bn

from visionfm.engine.checkpoint import (
    load_checkpoint_to_model,
    load_from_local_weights_only,
    load_model_weights,
)
from visionfm.heads.detr.convert_deformable import deformable_detr_model_config
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, read_checkpoint, read_hf_config

transformers = pytest.importorskip("transformers")

VARIANTS = {
    "plain": dict(with_box_refine=False, two_stage=False),
    "box_refine": dict(with_box_refine=True, two_stage=False),
    "two_stage": dict(with_box_refine=True, two_stage=True),
}
SIZE = (75, 411)  # odd, not square; level 0 is 10x52: its outer columns are border tokens


def _hf_model(folder, variant: str, num_labels: int = 5, **config):
    """A random tiny HF Deformable DETR (timm resnet18, d_model 32) saved to ``folder`` and
    read back in float64 (the file keeps one of each tied copy)."""
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection

    config = DeformableDetrConfig(
        **TINY_DEFORMABLE_DETR_ARGS,
        num_labels=num_labels,
        **VARIANTS[variant],
        **config,
    )
    model = randomize_frozen_bn(randomize(DeformableDetrForObjectDetection(config)))
    with torch.no_grad():
        if config.two_stage:  # a selection that only the published rules reproduce
            # border tokens (zeroed features) score high on class 0: 4 of the 9 proposals are
            # the full-image box; class 0 scores low, so the best class would pick others
            code = model.model.enc_output_norm(model.model.enc_output.bias)
            model.class_embed[-1].weight[0] += 0.14 * code / code.norm()
            model.class_embed[-1].bias[0] -= 2.0
    model.save_pretrained(folder)
    return DeformableDetrForObjectDetection.from_pretrained(folder, dtype=torch.float64).eval()


def _ours(folder) -> torch.nn.Module:
    """Our model built from the folder's config.json (``model_config``), float64."""
    cfg = deformable_detr_model_config(read_checkpoint(folder), read_hf_config(folder))
    return MODELS.build(cfg).double().eval()


def _image() -> torch.Tensor:
    return torch.randn(1, 3, *SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def _compare(model, hf) -> dict[str, float]:
    """Max abs differences of the last layer's logits and boxes (and the two-stage
    proposals' boxes) between ours and HF on one image."""
    x = _image()
    with torch.no_grad():
        ref = hf(pixel_values=x)
        out = model.head(model.extract_feat(x), None)
    diffs = {
        "logits": (out["logits"][-1] - ref.logits).abs().max().item(),
        "boxes": (out["boxes"][-1] - ref.pred_boxes).abs().max().item(),
    }
    if "enc_boxes" in out:  # the top-k proposals, HF's initial references
        diffs["proposals"] = (out["enc_boxes"] - ref.init_reference_points).abs().max().item()
        assert (ref.init_reference_points == 1).all(-1).sum() == 4  # border tokens chosen
    assert ref.logits.std() > 0.01  # not a degenerate comparison
    return diffs


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_equal_to_hugging_face(tmp_path, variant):
    hf = _hf_model(tmp_path, variant)
    model = _ours(tmp_path)
    load_model_weights(model, str(tmp_path))  # the Inferencer's / test.py's path, strict
    diffs = _compare(model, hf)
    assert max(diffs.values()) <= 1e-5, diffs


@pytest.mark.parametrize("variant", ["box_refine", "two_stage"])
def test_padded_batch_equals_hugging_face(tmp_path, variant):
    """Two images, the second padded (bottom / right) to the first's size: HF with its
    pixel_mask and ours with img_shape give the same outputs for both."""
    from visionfm.data import DataSample

    hf = _hf_model(tmp_path, variant)
    model = _ours(tmp_path)
    load_model_weights(model, str(tmp_path))
    x = torch.randn(2, 3, *SIZE, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x[1, :, 50:], x[1, :, :, 300:] = 0, 0
    mask = torch.ones(2, *SIZE, dtype=torch.long)
    mask[1, 50:], mask[1, :, 300:] = 0, 0
    samples = [DataSample(metainfo=dict(img_shape=s)) for s in (SIZE, (50, 300))]
    with torch.no_grad():
        ref = hf(pixel_values=x, pixel_mask=mask)
        out = model.head(model.extract_feat(x), samples)
    assert (out["logits"][-1] - ref.logits).abs().max() <= 1e-5
    assert (out["boxes"][-1] - ref.pred_boxes).abs().max() <= 1e-5


def _original_state(hf) -> dict[str, torch.Tensor]:
    """The HF model's weights under the fundamentalvision/Deformable-DETR names (the inverse
    of HF's conversion script): fused decoder self-attention, per-layer head copies."""
    sd, out = hf.state_dict(), {}
    layers = hf.config.decoder_layers
    for name, t in sd.items():
        new = name
        for old, repl in [
            ("model.backbone.conv_encoder.model.", "backbone.0.body."),
            ("model.backbone.model.", "backbone.0.body."),
            ("model.input_proj.", "input_proj."),
            ("model.query_position_embeddings.", "query_embed."),
            ("model.decoder.", "transformer.decoder."),
            ("model.encoder.", "transformer.encoder."),
            ("model.", "transformer."),
        ]:
            if new.startswith(old):
                new = repl + new[len(old) :]
                break
        for old, repl in [
            ("encoder_attn_layer_norm.", "norm1."),
            ("encoder_attn.", "cross_attn."),
            ("mlp.fc1.", "linear1."),
            ("mlp.fc2.", "linear2."),
            ("fc1.", "linear1."),
            ("fc2.", "linear2."),
            ("final_layer_norm.", "norm3." if ".decoder." in new else "norm2."),
            ("self_attn_layer_norm.", "norm2." if ".decoder." in new else "norm1."),
            ("self_attn.o_proj.", "self_attn.out_proj."),
        ]:
            new = new.replace(old, repl)
        out[new] = t
    for i in range(layers):  # the decoder's self-attention: nn.MultiheadAttention
        p = f"transformer.decoder.layers.{i}.self_attn."
        for kind in ("weight", "bias"):
            qkv = [out.pop(f"{p}{x}_proj.{kind}") for x in "qkv"]
            out[f"{p}in_proj_{kind}"] = torch.cat(qkv)
    for kind in ("class_embed", "bbox_embed"):  # the original shares / clones per layer
        for k in [k for k in out if k.startswith(f"{kind}.0.")]:
            for i in range(1, layers):
                out.setdefault(k.replace(f"{kind}.0.", f"{kind}.{i}.", 1), out[k])
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_original_checkpoint_equals_hugging_face(tmp_path, variant):
    """The HF weights renamed into the original repo's layout, torch-saved with its
    ``args``: the architecture comes from the tensors + args, the outputs are HF's."""
    hf = _hf_model(tmp_path / "hf", variant)
    sd = _original_state(hf)
    args = argparse.Namespace(nheads=4, enc_n_points=2, dec_n_points=3, dilation=False,
                              backbone="resnet18", num_queries=9, **VARIANTS[variant])  # fmt: skip
    path = tmp_path / "r50_deformable_detr-checkpoint.pth"
    torch.save({"model": sd, "args": args, "epoch": 49}, path)
    cfg = deformable_detr_model_config(read_checkpoint(path), None)  # args in the file
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(path))
    diffs = _compare(model, hf)
    assert max(diffs.values()) <= 1e-5, diffs


@pytest.mark.parametrize("variant", ["box_refine", "two_stage"])
def test_coco_ids_load_into_coco_categories(tmp_path, variant):
    """91 rows by COCO category id into a model of COCO's 80 categories: the logits are HF's
    at those ids (the two-stage top-k still ranks by the "object" row 0)."""
    from visionfm.models.published_config import COCO_CATEGORY_NAMES

    hf = _hf_model(tmp_path, variant, num_labels=91)
    cfg = deformable_detr_model_config(read_checkpoint(tmp_path), read_hf_config(tmp_path))
    cfg["head"]["num_classes"] = 80
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(tmp_path))
    x = _image()
    with torch.no_grad():
        ref = hf(pixel_values=x)
        out = model.head(model.extract_feat(x), None)
    ids = sorted(COCO_CATEGORY_NAMES)
    assert (out["logits"][-1] - ref.logits[..., ids]).abs().max() <= 1e-5
    assert (out["boxes"][-1] - ref.pred_boxes).abs().max() <= 1e-5


def test_postprocess_equals_hugging_face(tmp_path):
    """predict() (sigmoid, top-100 over queries x classes, boxes in the original image's
    pixels, clipped to it) equals HF's post_process_object_detection on the same outputs."""
    from mmengine.structures import InstanceData  # noqa: F401  (predict fills it)
    from transformers import DeformableDetrImageProcessor

    from visionfm.data import DataSample

    hf = _hf_model(tmp_path, "box_refine")
    model = _ours(tmp_path)
    load_model_weights(model, str(tmp_path))
    x = _image()
    h, w = SIZE
    sample = DataSample(metainfo=dict(img_shape=(h, w), ori_shape=(2 * h, 3 * w),
                                      scale_factor=(1 / 3, 1 / 2)))  # fmt: skip
    with torch.no_grad():
        ref = hf(pixel_values=x)
        pred = model.head.predict(model.extract_feat(x), [sample])[0].pred_instances
    processor = DeformableDetrImageProcessor()
    target = torch.tensor([[2 * h, 3 * w]])
    res = processor.post_process_object_detection(ref, threshold=-1.0, target_sizes=target)[0]
    assert len(pred.scores) == len(res["scores"]) == 9 * 5  # every query x class (< 100)
    assert torch.allclose(pred.scores, res["scores"], atol=1e-10)
    assert torch.equal(pred.labels, res["labels"])
    # ours are clipped to the image, HF's are not
    ref_boxes = res["boxes"].clamp(min=0).minimum(torch.tensor([3 * w, 2 * h] * 2))
    assert (pred.bboxes - ref_boxes).abs().max() <= 1e-6


def test_model_config_builds_a_model_that_loads_strictly(tmp_path):
    _hf_model(tmp_path, "two_stage")
    cfg = deformable_detr_model_config(read_checkpoint(tmp_path), read_hf_config(tmp_path))
    head = cfg["head"]
    assert (head["two_stage"], head["with_box_refine"], head["num_queries"]) == (True, True, 9)
    assert head["select_invalid_proposals"] and head["class_agnostic_proposals"]
    load_model_weights(MODELS.build(cfg), str(tmp_path))  # strict: raises on any gap


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("variant", "into", "change", "message"),
    [
        ("two_stage", "plain", {}, "two_stage=True"),
        ("box_refine", "plain", {}, "with_box_refine=True"),
        ("plain", "box_refine", {}, "with_box_refine=False"),
        ("plain", "plain", {"num_points": 4}, "num_points=3"),
        ("plain", "plain", {"num_heads": 2}, "num_heads=4"),
        ("plain", "plain", {"input_bias": False}, "input_bias=True"),
        ("two_stage", "two_stage", {"class_agnostic_proposals": False}, "class_agnostic"),
    ],
)
def test_another_variant_is_refused_naming_the_argument(tmp_path, variant, into, change, message):
    _hf_model(tmp_path / variant, variant)
    _hf_model(tmp_path / into, into)
    cfg = deformable_detr_model_config(
        read_checkpoint(tmp_path / into), read_hf_config(tmp_path / into)
    )
    if "num_points" in change or "num_heads" in change:
        cfg["head"]["decoder"]["layer"]["cross_attn"].update(change)
        cfg["head"]["decoder"]["layer"]["self_attn"].update(
            {k: v for k, v in change.items() if k == "num_heads"}
        )
    else:
        cfg["head"].update(change)
    with pytest.raises(CheckpointError, match=message):
        load_model_weights(MODELS.build(cfg), str(tmp_path / variant))


def test_original_checkpoint_of_another_variant_is_refused(tmp_path):
    """Without config.json the tensors speak: two-stage weights into a plain model."""
    sd = _original_state(_hf_model(tmp_path / "hf", "two_stage"))
    torch.save({"model": sd}, tmp_path / "ckpt.pth")
    plain = _hf_model(tmp_path / "plain", "plain")
    cfg = deformable_detr_model_config(_original_state(plain), None)
    with pytest.raises(CheckpointError, match="two_stage=True"):
        load_model_weights(MODELS.build(cfg), str(tmp_path / "ckpt.pth"))


def test_other_width_or_depth_is_refused(tmp_path):
    _hf_model(tmp_path, "plain")
    cfg = deformable_detr_model_config(read_checkpoint(tmp_path), read_hf_config(tmp_path))
    cfg["head"]["decoder"]["num_layers"] = 3
    with pytest.raises(CheckpointError):
        load_model_weights(MODELS.build(cfg), str(tmp_path))


def test_class_count_mismatch_is_refused_with_the_fix(tmp_path):
    _hf_model(tmp_path, "plain", num_labels=7)
    cfg = deformable_detr_model_config(read_checkpoint(tmp_path), read_hf_config(tmp_path))
    cfg["head"]["num_classes"] = 5
    with pytest.raises(CheckpointError, match="7 classes in the checkpoint, 5 in the model.*num_c"):
        load_model_weights(MODELS.build(cfg), str(tmp_path))


def test_load_from_fine_tunes_on_other_classes(tmp_path):
    """load_from (training): every weight but the class layers, which are re-initialised."""
    hf = _hf_model(tmp_path, "two_stage", num_labels=7)
    cfg = deformable_detr_model_config(read_checkpoint(tmp_path), read_hf_config(tmp_path))
    cfg["head"]["num_classes"] = 3
    model = MODELS.build(cfg)
    load_checkpoint_to_model(model, load_from_local_weights_only(str(tmp_path)))
    layer = hf.model.decoder.layers[1].encoder_attn.sampling_offsets.weight
    assert torch.equal(model.head.decoder.layers[1].cross_attn.attn.sampling_offsets.weight,
                       layer.float())  # fmt: skip
    assert model.head.cls_heads[0].weight.shape == (3, 32)


@pytest.mark.parametrize(
    ("config", "variant"),
    [("coco", "plain"), ("refine_coco", "box_refine"), ("two-stage_coco", "two_stage")],
)
def test_coco_configs_are_the_published_architectures(config, variant):
    """The shipped configs build what the converter builds for the published checkpoints
    (with COCO's 80 categories)."""
    from pathlib import Path

    from mmengine.config import Config

    from visionfm.heads.detr.deformable_detr_config import deformable_detr_model

    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / f"configs/deformable_detr/deformable-detr_r50_{config}.py"))
    assert cfg.model.to_dict() == deformable_detr_model(num_classes=80, **VARIANTS[variant])


def test_published_config_of_the_folder_runs(tmp_path):
    """The whole config of a published folder (tools/convert_checkpoint.py, Inferencer on a
    folder): the family's model with the processor's preprocessing; it loads and predicts."""
    from transformers import DeformableDetrImageProcessor

    from visionfm.data import DataSample
    from visionfm.models.published_config import published_config

    _hf_model(tmp_path, "two_stage")
    DeformableDetrImageProcessor().save_pretrained(tmp_path)
    cfg, family = published_config(tmp_path)
    assert family.name == "deformable_detr"
    model = MODELS.build(cfg["model"]).eval()
    load_model_weights(model, str(tmp_path))
    image = torch.randint(0, 255, (3, 90, 120), dtype=torch.uint8)
    sample = DataSample(metainfo=dict(img_shape=(90, 120), ori_shape=(90, 120)))
    with torch.no_grad():
        out = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    assert len(out.pred_instances.scores) == 9 * 5


def test_single_scale_is_refused(tmp_path):
    _hf_model(tmp_path, "plain", num_feature_levels=1)
    cfg = deformable_detr_model_config(read_checkpoint(tmp_path), read_hf_config(tmp_path))
    with pytest.raises(CheckpointError, match="single-scale"):
        load_model_weights(MODELS.build(cfg), str(tmp_path))


def test_two_stage_encoder_loss_is_class_agnostic(tmp_path):
    """With class_agnostic_proposals the enc_ losses see every target as class 0 (the
    original's training): another label leaves them unchanged, the decoder's loss not."""
    _hf_model(tmp_path, "two_stage")
    cfg = deformable_detr_model_config(read_checkpoint(tmp_path), read_hf_config(tmp_path))
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(tmp_path))
    with torch.no_grad():
        out = model.head(model.extract_feat(_image()), None)
    boxes = torch.tensor([[0.4, 0.5, 0.2, 0.3], [0.7, 0.3, 0.1, 0.2]], dtype=torch.float64)
    losses = [
        model.head.loss_by_outputs(out, [dict(labels=torch.tensor(labels), boxes=boxes)])
        for labels in ([3, 1], [2, 4])
    ]
    for key in ("enc_loss_cls", "enc_loss_bbox", "enc_loss_giou"):
        assert torch.equal(losses[0][key], losses[1][key])
    assert not torch.equal(losses[0]["loss_cls"], losses[1]["loss_cls"])
