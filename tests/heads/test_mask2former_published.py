"""Published Mask2Former weights (HF ``Mask2FormerForUniversalSegmentation`` on Swin, and the
facebookresearch/Mask2Former layout) in our TaskModel(Swin, Mask2FormerHead): the same class
and mask logits as HF at every decoder layer, the same semantic / instance / panoptic
results as HF's image processor, settings and class counts that differ refused."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import randomize

from visionfm.engine.checkpoint import load_model_weights
from visionfm.heads.segmentation.mask2former.model_config import mask2former_model_config
from visionfm.models.published import convert_published
from visionfm.models.published_config import published_config
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, load_converted, read_checkpoint, read_hf_config

transformers = pytest.importorskip("transformers")

H, W = 75, 101  # odd, non-square: every level's map is padded by the Swin and cropped back


def _hf_config(**overrides):
    from transformers import Mask2FormerConfig, SwinConfig

    settings = dict(
        backbone_config=SwinConfig(
            embed_dim=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 2, 4],
            window_size=4,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        encoder_layers=2,
        decoder_layers=4,  # the initial prediction + 3 layers: one round over the 3 levels
        num_queries=6,
        num_attention_heads=4,
        id2label={i: f"class{i}" for i in range(5)},
    )
    return Mask2FormerConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mask2former")
    model = transformers.Mask2FormerForUniversalSegmentation(_hf_config())
    randomize(model).save_pretrained(folder)
    return folder


def _hf(folder):
    model = transformers.Mask2FormerForUniversalSegmentation.from_pretrained(
        folder, dtype=torch.float64
    )
    return model.eval()


def _ours(folder):
    cfg = mask2former_model_config(read_checkpoint(folder), read_hf_config(folder))
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(folder))
    return model


def _image(h=H, w=W):
    return torch.randn(1, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def _logits(model, hf, x):
    """Ours and HF's (L + 1, B, Q, K + 1) class and (L + 1, B, Q, h, w) mask logits."""
    with torch.no_grad():
        ref = hf(pixel_values=x, output_auxiliary_logits=True)
        out = model.head(model.extract_feat(x))
    aux = ref.auxiliary_logits
    ref_cls = torch.stack([a["class_queries_logits"] for a in aux] + [ref.class_queries_logits])
    ref_mask = torch.stack([a["masks_queries_logits"] for a in aux] + [ref.masks_queries_logits])
    return out["cls_logits"], ref_cls, out["mask_logits"], ref_mask


# ---------------------------------------------------------------- equal to Hugging Face
def test_equal_to_hugging_face(hf_folder):
    """Every decoder layer's class and mask logits, float64, 75x101."""
    model, hf = _ours(hf_folder), _hf(hf_folder)
    cls, ref_cls, masks, ref_masks = _logits(model, hf, _image())
    assert cls.shape == ref_cls.shape == (4, 1, 6, 6)
    assert masks.shape == ref_masks.shape == (4, 1, 6, 19, 26)
    assert (cls - ref_cls).abs().max() < 1e-5
    assert (masks - ref_masks).abs().max() < 1e-5
    assert masks.std() > 0.1 and cls.std() > 0.1  # not a degenerate comparison


def test_padded_batch_equals_hugging_face(hf_folder):
    """HF reads the batch's padding as image content (its pixel_mask is unused): so does
    mask_padding=False; the default keeps padding out and differs."""
    from visionfm.data import DataSample

    model, hf = _ours(hf_folder), _hf(hf_folder)
    x = _image()
    x[..., 60:, :] = 0  # an image of 60 x 101, padded to 75 x 101
    meta = dict(img_shape=(60, W), ori_shape=(60, W), batch_input_shape=(H, W))
    with torch.no_grad():
        ref = hf(pixel_values=x).masks_queries_logits
        feats = model.extract_feat(x)
        ours = model.head.predictions(feats, [DataSample(metainfo=meta)])[1][-1]
        model.head.mask_padding = True
        masked = model.head.predictions(feats, [DataSample(metainfo=meta)])[1][-1]
    assert (ours - ref).abs().max() < 1e-5
    assert (masked - ref).abs().max() > 1e-2


