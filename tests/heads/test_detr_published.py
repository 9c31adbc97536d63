"""Published DETR weights (HF DetrForObjectDetection folders, the facebookresearch/detr
layout) in our TimmBackbone + DETRHead(classification='softmax'): equal to HF's outputs,
post-processing and loss; DETR's softmax loss learns; other sizes / class counts refused."""

from __future__ import annotations

import argparse
import math
import re

import pytest
import torch
from _helpers import TINY_DETR_ARGS, randomize, randomize_frozen_bn
from mmengine.structures import InstanceData

from visionfm.data import DataSample
from visionfm.engine.checkpoint import load_model_weights
from visionfm.heads.detr.convert_detr import detr_model_config
from visionfm.heads.detr.detr_config import detr_model
from visionfm.heads.detr.losses import softmax_classification_loss
from visionfm.heads.detr.matcher import HungarianMatcher
from visionfm.models.published import find_family
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, read_checkpoint, read_hf_config

transformers = pytest.importorskip("transformers")

SIZE = dict(TINY_DETR_ARGS, num_queries=12)


def _hf_model(folder, dilation: bool = False, num_labels: int = 5):
    """A random HF DETR (timm ResNet-18, tiny transformer, 5 classes) saved to ``folder`` with
    ``save_pretrained`` (the published folder layout), read back in float64."""
    config = transformers.DetrConfig(dilation=dilation, num_labels=num_labels, **SIZE)
    model = randomize_frozen_bn(randomize(transformers.DetrForObjectDetection(config)))
    model.save_pretrained(folder)
    return transformers.DetrForObjectDetection.from_pretrained(folder, dtype=torch.float64).eval()


def _ours(dilation: bool = False, **changes) -> dict:
    """Our config of the tiny HF model (``changes``: ``detr_model`` arguments)."""
    args = dict(
        num_classes=5,
        embed_dims=32,
        backbone="resnet18",
        dilation=dilation,
        backbone_channels=512,
        num_queries=12,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dims=64,
        decoder_ffn_dims=48,
        encoder_heads=4,
        decoder_heads=4,
    )
    return detr_model(**{**args, **changes})


