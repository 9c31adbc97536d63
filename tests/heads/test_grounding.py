"""Grounding DINO: equal outputs to Hugging Face's model with the same weights, training on
prompts (token targets, empty ground truth), chunked class prompts, free text, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from _helpers import randomize, write_tiny_bert
from _tiny_models import assert_learns_boxes, tiny_grounding_head, tiny_vit_grounding
from mmengine.structures import InstanceData

from visionfm.data import DataSample
from visionfm.engine.checkpoint import load_model_weights
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("bert"))


def _sample(text, phrases=None, spans=None, boxes=(), labels=(), shape=(64, 64)):
    sample = DataSample(metainfo=dict(img_shape=shape, ori_shape=shape))
    sample.text = text
    if phrases is not None:
        sample.phrases, sample.phrase_spans = phrases, spans
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long),
    )
    return sample


def _batch(model, samples, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 255, (3, *s.img_shape), generator=gen).byte() for s in samples]
    return model.data_preprocessor(dict(inputs=images, data_samples=samples), False)


# ---------------------------------------------------------------- equal to Hugging Face
def _hf_model(folder, bert, mm: bool):
    from transformers import BertConfig, SwinConfig

    cls_name = "MMGroundingDino" if mm else "GroundingDino"
    config_cls = getattr(transformers, f"{cls_name}Config")
    model_cls = getattr(transformers, f"{cls_name}ForObjectDetection")
    config = config_cls(
        backbone_config=SwinConfig(
            embed_dim=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 2, 4],
            window_size=4,
            out_indices=[2, 3, 4],
        ),
        text_config=BertConfig.from_pretrained(bert).to_dict(),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        num_queries=12,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
    )
    randomize(model_cls(config)).save_pretrained(folder)
    # the tokenizer beside it, as in the published folders (grounding-dino-tiny)
    transformers.AutoTokenizer.from_pretrained(bert).save_pretrained(folder)
    # read back: randomize fills the decoder's copy of bbox_embed and the head's apart, but
    # the file keeps one (they are tied), as every published checkpoint does
    return model_cls.from_pretrained(folder, dtype=torch.float64).eval()


def _our_config(bert, mm: bool) -> dict:
    c = 32
    cfg = tiny_vit_grounding(bert, embed_dims=c)
    cfg["backbone"] = dict(
        type="SwinTransformer",
        embed_dim=32,
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 2, 4),
        window_size=4,
        out_indices=(1, 2, 3),
        always_partition=True,
    )
    cfg["neck"] = None
    head = tiny_grounding_head(
        dict(p3=64, p4=128, p5=256),
        dict(p3=8, p4=16, p5=32),
        embed_dims=c,
        num_queries=12,
        max_phrases=256,
        num_dn_queries=None,
        input_bias=True,
        select_invalid_proposals=True,
        contrastive_scaled=mm,
        contrastive_bias=mm,
    )
    # HF's fusion: half the encoder FFN width, half the heads; text layer likewise
    layer = head["encoder"]["layer"]
    layer["fusion"].update(num_heads=2, attn_dims=32)
    layer["text_layer"]["self_attn"].update(num_heads=2)
    layer["text_layer"]["ffn"].update(feedforward_dims=32)
    for part in (layer["image_layer"]["ffn"], head["decoder"]["layer"]["ffn"]):
        part.update(feedforward_dims=64)
    cfg["head"] = head
    return cfg


def _outputs(model, hf):
    """Ours and HF's last-layer logits (over the prompt's tokens) and boxes on one random
    float64 image of 75x411 px (the outer columns of level 0 are border tokens: centres
    within 1 %) with a three-name prompt."""
    caption = "red circle . the small cat . dog ."
    x = torch.randn(1, 3, 75, 411, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    tokens = model.text_encoder.tokenize([caption])
    with torch.no_grad():
        ref = hf(
            pixel_values=x,
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            token_type_ids=tokens["token_type_ids"],
        )
        out = model.head(model.extract_feat(x), None, text=model.text_encoder([caption]))
    num_tokens = tokens["input_ids"].shape[1]
    return out["logits"][-1], ref.logits[..., :num_tokens], out["boxes"][-1], ref.pred_boxes


@pytest.mark.parametrize("mm", [False, True], ids=["GroundingDino", "MMGroundingDino"])
def test_equal_to_hugging_face(tmp_path, bert, mm):
    """A random HF model saved with save_pretrained (+ tokenizer: the published folder
    layout) loads through load_model_weights (the Inferencer's / test.py's path) and gives
    HF's logits and boxes in float64 at 75x411."""
    hf = _hf_model(tmp_path / "hf", bert, mm)
    # one folder, as a user has it: the text encoder's config and tokenizer, then all weights
    model = MODELS.build(_our_config(str(tmp_path / "hf"), mm)).double().eval()
    load_model_weights(model, str(tmp_path / "hf"))
    logits, ref_logits, boxes, ref_boxes = _outputs(model, hf)
    assert (logits - ref_logits).abs().max() < 1e-6
    assert (boxes - ref_boxes).abs().max() < 1e-6
    assert logits.std() > 0.01  # not a degenerate comparison