def test_fine_tuning_from_the_published_weights(hf_folder):
    """The HF folder as load_from reads it, then one training step on a padded batch of two
    images with thing and stuff segments: finite losses, gradients in every part."""
    from mmengine.structures import InstanceData

    from visionfm.data import DataSample
    from visionfm.engine.checkpoint import load_from_local_weights_only

    cfg = _config(hf_folder)
    cfg["head"].update(num_points=64)
    cfg["head"]["matcher"]["num_points"] = 64
    model = MODELS.build(cfg).train()
    state = load_from_local_weights_only(str(hf_folder))
    converted = convert_published(model, state["state_dict"], state["meta"]["hf_config"])
    load_converted(model, converted, strict=True)
    samples = []
    for shape, boxes, labels in (((64, 96), [(4, 40, 8, 60), (0, 64, 60, 96)], [0, 4]),
                                 ((48, 80), [(10, 30, 10, 50)], [2])):  # fmt: skip
        masks = torch.zeros(len(labels), *shape, dtype=torch.bool)
        for m, (y0, y1, x0, x1) in zip(masks, boxes):
            m[y0:y1, x0:x1] = True
        sample = DataSample(metainfo=dict(img_shape=shape, ori_shape=shape))
        sample.gt_instances = InstanceData(labels=torch.tensor(labels), masks=masks)
        samples.append(sample)
    images = [torch.randint(0, 255, (3, *s.img_shape), dtype=torch.uint8) for s in samples]
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), True)
    losses = model(**data, mode="loss")
    total = sum(losses.values())
    assert torch.isfinite(total) and "d0.loss_mask" in losses
    total.backward()
    for part in ("backbone.patch_embed", "head.pixel_decoder.input_proj", "head.query_feat",
                 "head.transformer_decoder.layers.2", "head.cls_head"):  # fmt: skip
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), part