def _image(h=97, w=133, seed=3):
    return torch.randn(
        1, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


def _assert_equal_outputs(model, hf, x, **hf_inputs):
    """Last-layer logits (with the no-object column) and boxes of ours and HF's."""
    with torch.no_grad():
        ref = hf(pixel_values=x, **hf_inputs)
        out = model.head(model.extract_feat(x), hf_inputs.get("samples"))
    logits, boxes = out["logits"][-1], out["boxes"][-1]
    assert logits.shape == ref.logits.shape  # (B, Q, 5 + 1)
    assert (logits - ref.logits).abs().max() < 1e-5
    assert (boxes - ref.pred_boxes).abs().max() < 1e-5
    assert logits.std() > 0.1 and boxes.std() > 0.01  # not a degenerate comparison
    return out, ref


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detr")
    return folder, _hf_model(folder)


# ---------------------------------------------------------------- equal to Hugging Face
@pytest.mark.parametrize("dilation", [False, True], ids=["R18", "R18-DC5"])
def test_equal_to_hugging_face(tmp_path, dilation):
    """A random HF DETR saved with save_pretrained loads through load_model_weights (the
    Inferencer's / test.py's path) and gives HF's logits and boxes in float64 at 97x133."""
    hf = _hf_model(tmp_path, dilation)
    model = MODELS.build(_ours(dilation)).double().eval()
    assert find_family(read_checkpoint(tmp_path), read_hf_config(tmp_path)).name == "detr"
    load_model_weights(model, str(tmp_path))
    _assert_equal_outputs(model, hf, _image())


def test_published_coco_rows_load_into_the_80_coco_categories(tmp_path):
    """A 91-label checkpoint (COCO category ids, as facebook/detr-resnet-50's id2label) into a
    model of COCO's 80 categories (CocoDataset's numbering): the categories' rows and no
    object's are taken, so our logits are HF's at those columns."""
    from visionfm.models.published_config import COCO_CATEGORY_NAMES

    hf = _hf_model(tmp_path, num_labels=91)
    model = MODELS.build(_ours(num_classes=80)).double().eval()
    load_model_weights(model, str(tmp_path))
    x = _image()
    with torch.no_grad():
        ref = hf(pixel_values=x)
        out = model.head(model.extract_feat(x), None)
    columns = [*sorted(COCO_CATEGORY_NAMES), 91]
    assert (out["logits"][-1] - ref.logits[..., columns]).abs().max() < 1e-5
    assert (out["boxes"][-1] - ref.pred_boxes).abs().max() < 1e-5


def test_a_state_dict_of_transformers_5_in_memory_names_converts(hf_folder):
    """hf.state_dict() in memory (transformers 5: o_proj, mlp.fc1, model.backbone.model.)
    converts as the file does (with the config.json: the heads are not in the tensors)."""
    from visionfm.models.published import convert_published
    from visionfm.weights import load_converted

    folder, hf = hf_folder
    state = hf.state_dict()
    assert any(".mlp.fc1." in k for k in state) and any(".o_proj." in k for k in state)
    model = MODELS.build(_ours()).double().eval()
    load_converted(model, convert_published(model, state, read_hf_config(folder)), strict=True)
    _assert_equal_outputs(model, hf, _image())


def test_padded_batch_equals_hugging_face_with_pixel_mask(hf_folder):
    """Two images of different sizes padded into one batch by our preprocessor: HF given the
    same pixels and its pixel mask gives the same outputs (masked attention, positions)."""
    folder, hf = hf_folder
    model = MODELS.build(_ours()).double().eval()
    load_model_weights(model, str(folder))
    gen = torch.Generator().manual_seed(0)
    shapes = [(97, 133), (70, 101)]
    samples = [DataSample(metainfo=dict(img_shape=s, ori_shape=s)) for s in shapes]
    images = [torch.randint(0, 255, (3, *s), generator=gen).byte() for s in shapes]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
    x = data["inputs"].double()
    mask = torch.zeros(2, *x.shape[-2:], dtype=torch.long)
    for i, (h, w) in enumerate(shapes):
        mask[i, :h, :w] = 1
    with torch.no_grad():
        ref = hf(pixel_values=x, pixel_mask=mask)
        out = model.head(model.extract_feat(x), data["data_samples"])
    assert (out["logits"][-1] - ref.logits).abs().max() < 1e-5
    assert (out["boxes"][-1] - ref.pred_boxes).abs().max() < 1e-5


def _original_layout(hf_state: dict) -> dict:
    """HF's file names -> facebookresearch/detr's (fused in_proj, linear1/2, norm1..3,
    multihead_attn, transformer.decoder.norm, class_embed, bbox_embed, query_embed,
    input_proj, backbone.0.body.*), written independently of the converter."""
    top = {"model.backbone.conv_encoder.model.": "backbone.0.body.",
           "model.input_projection.": "input_proj.", "model.query_position_embeddings.":
           "query_embed.", "model.decoder.layernorm.": "transformer.decoder.norm.",
           "class_labels_classifier.": "class_embed.", "bbox_predictor.": "bbox_embed."}  # fmt: skip
    parts = {
        "encoder": {"self_attn_layer_norm": "norm1", "final_layer_norm": "norm2", "fc1": "linear1",
                    "fc2": "linear2", "self_attn": "self_attn"},
        "decoder": {"self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm2",
                    "final_layer_norm": "norm3", "fc1": "linear1", "fc2": "linear2",
                    "self_attn": "self_attn", "encoder_attn": "multihead_attn"},
    }  # fmt: skip
    out, qkv = {}, {}
    for name, tensor in hf_state.items():
        old = next((o for o in top if name.startswith(o)), None)
        if old is not None:
            out[top[old] + name[len(old) :]] = tensor
            continue
        side, i, part, rest = re.match(
            r"model\.(\w+)coder\.layers\.(\d+)\.(\w+)\.(.*)", name
        ).groups()
        side += "coder"
        prefix = f"transformer.{side}.layers.{i}.{parts[side][part]}"
        if hit := re.match(r"([qkv])_proj\.(weight|bias)", rest):
            qkv.setdefault((prefix, hit[2]), {})[hit[1]] = tensor
        else:
            out[f"{prefix}.{rest}"] = tensor
    for (prefix, kind), t in qkv.items():
        out[f"{prefix}.in_proj_{kind}"] = torch.cat([t["q"], t["k"], t["v"]])
    return out


def _args(**changes) -> argparse.Namespace:
    """The original repository's training arguments (main.py) of the tiny model."""
    args = dict(backbone="resnet18", dilation=False, position_embedding="sine", enc_layers=1,
                dec_layers=2, dim_feedforward=48, hidden_dim=32, dropout=0.1, nheads=4,
                num_queries=12, eos_coef=0.1, set_cost_class=1, set_cost_bbox=5,
                set_cost_giou=2, bbox_loss_coef=5, giou_loss_coef=2, lr=1e-4)  # fmt: skip
    return argparse.Namespace(**{**args, **changes})


def test_original_checkpoint_equals_hugging_face(tmp_path, hf_folder):
    """The facebookresearch/detr layout of the same weights, torch-saved with its training
    args as detr-r50-e632da11.pth is, gives HF's outputs; its model_config (heads from args,
    the rest from tensor shapes) builds a model that loads it strictly."""
    from safetensors.torch import load_file

    folder, hf = hf_folder
    original = _original_layout(load_file(str(folder / "model.safetensors")))
    assert not any(k.startswith("model.") for k in original)
    path = tmp_path / "detr-tiny.pth"
    torch.save({"model": original, "args": _args(nheads=2)}, path)
    with pytest.raises(CheckpointError, match="num_heads=2 in head.encoder"):  # args' heads
        load_model_weights(MODELS.build(_ours()), str(path))
    torch.save({"model": original, "args": _args()}, path)
    model = MODELS.build(_ours()).double().eval()
    load_model_weights(model, str(path))
    _assert_equal_outputs(model, hf, _image(75, 101))
    # without args: the repository's default 8 heads, resnet18 recognised from the blocks
    cfg = detr_model_config(read_checkpoint({"model": original}), None)
    assert cfg["backbone"]["model_name"] == "resnet18"
    assert cfg["head"]["encoder"]["layer"]["self_attn"]["num_heads"] == 8
    cfg = detr_model_config(read_checkpoint(path), None)
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(path))
    _assert_equal_outputs(model, hf, _image(75, 101))