def test_hugging_face_settings_the_weights_do_not_show_are_refused(tmp_path, bert):
    _hf_model(tmp_path / "hf", bert, mm=False)
    cfg = _our_config(bert, mm=False)
    cfg["head"]["positional_encoding"]["temperature"] = 10000
    with pytest.raises(CheckpointError, match="temperature=20"):
        load_model_weights(MODELS.build(cfg), str(tmp_path / "hf"))
    cfg = _our_config(bert, mm=True)  # the MM form of the classifier for an original model
    with pytest.raises(CheckpointError, match="contrastive_scaled=False"):
        load_model_weights(MODELS.build(cfg), str(tmp_path / "hf"))
    cfg = _our_config(bert, mm=False)
    cfg["backbone"]["always_partition"] = False
    with pytest.raises(CheckpointError, match="always_partition=True"):
        load_model_weights(MODELS.build(cfg), str(tmp_path / "hf"))


# ---------------------------------------------------------------- training
def test_learns_to_ground_the_prompted_phrase(bert):
    """Two images, each with a class prompt of two names and their boxes: after a short
    overfit the top box of each phrase is its ground truth."""
    torch.manual_seed(0)
    model = MODELS.build(tiny_vit_grounding(bert, frozen=False))
    spans = [[[0, 6]], [[9, 12]]]  # "circle . cat ."
    samples = [
        _sample(
            "circle . cat .", ["circle", "cat"], spans, [[4, 4, 30, 28], [36, 30, 60, 60]], [0, 1]
        ),
        _sample("circle . cat .", ["circle", "cat"], spans, [[30, 8, 58, 40]], [1]),
    ]
    data = _batch(model, samples)
    assert_learns_boxes(model, data, steps=120, milestone=100)


def test_empty_ground_truth_has_a_loss_and_gradients(bert):
    model = MODELS.build(tiny_vit_grounding(bert, frozen=False))
    data = _batch(model, [_sample("dog .", ["dog"], [[[0, 3]]])])
    losses = model(**data, mode="loss")
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.head.cls_heads[0].bias.grad is not None


def test_bad_prompts_are_refused(bert):
    model = MODELS.build(tiny_vit_grounding(bert))
    with pytest.raises(ValueError, match="needs a prompt"):
        model(**_batch(model, [_sample(" ", ["x"], [[[0, 1]]])]), mode="loss")
    with pytest.raises(ValueError, match="box label 1 but the prompt has 1 phrases"):
        model(
            **_batch(model, [_sample("dog .", ["dog"], [[[0, 3]]], [[1, 1, 9, 9]], [1])]),
            mode="loss",
        )
    with pytest.raises(ValueError, match="phrase_spans"):
        model(**_batch(model, [_sample("dog .", boxes=[[1, 1, 9, 9]], labels=[0])]), mode="loss")
    with pytest.raises(ValueError, match="dog  cat"):  # a span on the spaces between tokens
        model(
            **_batch(model, [_sample("dog  cat .", ["x"], [[[3, 5]]], [[1, 1, 9, 9]], [0])]),
            mode="loss",
        )


# ---------------------------------------------------------------- inference
def test_expression_alone_or_batched_gives_the_same_boxes(bert):
    """An expression's tokens must not depend on the batch: the caption gets its closing
    " ." (without it the sub-sentence mask isolates every token when it is the longest)."""
    model = MODELS.build(tiny_vit_grounding(bert)).eval()
    text = "the small circle left of the red square"
    alone = _sample(text, [text], [[[0, len(text)]]])
    other = _sample("dog . cat . the red ring next to a big blue star .", ["dog"], [[[0, 3]]])
    with torch.no_grad():
        one = model(**_batch(model, [copy.deepcopy(alone)]), mode="predict")[0]
        two = model(**_batch(model, [copy.deepcopy(alone), other]), mode="predict")[0]
    torch.testing.assert_close(one.pred_instances.scores, two.pred_instances.scores)