# ---------------------------------------------------------------- the original layout
_P, _T = "model.pixel_level_module.decoder.", "model.transformer_module."
_ORIGINAL_NAMES = [  # HF -> facebookresearch/Mask2Former, first match wins
    (_P + r"input_projections\.", "sem_seg_head.pixel_decoder.input_proj."),
    (_P + r"level_embed$", "sem_seg_head.pixel_decoder.transformer.level_embed"),
    (_P + r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"ENC.\1.norm1."),
    (_P + r"encoder\.layers\.(\d+)\.final_layer_norm\.", r"ENC.\1.norm2."),
    (_P + r"encoder\.layers\.(\d+)\.fc(\d)\.", r"ENC.\1.linear\2."),
    (_P + r"encoder\.layers\.(\d+)\.self_attn\.", r"ENC.\1.self_attn."),
    (_P + r"mask_projection\.", "sem_seg_head.pixel_decoder.mask_features."),
    (_P + r"(adapter|layer)_(\d)\.0\.weight", r"sem_seg_head.pixel_decoder.\1_\2.weight"),
    (_P + r"(adapter|layer)_(\d)\.1\.", r"sem_seg_head.pixel_decoder.\1_\2.norm."),
    (_T + r"queries_features\.", "PRED.query_feat."),
    (_T + r"queries_embedder\.", "PRED.query_embed."),
    (_T + r"level_embed\.", "PRED.level_embed."),
    (_T + r"decoder\.layernorm\.", "PRED.decoder_norm."),
    (_T + r"decoder\.mask_predictor\.mask_embedder\.(\d)\.0\.", r"PRED.mask_embed.layers.\1."),
    (_T + r"decoder\.layers\.(\d+)\.self_attn\.", r"PRED.transformer_self_attention_layers.\1.self_attn."),
    (_T + r"decoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"PRED.transformer_self_attention_layers.\1.norm."),
    (_T + r"decoder\.layers\.(\d+)\.cross_attn\.", r"PRED.transformer_cross_attention_layers.\1.multihead_attn."),
    (_T + r"decoder\.layers\.(\d+)\.cross_attn_layer_norm\.", r"PRED.transformer_cross_attention_layers.\1.norm."),
    (_T + r"decoder\.layers\.(\d+)\.fc(\d)\.", r"PRED.transformer_ffn_layers.\1.linear\2."),
    (_T + r"decoder\.layers\.(\d+)\.final_layer_norm\.", r"PRED.transformer_ffn_layers.\1.norm."),
    (r"class_predictor\.", "PRED.class_embed."),
    (r"criterion\.empty_weight", "criterion.empty_weight"),
]  # fmt: skip
_SWIN_NAMES = [  # HF SwinBackbone (as saved) -> the official Swin of the detectron2 repo
    (r"embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"embeddings\.norm\.", "patch_embed.norm."),
    (r"encoder\.layers\.", "layers."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.attention\.self\.relative_position_bias_table", ".attn.relative_position_bias_table"),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"hidden_states_norms\.stage(\d)\.", lambda m: f"norm{int(m[1]) - 1}."),
]


def _to_original(hf_state: dict) -> dict:
    """The HF state dict in the facebookresearch/Mask2Former names (fused in_proj of the
    self-attention and of the Swin's q / k / v, detectron2's Conv2d norms, the official
    Swin's per-output norms and relative_position_index buffers)."""
    out, backbone = {}, "model.pixel_level_module.encoder."
    for name, t in hf_state.items():
        if name.startswith(backbone):
            new = name[len(backbone) :]
            for pattern, repl in _SWIN_NAMES:
                new = re.sub(pattern, repl, new)
            out["backbone." + new] = t
            continue
        new = next(re.sub(p, r, name) for p, r in _ORIGINAL_NAMES if re.match(p, name))
        new = new.replace("ENC.", "sem_seg_head.pixel_decoder.transformer.encoder.layers.")
        out[new.replace("PRED.", "sem_seg_head.predictor.")] = t
    for prefix in {k.rsplit(".", 2)[0] for k in out if re.search(r"self_attn\.q_proj\.", k)}:
        for kind in ("weight", "bias"):
            parts = [out.pop(f"{prefix}.{p}_proj.{kind}") for p in "qkv"]
            out[f"{prefix}.in_proj_{kind}"] = torch.cat(parts)
    for prefix in {k.split(".attention.self.")[0] for k in out if ".attention.self.query." in k}:
        for kind in ("weight", "bias"):
            parts = [
                out.pop(f"{prefix}.attention.self.{p}.{kind}") for p in ("query", "key", "value")
            ]
            out[f"{prefix}.attn.qkv.{kind}"] = torch.cat(parts)
        out[f"{prefix}.attn.relative_position_index"] = torch.zeros(16, 16, dtype=torch.long)
    return out


def test_original_checkpoint_equals_hugging_face(hf_folder, tmp_path):
    """The tiny HF weights in the facebookresearch names, torch-saved as detectron2's
    checkpointer writes model_final.pth, and as the model zoo's .pkl of numpy arrays."""
    hf = _hf(hf_folder)
    original = _to_original(read_checkpoint(hf_folder))
    assert not any(k.startswith("model.") for k in original)
    torch.save(dict(model=original, iteration=90000), tmp_path / "model_final.pth")
    cfg = mask2former_model_config(read_checkpoint(hf_folder), read_hf_config(hf_folder))
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(tmp_path / "model_final.pth"))
    cls, ref_cls, masks, ref_masks = _logits(model, hf, _image())
    assert (cls - ref_cls).abs().max() < 1e-5
    assert (masks - ref_masks).abs().max() < 1e-5

    arrays = {k: v.numpy() for k, v in original.items()}
    # protocol 2 and numpy 1's module names, as the model zoo's files were written
    data = pickle.dumps(dict(model=arrays, __author__="test"), protocol=2)
    (tmp_path / "model_final.pkl").write_bytes(data.replace(b"numpy._core.", b"numpy.core."))
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(tmp_path / "model_final.pkl"))
    cls, _, masks, _ = _logits(model, hf, _image())
    assert (cls - ref_cls).abs().max() < 1e-5
    assert (masks - ref_masks).abs().max() < 1e-5

    # the architecture from the tensors alone (no config.json): loads strictly
    model = MODELS.build(mask2former_model_config(original, None))
    load_model_weights(model, str(tmp_path / "model_final.pth"))
    assert model.head.transformer_decoder.layers[0].cross_attn.num_heads == 4

    # its whole config (tools/convert_checkpoint.py, Inferencer): the repository's padding
    # to a multiple of 32 is kept beside the reference resize and normalisation
    config, family = published_config(tmp_path / "model_final.pth")
    assert family.name == "mask2former"
    assert config["model"]["data_preprocessor"]["size_divisor"] == 32


def test_a_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump(dict(model=dict(w=np.zeros(2)), x=Evil()), f)
    with pytest.raises(CheckpointError, match="builtins.print is not allowed"):
        read_checkpoint(tmp_path / "bad.pkl")


def test_only_the_mask2former_family_matches(hf_folder):
    """Both layouts are recognised as Mask2Former and by no other registered family."""
    from visionfm.models.published import families, find_family

    hf_state = read_checkpoint(hf_folder)
    for state, config in ((hf_state, read_hf_config(hf_folder)), (_to_original(hf_state), None)):
        assert find_family(state, config).name == "mask2former"
        others = [
            f.name for f in families() if f.name != "mask2former" and f.matches(state, config)
        ]
        assert not others


# ---------------------------------------------------------------- bad input
def _config(folder):
    return mask2former_model_config(read_checkpoint(folder), read_hf_config(folder))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h["transformer_decoder"].update(num_layers=2),
         "head.transformer_decoder.num_layers=3"),
        (lambda h: h["transformer_decoder"]["layer"]["cross_attn"].update(num_heads=2),
         "num_heads=4"),
        (lambda h: h.update(level_embed_on="pos"), "head.level_embed_on='feats'"),
        (lambda h: h.update(mask_padding=True), "head.mask_padding=False"),
        (lambda h: h.update(num_stuff_classes=h["num_stuff_classes"] + 2),
         "set num_things_classes \\+ num_stuff_classes to 5"),
    ],
    ids=["layers", "heads", "level_embed", "padding", "classes"],
)  # fmt: skip
def test_other_architectures_are_refused(hf_folder, change, message):
    cfg = _config(hf_folder)
    change(cfg["head"])
    with pytest.raises(CheckpointError, match=message):
        load_model_weights(MODELS.build(cfg), str(hf_folder))