def test_model_config_of_the_folder_builds_a_model_that_loads_strictly(hf_folder):
    folder, hf = hf_folder
    cfg = detr_model_config(read_checkpoint(folder), read_hf_config(folder))
    assert cfg["head"]["classification"] == "softmax"
    assert cfg["head"]["num_classes"] == 5 and cfg["backbone"]["frozen_bn"]
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(folder))
    _assert_equal_outputs(model, hf, _image())


def test_base_config_is_the_published_architecture():
    """configs/_base_/models/detr_r50.py builds the model detr_model() describes (DETR-R50:
    the same modules, sizes, dropouts, matcher and loss settings)."""
    from pathlib import Path

    from mmengine.config import Config

    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / "configs/_base_/models/detr_r50.py"))
    with torch.device("meta"):
        ours, reference = MODELS.build(cfg.model), MODELS.build(detr_model())
    assert repr(ours) == repr(reference)
    # as HF DetrForObjectDetection(DetrConfig(num_labels=91)): frozen batch norms are buffers
    assert sum(p.numel() for p in ours.parameters()) == 41_524_768


def test_coco_config_takes_a_published_size_folder(tmp_path):
    """A DETR-R50 of the published size in facebook/detr-resnet-50's folder format (the
    transformers 4 config.json: backbone / use_timm_backbone, no backbone_config; 91 COCO ids)
    loads strictly into configs/detr/detr_r50_coco.py's model (80 categories) and gives HF's
    outputs at those categories' columns."""
    import json
    from pathlib import Path

    from mmengine.config import Config

    from visionfm.models.published_config import COCO_CATEGORY_NAMES

    torch.manual_seed(0)
    config = transformers.DetrConfig(use_pretrained_backbone=False, num_labels=91)
    transformers.DetrForObjectDetection(config).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    written.pop("backbone_config")
    written.update(backbone="resnet50", use_timm_backbone=True, dilation=False)
    (tmp_path / "config.json").write_text(json.dumps(written))
    hf = transformers.DetrForObjectDetection.from_pretrained(tmp_path).eval()
    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / "configs/detr/detr_r50_coco.py"))
    model = MODELS.build(cfg.model).eval()
    load_model_weights(model, str(tmp_path))
    x = torch.randn(1, 3, 96, 131, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(pixel_values=x)
        out = model.head(model.extract_feat(x), None)
    columns = [*sorted(COCO_CATEGORY_NAMES), 91]
    assert (out["logits"][-1] - ref.logits[..., columns]).abs().max() < 1e-4  # float32
    assert (out["boxes"][-1] - ref.pred_boxes).abs().max() < 1e-5


def test_inferencer_on_the_folder_equals_hugging_face(tmp_path):
    """Inferencer(folder) on an image file (the folder with its preprocessor_config.json, as
    published): HF's processor -> model -> post_process_object_detection at the original size
    gives the same detections (float32 both; our boxes are clipped to the image, HF's not)."""
    import cv2
    import numpy as np
    from PIL import Image

    from visionfm.apis import Inferencer
    from visionfm.ops.boxes import clip_boxes

    _hf_model(tmp_path)
    processor = transformers.DetrImageProcessor(size=dict(shortest_edge=96, longest_edge=160))
    processor.save_pretrained(tmp_path)
    hf = transformers.DetrForObjectDetection.from_pretrained(tmp_path, dtype=torch.float32).eval()
    rng = np.random.default_rng(0)
    size = (83, 131)
    pixels = cv2.resize((rng.random((7, 11, 3)) * 255).astype(np.uint8), size[::-1])
    cv2.imwrite(str(tmp_path / "photo.png"), pixels)
    with torch.no_grad():
        pil = Image.open(tmp_path / "photo.png").convert("RGB")
        outputs = hf(**processor(images=pil, return_tensors="pt"))
    ref = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=[size])[0]
    order = ref["scores"].argsort(descending=True)
    inferencer = Inferencer(str(tmp_path), device="cpu", score_thr=0.0)  # every query
    pred = inferencer(str(tmp_path / "photo.png")).pred_instances
    assert len(pred.scores) == SIZE["num_queries"]
    assert torch.equal(pred.labels, ref["labels"][order])
    assert (pred.scores - ref["scores"][order]).abs().max() < 1e-5
    assert (pred.bboxes - clip_boxes(ref["boxes"][order], size)).abs().max() < 1e-3