def test_long_class_prompts_are_chunked_and_merged(bert):
    """300 class names (over the 256-token budget): every chunk runs, labels index the 300
    names, and a name's scores equal those of a prompt of its chunk alone."""
    from visionfm.text import chunk_phrases, class_caption

    model = MODELS.build(tiny_vit_grounding(bert, max_per_img=3000)).eval()
    words = ["red", "green", "blue", "yellow", "small", "large"]
    names = [
        f"{words[i % 6]} {words[(i // 6) % 6]} {words[i // 36 % 6]} circle" for i in range(300)
    ]
    caption, spans = class_caption(names)
    enc = model.text_encoder
    assert enc.count_tokens(caption) > enc.max_tokens
    with torch.no_grad():
        full = model(**_batch(model, [_sample(caption, names, spans)]), mode="predict")[0]
        chunks = chunk_phrases(names, enc.count_tokens, enc.max_tokens)
        assert len(chunks) > 1
        last_caption, last_spans, ids = chunks[-1]
        part = model(
            **_batch(model, [_sample(last_caption, [names[i] for i in ids], last_spans)]),
            mode="predict",
        )[0]
    labels = full.pred_instances.labels
    assert labels.max() >= ids[0] and labels.min() < ids[0]  # candidates from several chunks
    mine = torch.isin(labels, torch.tensor(ids))
    expected = part.pred_instances.scores.sort(descending=True).values
    got = full.pred_instances.scores[mine].sort(descending=True).values
    torch.testing.assert_close(got[: len(expected)], expected[: len(got)])


def test_free_text_names_boxes_by_their_tokens(bert):
    model = MODELS.build(tiny_vit_grounding(bert)).eval()
    model.head.test_cfg.update(box_thr=0.0, text_thr=0.0)  # every box, every token
    with torch.no_grad():
        out = model(**_batch(model, [_sample("the red circle")]), mode="predict")[0]
    assert len(out.pred_instances) == 10
    assert out.phrases == ["the red circle"]  # all tokens above 0, specials and "." skipped
    assert (out.pred_instances.labels == 0).all()


def test_num_classes_check_skips_prompted_heads(bert):
    """The runner's class-count check does not apply to a head whose classes are phrases."""
    from types import SimpleNamespace

    from visionfm.engine.hooks import ClassNumCheckHook

    model = MODELS.build(tiny_vit_grounding(bert))
    loader = SimpleNamespace(dataset=SimpleNamespace(metainfo=dict(classes=("a", "b", "c"))))
    runner = SimpleNamespace(model=model, train_dataloader=loader)
    ClassNumCheckHook().before_train(runner)  # max_phrases=8 != 3 classes: not an error


# the IDEA-Research names of each HF layer part (HF's conversion script, read backwards)
_ORIGINAL_PARTS = {
    "deformable_layer.": ("transformer.encoder.layers", [
        ("self_attn_layer_norm.", "norm1."), ("final_layer_norm.", "norm2."),
        ("fc1.", "linear1."), ("fc2.", "linear2."), ("self_attn.", "self_attn.")]),
    "text_enhancer_layer.": ("transformer.encoder.text_layers", [
        ("layer_norm_before.", "norm1."), ("layer_norm_after.", "norm2."),
        ("fc1.", "linear1."), ("fc2.", "linear2."), ("self_attn.", "self_attn.")]),
    "fusion_layer.": ("transformer.encoder.fusion_layers", [
        ("vision_param", "gamma_v"), ("text_param", "gamma_l"),
        ("layer_norm_vision.", "layer_norm_v."), ("layer_norm_text.", "layer_norm_l."),
        ("attn.values_vision_proj.", "attn.values_v_proj."),
        ("attn.values_text_proj.", "attn.values_l_proj."),
        ("attn.out_vision_proj.", "attn.out_v_proj."), ("attn.out_text_proj.", "attn.out_l_proj."),
        ("attn.vision_proj.", "attn.v_proj."), ("attn.text_proj.", "attn.l_proj.")]),
    "": ("transformer.decoder.layers", [
        ("encoder_attn_text_layer_norm.", "catext_norm."), ("encoder_attn_text.", "ca_text."),
        ("encoder_attn_layer_norm.", "norm1."), ("encoder_attn.", "cross_attn."),
        ("self_attn_layer_norm.", "norm2."), ("self_attn.", "self_attn."),
        ("final_layer_norm.", "norm3."), ("fc1.", "linear1."), ("fc2.", "linear2.")]),
}  # fmt: skip
_ORIGINAL_TOP = [
    ("model.text_backbone.", "bert."), ("model.text_projection.", "feat_map."),
    ("model.input_proj_vision.", "input_proj."), ("model.level_embed", "transformer.level_embed"),
    ("model.query_position_embeddings.", "transformer.tgt_embed."),
    ("model.enc_output_norm.", "transformer.enc_output_norm."),
    ("model.enc_output.", "transformer.enc_output."),
    ("model.encoder_output_bbox_embed.", "transformer.enc_out_bbox_embed."),
    ("model.decoder.layer_norm.", "transformer.decoder.norm."),
    ("model.decoder.reference_points_head.", "transformer.decoder.ref_point_head."),
    ("bbox_embed.", "bbox_embed."),
]  # fmt: skip