def test_other_widths_are_refused(hf_folder):
    cfg = _config(hf_folder)
    cfg["head"]["pixel_decoder"]["mask_dims"] = 64
    with pytest.raises(CheckpointError, match="mask_feature"):
        load_model_weights(MODELS.build(cfg), str(hf_folder))


# ---------------------------------------------------------------- post-processing
def _segments(pan: torch.Tensor, label_of) -> list[tuple[int, bytes]]:
    """A panoptic map as sorted (label, pixel mask) pairs, whatever the segment ids."""
    ids = [int(i) for i in pan.unique() if label_of(int(i)) is not None]
    return sorted((label_of(i), (pan == i).numpy().tobytes()) for i in ids)


def _hf_post_processing(processor, outputs, size, num_things, num_classes):
    """HF's semantic map, instances (highest score first) and panoptic segments."""
    sem = processor.post_process_semantic_segmentation(outputs, target_sizes=[size])[0]
    inst = processor.post_process_instance_segmentation(
        outputs, threshold=0.1, target_sizes=[size], return_binary_maps=True
    )[0]
    info = sorted(inst["segments_info"], key=lambda s: -s["score"])
    masks = inst["segmentation"][[s["id"] for s in info]].bool() if info else None
    pan = processor.post_process_panoptic_segmentation(
        outputs, threshold=0.3, label_ids_to_fuse=set(range(num_things, num_classes)),
        target_sizes=[size],
    )[0]  # fmt: skip
    labels = {s["id"]: s["label_id"] for s in pan["segments_info"]}
    return sem, info, masks, _segments(pan["segmentation"], labels.get)