@pytest.mark.parametrize(
    "name, variant",
    [("detr_r50", {}), ("detr_r101", dict(backbone="resnet101")), ("detr_r50-dc5", dict(dilation=True))],
)  # fmt: skip
def test_coco_configs_are_the_published_variants(name, variant):
    """configs/detr/<name>_coco.py builds detr_model(num_classes=80, ...) of that variant."""
    from pathlib import Path

    from mmengine.config import Config

    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(str(root / f"configs/detr/{name}_coco.py"))
    with torch.device("meta"):
        ours = MODELS.build(cfg.model)
        reference = MODELS.build(detr_model(num_classes=80, **variant))
    assert repr(ours) == repr(reference)
    assert ours.backbone.out_strides == ({"p4": 16} if variant.get("dilation") else {"p5": 32})


# ---------------------------------------------------------------- post-processing, loss
def test_postprocess_equals_hugging_face(hf_folder):
    """Scores, labels and boxes (xyxy pixels of the target size) above a threshold, as HF's
    DetrImageProcessor.post_process_object_detection gives them (ours sorted by score)."""
    folder, hf = hf_folder
    model = MODELS.build(_ours()).double().eval()
    load_model_weights(model, str(folder))
    out, ref = _assert_equal_outputs(model, hf, _image())
    threshold = ref.logits.softmax(-1)[0, :, :-1].max(-1).values.median().item()
    model.head.test_cfg["score_thr"] = threshold
    size = (97, 133)
    expected = transformers.DetrImageProcessor().post_process_object_detection(
        ref, threshold=threshold, target_sizes=[size]
    )[0]
    got = model.head.postprocess(
        out["logits"][-1][0], out["boxes"][-1][0], dict(img_shape=size), rescale=False
    )
    order = expected["scores"].argsort(descending=True)
    assert 0 < len(got) < SIZE["num_queries"] and len(got) == len(order)
    torch.testing.assert_close(got.scores, expected["scores"][order], rtol=0, atol=1e-6)
    torch.testing.assert_close(got.labels, expected["labels"][order])
    torch.testing.assert_close(got.bboxes, expected["boxes"][order].double(), rtol=0, atol=1e-4)