def _original_layout(hf: dict) -> dict:
    """An HF Grounding DINO state dict in the IDEA-Research repo's names: fused in_proj
    attention weights, the official Swin layout under backbone.0., the pooler BERT keeps."""
    import re

    from visionfm.backbones.swin_convert import _from_hf, _fuse_qkv

    prefix = "model.backbone.conv_encoder.model."
    swin = {k[len(prefix) :]: v for k, v in hf.items() if k.startswith(prefix)}
    swin = {k: v for k, v in swin.items() if not k.startswith("swin.layernorm")}
    for k in [k for k in swin if k.startswith("hidden_states_norms.stage")]:
        stage, kind = re.match(r"hidden_states_norms\.stage(\d)\.(\w+)", k).groups()
        swin[f"norm{int(stage) - 1}.{kind}"] = swin.pop(k)
    swin = _from_hf(swin)
    _fuse_qkv(swin, v2=False)
    out = {f"backbone.0.{k}": v for k, v in swin.items()}
    qkv: dict[str, list] = {}
    for name, t in hf.items():
        if name.startswith(prefix):
            continue
        hit = re.match(r"^model\.(?:encoder|decoder)\.layers\.(\d+)\.(\w+\.)?(.*)$", name)
        if hit and (hit[2] in _ORIGINAL_PARTS or hit[2] is None or hit[2] not in _ORIGINAL_PARTS):
            sub = hit[2] if hit[2] in _ORIGINAL_PARTS else ""
            rest = name[
                len(
                    f"model.{'encoder' if 'encoder.' in name[:14] else 'decoder'}.layers.{hit[1]}.{sub}"
                ) :
            ]
            target, table = _ORIGINAL_PARTS[sub]
            rest = next(new + rest[len(old) :] for old, new in table if rest.startswith(old))
            new = f"{target}.{hit[1]}.{rest}"
        else:
            new = next(o + name[len(h) :] for h, o in _ORIGINAL_TOP if name.startswith(h))
        m = re.match(r"^(.*)\.(query|key|value)\.(weight|bias)$", new)
        if m:  # nn.MultiheadAttention keeps q, k, v in one in_proj
            qkv.setdefault(f"{m[1]}.in_proj_{m[3]}", [None] * 3)[
                ("query", "key", "value").index(m[2])
            ] = t
        else:
            out[new] = t
    out.update({k: torch.cat(parts) for k, parts in qkv.items()})
    out["transformer.decoder.bbox_embed.0.layers.0.weight"] = hf["bbox_embed.0.layers.0.weight"]
    out["bert.pooler.dense.weight"] = torch.zeros(32, 32)  # the original BERT has a pooler
    return out


def test_original_checkpoint_equals_hugging_face(tmp_path, bert):
    """The IDEA-Research layout (groundingdino_swint_ogc.pth: bert.*, feat_map, transformer.*,
    official Swin, fused in_proj) of the same weights gives HF's outputs."""
    from safetensors.torch import load_file

    hf = _hf_model(tmp_path / "hf", bert, mm=False)
    original = _original_layout(load_file(str(tmp_path / "hf" / "model.safetensors")))
    assert not any(k.startswith("model.") for k in original)
    torch.save({"model": original}, tmp_path / "groundingdino_tiny.pth")
    model = MODELS.build(_our_config(str(tmp_path / "hf"), mm=False)).double().eval()
    load_model_weights(model, str(tmp_path / "groundingdino_tiny.pth"))
    logits, ref_logits, boxes, ref_boxes = _outputs(model, hf)
    assert (logits - ref_logits).abs().max() < 1e-6
    assert (boxes - ref_boxes).abs().max() < 1e-6