def _assert_equal_post_processing(sample, ref):
    sem, info, masks, segments = ref
    assert torch.equal(sample.pred_sem_seg, sem)
    pred = sample.pred_instances
    assert len(info) == len(pred)
    assert [s["label_id"] for s in info] == pred.labels.tolist()
    assert max(abs(s["score"] - p) for s, p in zip(info, pred.scores.tolist())) < 1e-6
    assert torch.equal(pred.masks, masks)
    ours = _segments(sample.pred_panoptic_seg, lambda i: None if i < 0 else i // 1000)
    assert ours == segments


_HF_TEST_CFG = dict(postprocess="transformers", object_mask_thr=0.3, score_thr=0.1)


def test_post_processing_equals_the_image_processor(hf_folder):
    """test_cfg.postprocess='transformers' gives the semantic map, instances (masks, labels,
    scores) and panoptic segments of HF's post_process_* at the same target size, from a
    384 x 384 input (HF resizes to its fixed 384 x 384 first) to a 301 x 457 image: the
    tiny model's outputs end to end, then random logits of 20 distinct queries (the tiny
    random decoder makes its queries nearly alike)."""
    from types import SimpleNamespace

    from visionfm.data import DataSample

    cfg = _config(hf_folder)
    cfg["head"]["test_cfg"] = _HF_TEST_CFG  # 5 thing classes: see the module doc of
    # inference_hf for why fused stuff segments are not compared
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, str(hf_folder))
    hf, processor = _hf(hf_folder), transformers.Mask2FormerImageProcessor()
    x, size = _image(384, 384), (301, 457)
    meta = dict(img_shape=(384, 384), ori_shape=size, batch_input_shape=(384, 384))
    with torch.no_grad():
        ref = hf(pixel_values=x)
        (out,) = model.head.predict(model.extract_feat(x), [DataSample(metainfo=meta)])
    _assert_equal_post_processing(out, _hf_post_processing(processor, ref, size, 5, 5))
    assert len(out.pred_instances) > 0

    gen = torch.Generator().manual_seed(0)
    cls = torch.randn(1, 20, 6, generator=gen, dtype=torch.float64) * 5  # confident
    coarse = torch.randn(1, 20, 6, 6, generator=gen, dtype=torch.float64) * 4 - 4  # blobs
    masks = torch.nn.functional.interpolate(coarse, size=(96, 96), mode="bilinear")
    sample = DataSample(metainfo=meta)
    model.head._predict_hf(cls[0], masks[0], sample, True, (384, 384))
    outputs = SimpleNamespace(class_queries_logits=cls, masks_queries_logits=masks)
    ref = _hf_post_processing(processor, outputs, size, 5, 5)
    _assert_equal_post_processing(sample, ref)
    assert len({label for label, _ in ref[3]}) >= 3  # segments of several classes


def _predict_with(model, cls, masks, meta, **test_cfg):
    """``model.head.predict`` on the given last-layer logits (1, Q, K + 1), (1, Q, h, w)."""
    from visionfm.data import DataSample

    head = model.head
    head.test_cfg = {**head.test_cfg, **test_cfg}
    head.predictions = lambda feats, samples: ([cls], [masks])
    (sample,) = head.predict({}, [DataSample(metainfo=meta)])
    return sample