def test_loss_equals_hugging_face_detr_loss(hf_folder):
    """Our last-layer loss_cls / loss_bbox / loss_giou (weights 1 / 5 / 2) equal HF's DETR
    loss_ce / loss_bbox / loss_giou (Hungarian matching, eos_coef 0.1) on the same outputs."""
    folder, hf = hf_folder
    model = MODELS.build(_ours()).double().eval()
    load_model_weights(model, str(folder))
    x = _image()
    targets = [
        dict(
            labels=torch.tensor([1, 4, 1]),
            boxes=torch.tensor(
                [[0.3, 0.4, 0.2, 0.3], [0.6, 0.5, 0.5, 0.4], [0.8, 0.2, 0.1, 0.1]],
                dtype=torch.float64,
            ),
        )
    ]
    # HF's loss keeps a float32 class-weight buffer: it runs on float32 copies of its outputs
    labels = [dict(class_labels=t["labels"], boxes=t["boxes"].float()) for t in targets]
    with torch.no_grad():
        out = hf(pixel_values=x)
        _, ref, _ = hf.loss_function(
            out.logits.float(), labels, "cpu", out.pred_boxes.float(), hf.config, None, None
        )
        losses = model.head.loss_by_outputs(model.head(model.extract_feat(x), None), targets)
    for ours, theirs, weight in (("loss_cls", "loss_ce", 1), ("loss_bbox", "loss_bbox", 5),
                                 ("loss_giou", "loss_giou", 2)):  # fmt: skip
        torch.testing.assert_close(losses[ours].float() / weight, ref[theirs], rtol=1e-5, atol=0)
    assert "d0.loss_cls" in losses  # and the auxiliary loss of the first decoder layer


def test_softmax_classification_loss_by_hand():
    """Two images, 3 queries, 2 classes + no object: a weighted mean of cross-entropies."""
    logits = torch.tensor(
        [[[2.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0]],
         [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 2.0, 0.0]]]
    )  # fmt: skip
    targets = [dict(labels=torch.tensor([1, 0])), dict(labels=torch.tensor([], dtype=torch.long))]
    indices = [(torch.tensor([0, 2]), torch.tensor([1, 0])), (torch.tensor([]).long(),) * 2]
    loss = softmax_classification_loss(logits, targets, indices, no_object_weight=0.1)

    def ce(row, target):
        return math.log(sum(math.exp(v) for v in row)) - row[target]

    rows = logits.tolist()
    # image 0: query 0 -> target 1 (class 0), query 2 -> target 0 (class 1), query 1 -> no
    # object; image 1: no targets
    terms = [(1.0, ce(rows[0][0], 0)), (0.1, ce(rows[0][1], 2)), (1.0, ce(rows[0][2], 1))]
    terms += [(0.1, ce(rows[1][q], 2)) for q in range(3)]
    expected = sum(w * c for w, c in terms) / sum(w for w, _ in terms)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_softmax_matching_cost_is_minus_the_target_probability():
    matcher = HungarianMatcher(
        cost_class=1.0, cost_bbox=0.0, cost_giou=1e-9, classification="softmax"
    )
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])  # (Q, C + 1)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 2)
    cost = matcher.cost_matrix(logits, boxes, torch.tensor([1, 0]), boxes)
    prob = logits.softmax(-1)
    torch.testing.assert_close(cost, -prob[:, [1, 0]] - 1e-9, rtol=0, atol=1e-6)
    pred, tgt = matcher(
        logits[None], boxes[None], [dict(labels=torch.tensor([1, 0]), boxes=boxes)]
    )[0]
    assert pred.tolist() == [0, 1] and tgt.tolist() == [1, 0]


def _sample(boxes, labels, shape=(64, 64)):
    sample = DataSample(metainfo=dict(img_shape=shape, ori_shape=shape))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor(labels)
    )
    return sample


def test_softmax_detr_learns_two_images():
    """A tiny softmax DETR (timm test_resnet, DC5: 4x4 tokens on 64 px) overfits two images:
    the loss falls by more than half and each ground-truth box is found with its class."""
    from _tiny_models import assert_learns_boxes

    torch.manual_seed(0)
    cfg = detr_model(num_classes=3, embed_dims=32, backbone="test_resnet", backbone_channels=96,
                     dilation=True, num_queries=8, encoder_layers=1, decoder_layers=2, encoder_ffn_dims=64,
                     decoder_ffn_dims=64, encoder_heads=4, decoder_heads=4, dropout=0.0,
                     attention_dropout=0.0, activation_dropout=0.0)  # fmt: skip
    cfg["backbone"]["frozen_stages"] = -1
    model = MODELS.build(cfg)
    samples = [
        _sample([[4, 4, 30, 28], [36, 30, 60, 60]], [0, 2]),
        _sample([[20, 8, 58, 40]], [1]),
    ]
    gen = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 255, (3, 64, 64), generator=gen).byte() for _ in samples]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
    assert_learns_boxes(model, data, steps=100, milestone=90)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(num_queries=10), r"head\.num_queries=12"),
        (dict(embed_dims=64), r"head\.embed_dims=32"),
        (dict(decoder_layers=3), r"head\.decoder\.num_layers=2"),
        (dict(decoder_heads=2), r"num_heads=4 in head\.decoder"),
        (dict(backbone="resnet34"), r"backbone\.model_name='resnet18'"),
        (dict(num_classes=3), r"5 classes in the checkpoint, 3 in the model.*num_classes"),
    ],
)
def test_a_checkpoint_of_another_architecture_is_refused_naming_the_argument(
    hf_folder, changes, message
):
    folder, _ = hf_folder
    with pytest.raises(CheckpointError, match=message):
        load_model_weights(MODELS.build(_ours(**changes)), str(folder))


def test_fine_tuning_on_other_classes_reinitialises_only_the_class_head(hf_folder):
    """load_from (training) a published folder into a 3-class model: every tensor but the
    class head's is the checkpoint's; the class head keeps its fresh initialisation."""
    from visionfm.engine.checkpoint import load_checkpoint_to_model, load_from_local_weights_only

    folder, hf = hf_folder
    model = MODELS.build(_ours(num_classes=3))
    fresh = model.head.cls_heads[0].weight.detach().clone()
    load_checkpoint_to_model(model, load_from_local_weights_only(str(folder)))
    assert model.head.cls_heads[0].weight.shape == (4, 32)  # 3 classes + no object
    torch.testing.assert_close(model.head.cls_heads[0].weight, fresh)
    theirs = hf.model.query_position_embeddings.weight.float()
    torch.testing.assert_close(model.head.queries.content.weight, theirs)


@pytest.mark.parametrize("kind", ["ConditionalDetr", "DeformableDetr"])
def test_relatives_are_not_taken_for_detr(tmp_path, kind):
    """Conditional / Deformable DETR files share many of DETR's names: neither the layout nor
    (with its config.json) the folder is read as DETR."""
    from visionfm.heads.detr.convert_detr import is_detr_checkpoint

    config = getattr(transformers, f"{kind}Config")(
        use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, d_model=32,
        encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=12,
    )  # fmt: skip
    getattr(transformers, f"{kind}ForObjectDetection")(config).save_pretrained(tmp_path)
    state = read_checkpoint(tmp_path)
    assert not is_detr_checkpoint(state) and not is_detr_checkpoint(state, read_hf_config(tmp_path))


def test_a_sigmoid_head_is_refused_naming_the_softmax_arguments(hf_folder):
    folder, _ = hf_folder
    cfg = _ours()
    cfg["head"].update(classification="sigmoid")
    cfg["head"]["matcher"].update(classification="sigmoid")
    with pytest.raises(CheckpointError, match=r"head\.classification='softmax'"):
        load_model_weights(MODELS.build(cfg), str(folder))


def test_inconsistent_softmax_options_fail_at_construction():
    cfg = _ours()
    cfg["head"]["matcher"].update(classification="sigmoid")
    with pytest.raises(ValueError, match="classification='softmax'"):
        MODELS.build(cfg)
    cfg = _ours()
    cfg["head"]["classification"] = "softmx"
    with pytest.raises(ValueError, match="'sigmoid' or 'softmax'"):
        MODELS.build(cfg)