def test_detectron2_post_processing(hf_folder):
    """test_cfg.postprocess='detectron2', as the paper's code: logits resized to the padded
    input, cropped to the image, resized to the original; semantic-only heads resize the
    class scores instead; instances are the top pairs among all classes with stuff dropped."""
    import torch.nn.functional as F

    cfg = _config(hf_folder)
    cfg["head"].update(num_things_classes=3, num_stuff_classes=2)
    model = MODELS.build(cfg).double().eval()
    gen = torch.Generator().manual_seed(0)
    cls = torch.randn(1, 20, 6, generator=gen, dtype=torch.float64) * 3
    masks = torch.randn(1, 20, 24, 32, generator=gen, dtype=torch.float64) * 3
    meta = dict(img_shape=(90, 120), ori_shape=(181, 241), batch_input_shape=(96, 128))

    def resize(x, size):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    logits = resize(resize(masks, (96, 128))[..., :90, :120], (181, 241))[0]
    probs = cls[0].softmax(-1)
    scores = torch.einsum("qk,qhw->khw", probs[:, :-1], logits.sigmoid())
    out = _predict_with(model, cls, masks, meta, postprocess="detectron2", max_per_image=10)
    assert torch.equal(out.pred_sem_seg, scores.argmax(0))
    top, index = probs[:, :-1].flatten().topk(10)
    things = index % 5 < 3
    assert len(out.pred_instances) == int(things.sum()) < 10  # stuff pairs dropped
    assert torch.equal(out.pred_instances.labels, index[things] % 5)
    assert torch.equal(out.pred_instances.masks, logits[index[things] // 5] > 0)

    sem_only = _predict_with(
        model, cls, masks, meta, postprocess="detectron2", instance_on=False, panoptic_on=False
    )
    at_input = torch.einsum("qk,qhw->khw", probs[:, :-1], resize(masks, (96, 128))[0].sigmoid())
    ref = resize(at_input[None, :, :90, :120], (181, 241))[0].argmax(0)
    assert torch.equal(sem_only.pred_sem_seg, ref)
    assert not torch.equal(ref, scores.argmax(0))  # the two orders differ


# ---------------------------------------------------------------- the published architecture
def test_the_swin_t_config_is_the_published_architecture():
    """configs/_base_/models/mask2former_swin-t.py takes the weights of an HF model built with
    facebook/mask2former-swin-tiny-coco-panoptic's config.json settings, strictly, and so does
    the model that model_config makes from them."""
    from mmengine.config import Config
    from transformers import SwinConfig

    hf_config = _hf_config(
        backbone_config=SwinConfig(
            embed_dim=96,
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 24],
            window_size=7,
            drop_path_rate=0.3,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        feature_size=256,
        mask_feature_size=256,
        hidden_dim=256,
        encoder_feedforward_dim=1024,
        dim_feedforward=2048,
        encoder_layers=6,
        decoder_layers=10,
        num_queries=100,
        num_attention_heads=8,
        id2label={i: str(i) for i in range(133)},
    )
    with torch.device("meta"):
        state = transformers.Mask2FormerForUniversalSegmentation(hf_config).state_dict()
    config = {**hf_config.to_dict(), "model_type": "mask2former"}
    root = Path(__file__).resolve().parents[2]
    cfg = Config.fromfile(root / "configs/mask2former/mask2former_swin-t_coco-panoptic.py")
    assert len(cfg.metainfo["classes"]) == 133
    for model_cfg in (cfg.model, mask2former_model_config(state, config)):
        with torch.device("meta"):
            model = MODELS.build(model_cfg)
        converted = convert_published(model, state, config)
        assert converted is not None
        own = model.state_dict()
        assert own.keys() == converted.state_dict.keys()
        assert all(own[k].shape == v.shape for k, v in converted.state_dict.items())
