"""LW-DETR / RF-DETR: our DETRHead (no encoder, learned reference deltas on the top-k
proposals, ``bbox_reparam`` boxes, Group DETR) equal to Hugging Face's models with the same
weights; group queries that do not attend each other and learn; bad input refused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from _helpers import randomize
from _tiny_models import overfit, tiny_lw_detr_head
from mmengine.structures import InstanceData

from visionfm.data import DataSample
from visionfm.engine.checkpoint import load_model_weights
from visionfm.heads.detr.convert_lw_detr import convert_head, convert_lw_detr_checkpoint
from visionfm.models.published import find_family
from visionfm.ops.boxes import box_iou
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, read_checkpoint, read_hf_config

transformers = pytest.importorskip("transformers")

C, NUM_CLASSES, QUERIES, GROUPS = 32, 5, 10, 3


def lw_detr_head(levels: dict[str, int], **options) -> dict:
    """Our head for the tiny HF models below: ``levels`` ``{name: stride}``, each ``C`` wide
    (``options``: ``num_groups``, ``num_queries``, the head's arguments)."""
    options = {"num_groups": GROUPS, "max_per_img": QUERIES * NUM_CLASSES, **options}
    return tiny_lw_detr_head(NUM_CLASSES, {k: C for k in levels}, levels, **options)


def _decoder_config(**options) -> dict:
    return dict(
        d_model=C,
        decoder_layers=2,
        decoder_self_attention_heads=2,
        decoder_cross_attention_heads=4,
        decoder_n_points=2,
        decoder_ffn_dim=2 * C,
        num_queries=QUERIES,
        group_detr=GROUPS,
        c2f_num_blocks=1,
        num_labels=NUM_CLASSES,
        dropout=0.0,
        **options,
    )


def hf_lw_detr():
    """A random tiny ``LwDetrForObjectDetection`` (float64, eval): a patch-8 ViT with 2 x 2
    windows in blocks 0 and 2, a projector to strides 4 and 16 (scales 2.0 and 0.5)."""
    config = transformers.LwDetrConfig(
        backbone_config=dict(
            model_type="lw_detr_vit",
            hidden_size=C,
            num_hidden_layers=4,
            num_attention_heads=2,
            image_size=64,
            pretrain_image_size=32,
            patch_size=8,
            window_block_indices=[0, 2],
            out_indices=[1, 3],
            num_windows=4,
        ),
        projector_scale_factors=[2.0, 0.5],
        **_decoder_config(),
    )
    return randomize(transformers.LwDetrForObjectDetection(config)), dict(p2=4, p4=16)


def hf_rf_detr():
    """A random tiny ``RfDetrForObjectDetection`` (float64, eval): a patch-7 DINOv2 with 2 x 2
    windows in the blocks before its outputs, one stride-7 level."""
    config = transformers.RfDetrConfig(
        backbone_config=dict(
            model_type="rf_detr_dinov2",
            hidden_size=C,
            num_hidden_layers=4,
            num_attention_heads=2,
            image_size=56,
            patch_size=7,
            out_indices=[1, 3],
            num_windows=2,
        ),
        **_decoder_config(),
    )
    return randomize(transformers.RfDetrForObjectDetection(config)), dict(p3=7)


HF_MODELS = {"lw_detr": hf_lw_detr, "rf_detr": hf_rf_detr}
SIZES = {"lw_detr": (48, 80), "rf_detr": (42, 70)}  # what the windows allow, non-square


class _Holder(torch.nn.Module):
    """A model with only a ``head`` (for ``convert_head``'s ``head.*`` names)."""

    def __init__(self, head):
        super().__init__()
        self.head = head


def _head_from(hf, levels, **options):
    """Our head built for ``levels`` with ``hf``'s decoder / query / prediction weights."""
    head = MODELS.build(lw_detr_head(levels, **options)).double()
    converted = convert_head(hf.state_dict(), _Holder(head))
    head.load_state_dict({k[len("head.") :]: v for k, v in converted.items()}, strict=True)
    return head


def _projector_features(hf, levels, size, seed=0):
    """HF's projector outputs ``{level: (1, C, h, w)}`` for a random float64 image, and it."""
    x = torch.randn(1, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = hf.model.backbone(x, torch.ones(1, *size, dtype=torch.long))
    maps = [out[0]] if isinstance(out[0], torch.Tensor) else [f for f, _ in out]
    return dict(zip(levels, maps)), x


def _compare(ours: dict, ref, tol=1e-5) -> dict[str, float]:
    diffs = dict(
        logits=(ours["logits"][-1] - ref.logits).abs().max().item(),
        boxes=(ours["boxes"][-1] - ref.pred_boxes).abs().max().item(),
        enc_logits=(ours["enc_logits"] - ref.enc_outputs_class).abs().max().item(),
        enc_boxes=(ours["enc_boxes"] - ref.enc_outputs_coord_logits).abs().max().item(),
    )
    assert ours["logits"].shape[1:] == (*ref.logits.shape,)
    assert max(diffs.values()) <= tol, diffs
    return diffs


# ---------------------------------------------------------------- the head alone
@pytest.mark.parametrize("family", list(HF_MODELS))
def test_head_equals_hugging_face(family):
    """HF's projector outputs into our head (weights by ``convert_head``): the decoder's last
    logits / boxes and the first-stage top-k logits / boxes equal HF's (float64, eval: the
    first query group only)."""
    hf, levels = HF_MODELS[family]()
    feats, x = _projector_features(hf, levels, SIZES[family])
    head = _head_from(hf, levels).eval()
    with torch.no_grad():
        ref, ours = hf(pixel_values=x), head(feats, None)
    assert ours["logits"].shape == (2, 1, QUERIES, NUM_CLASSES)
    _compare(ours, ref)


def test_head_padded_batch_equals_hugging_face():
    """A batch of a 48 x 80 image and a 40 x 64 one padded to 48 x 80: our head (padding from
    each sample's img_shape) equals HF's run with the pixel mask, for both images: the
    proposals normalised to each valid region, padded tokens never selected and masked in the
    deformable attention, query positions in the padded frame (``query_pos_frame='padded'``,
    as HF's valid-ratio scaling)."""
    hf, levels = hf_lw_detr()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 48, 80, dtype=torch.float64, generator=gen)
    x[1, :, 40:], x[1, :, :, 64:] = 0.0, 0.0
    mask = torch.ones(2, 48, 80, dtype=torch.long)
    mask[1, 40:], mask[1, :, 64:] = 0, 0
    samples = [
        DataSample(metainfo=dict(img_shape=shape, batch_input_shape=(48, 80)))
        for shape in ((48, 80), (40, 64))
    ]
    head = _head_from(hf, levels).eval()
    with torch.no_grad():
        out = hf.model.backbone(x, mask)
        feats = {k: f for k, (f, _) in zip(levels, out)}
        ref, ours = hf(pixel_values=x, pixel_mask=mask), head(feats, samples)
    _compare(ours, ref)


def test_head_training_groups_equal_hugging_face():
    """In training every query group runs, each with its own proposals, and no group attends
    another (HF splits the groups into the batch; we mask the self-attention): all groups'
    outputs equal HF's (its projector kept in eval mode: batch-norm statistics)."""
    hf, levels = hf_lw_detr()
    feats, x = _projector_features(hf, levels, SIZES["lw_detr"])
    head = _head_from(hf, levels).train()
    hf.train()
    hf.model.backbone.eval()
    with torch.no_grad():
        ref, ours = hf(pixel_values=x), head(feats, None)
    assert ours["logits"].shape == (2, 1, GROUPS * QUERIES, NUM_CLASSES)
    _compare(ours, ref)


def test_groups_do_not_attend_each_other():
    """Changing group 1's content queries leaves group 0's training outputs exactly as they
    are (and changes group 1's): the groups are decoded apart. Decoding them together, as
    one image's queries, would let the change reach group 0."""
    hf, levels = hf_lw_detr()
    feats, _ = _projector_features(hf, levels, SIZES["lw_detr"])
    head = _head_from(hf, levels).train()
    with torch.no_grad():
        before = head(feats, None)["logits"][-1]
        head.queries.content.weight[QUERIES : 2 * QUERIES] += 1.0
        after = head(feats, None)["logits"][-1]
    assert torch.equal(before[:, :QUERIES], after[:, :QUERIES])
    assert not torch.allclose(before[:, QUERIES : 2 * QUERIES], after[:, QUERIES : 2 * QUERIES])


def test_group_queries_learn(tmp_path):
    """The tiny LW-DETR (ViT, projector, head with 3 query groups; our initialisation, the
    architecture from its config.json) trained 120 steps on two synthetic images with a few
    coloured boxes each: the loss falls to under half, and the first query group alone
    (inference, batch-norm running statistics) finds every box (IoU > 0.4)."""
    _, cfg = _saved("lw_detr", tmp_path)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    gen = torch.Generator().manual_seed(0)
    h, w = SIZES["lw_detr"]
    boxes = [[[4, 6, 30, 40], [40, 10, 76, 30]], [[10, 20, 50, 44]]]
    samples, images = [], []
    for image_boxes in boxes:
        image = torch.randint(0, 60, (3, h, w), generator=gen, dtype=torch.uint8)
        for j, (x0, y0, x1, y1) in enumerate(image_boxes):
            image[j % 3, y0:y1, x0:x1] = 220  # a bright box in the channel of its class
        sample = DataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(image_boxes, dtype=torch.float32),
            labels=torch.tensor([j % 3 for j in range(len(image_boxes))]),
        )
        samples.append(sample)
        images.append(image)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples), False)
    first = sum(model(**data, mode="loss").values()).item()
    overfit(model, data, steps=120, lr=2e-3, milestone=100, max_grad_norm=0.1)
    last = sum(model(**data, mode="loss").values()).item()
    assert last < first / 2, (first, last)
    model.eval()
    with torch.no_grad():
        predictions = model(**data, mode="predict")
    for sample, image_boxes in zip(predictions, boxes):
        found = box_iou(
            torch.tensor(image_boxes, dtype=torch.float32), sample.pred_instances.bboxes
        )
        assert (found[0].max(1).values > 0.4).all(), found[0].max(1).values


# ---------------------------------------------------------------- bad input
def test_counts_refused_naming_the_argument():
    """A model built with another group count / decoder depth / query count than the
    checkpoint's is refused before loading, naming the argument to set."""
    hf, levels = hf_lw_detr()
    sd = hf.state_dict()
    for options, argument in (
        (dict(num_groups=2), "head.num_groups=3"),
        (dict(num_queries=7), "head.num_queries=10"),
    ):
        cfg = lw_detr_head(levels, **options)
        with pytest.raises(CheckpointError, match=argument):
            convert_lw_detr_checkpoint(sd, _Holder(MODELS.build(cfg)))
    cfg = lw_detr_head(levels)
    cfg["decoder"]["num_layers"] = 3
    with pytest.raises(CheckpointError, match="head.decoder.num_layers=2"):
        convert_lw_detr_checkpoint(sd, _Holder(MODELS.build(cfg)))


def test_bad_head_options_refused():
    """Unprojected inputs of another width, groups without mixed two-stage queries, deltas
    without mixed selection: refused at construction, naming the argument."""
    levels = dict(p3=8)
    cfg = lw_detr_head(levels)
    cfg["in_channels"] = dict(p3=16)
    with pytest.raises(ValueError, match="project_inputs"):
        MODELS.build(cfg)
    with pytest.raises(ValueError, match="num_groups"):
        MODELS.build(lw_detr_head(levels, num_groups=0))
    cfg = lw_detr_head(levels)
    cfg.update(mixed_query_selection=False)
    with pytest.raises(ValueError, match="anchor_deltas"):
        MODELS.build(cfg)


def test_postprocess_equals_hugging_face():
    """Our ``postprocess`` (top ``max_per_img`` of queries x classes by sigmoid score, above
    ``score_thr``, boxes in pixels) on HF's outputs equals RfDetrImageProcessor's
    ``post_process_object_detection`` with the same top-k and a threshold inside it."""
    hf, levels = hf_rf_detr()
    feats, x = _projector_features(hf, levels, SIZES["rf_detr"])
    with torch.no_grad():
        ref = hf(pixel_values=x)
    size, top_k = (421, 703), 20
    threshold = ref.logits.sigmoid().flatten().sort(descending=True).values[14].item()
    expected = transformers.RfDetrImageProcessor().post_process_object_detection(
        ref, threshold=threshold, target_sizes=[size], top_k=top_k
    )[0]
    head = MODELS.build(lw_detr_head(levels, test_cfg=dict(max_per_img=top_k, score_thr=threshold)))
    ours = head.postprocess(ref.logits[0], ref.pred_boxes[0], dict(img_shape=size), rescale=False)
    assert 0 < len(ours) < top_k
    assert torch.equal(ours.labels, expected["labels"])
    assert torch.allclose(ours.scores, expected["scores"], atol=1e-12, rtol=0)
    assert torch.allclose(ours.bboxes, expected["boxes"], atol=1e-9, rtol=0)


def test_training_losses_equal_hugging_face():
    """Training with 3 query groups: our IoU-aware BCE + L1 + GIoU losses (per-group Hungarian
    matching, normalised by the boxes x groups) of the last layer, the earlier one and the
    first stage equal HF's LwDetr loss (weighted 1 / 5 / 2 as its config)."""
    hf, levels = hf_lw_detr()
    feats, x = _projector_features(hf, levels, SIZES["lw_detr"])
    head = _head_from(hf, levels, cls_loss="iou_aware").train()
    hf.train()
    hf.model.backbone.eval()  # batch-norm statistics
    boxes = torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.5, 0.4, 0.2]], dtype=torch.float64)
    labels = torch.tensor([1, 3])
    with torch.no_grad():
        ref = hf(pixel_values=x, labels=[dict(class_labels=labels, boxes=boxes)])
        ours = head.loss_by_outputs(head(feats, None), [dict(labels=labels, boxes=boxes)])
    weights = dict(loss_ce=1.0, loss_bbox=5.0, loss_giou=2.0)
    names = dict(loss_ce="loss_cls", loss_bbox="loss_bbox", loss_giou="loss_giou")
    for hf_name, value in ref.loss_dict.items():
        base, _, where = hf_name.partition("_")[2].partition("_")
        base = "loss_" + base
        if base not in weights:
            continue  # cardinality_error: a log value
        prefix = {"": "", "0": "d0.", "enc": "enc_"}[where]
        mine = ours[prefix + names[base]]
        assert abs(mine.item() - value.item() * weights[base]) <= 1e-6, hf_name
    assert len(ours) == 9


# ---------------------------------------------------------------- the whole model
def _saved(family, folder):
    """The tiny HF model of ``family`` saved as ``save_pretrained`` writes it (RF-DETR: in
    Roboflow's original names, as its published folders are), and our model config for it
    from the registered family's ``model_config``."""
    hf, _ = HF_MODELS[family]()
    hf.save_pretrained(folder)
    state, config = read_checkpoint(folder), read_hf_config(folder)
    found = find_family(state, config)
    assert found is not None and found.name == family
    return hf, found.model_config(state, config)


# HF RF-DETR reads a non-square grid's windows with the sides swapped (see
# tests/backbones/test_vit_rf_detr.py), so RF-DETR's whole model is compared square
WHOLE_SIZES = {"lw_detr": (48, 80), "rf_detr": (42, 42)}


@pytest.mark.parametrize("family", list(HF_MODELS))
def test_whole_model_equals_hugging_face(tmp_path, family):
    """A random tiny HF detector saved with save_pretrained: our model built from its
    config.json (the family's ``model_config``) loads it through ``load_model_weights`` and
    gives HF's logits, boxes and first-stage top-k (float64, eval)."""
    hf, cfg = _saved(family, tmp_path)
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, tmp_path)
    x = torch.randn(1, 3, *WHOLE_SIZES[family], dtype=torch.float64)
    with torch.no_grad():
        ref, ours = hf(pixel_values=x), model.head(model.extract_feat(x), None)
    _compare(ours, ref)


def test_config_json_settings_refused(tmp_path):
    """A model whose head is not LW-DETR's (boxes in logit space) or whose backbone windows
    differ from config.json's is refused, naming the arguments to set."""
    _, cfg = _saved("lw_detr", tmp_path)
    other = copy.deepcopy(cfg)
    other["head"]["decoder"]["box_param"] = "logit"
    with pytest.raises(CheckpointError, match="box_param='reparam'"):
        load_model_weights(MODELS.build(other), tmp_path)
    other = copy.deepcopy(cfg)
    other["backbone"]["num_windows"] = 3
    with pytest.raises(CheckpointError, match="num_windows=2"):
        load_model_weights(MODELS.build(other), tmp_path)


def test_rf_detr_small_config_is_the_published_architecture():
    """configs/_base_/models/rf-detr_small.py builds what lw_detr_model_config makes of
    RF-DETR-S's config.json (HF RfDetrConfig with roboflow's RFDETRSmallConfig values): the
    same tensors and shapes, 32.1 M parameters as published."""
    from visionfm.engine import load_config
    from visionfm.heads.detr.lw_detr_config import lw_detr_model_config

    config = transformers.RfDetrConfig(
        backbone_config=dict(
            model_type="rf_detr_dinov2",
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=6,
            patch_size=16,
            image_size=512,
            out_features=["stage3", "stage6", "stage9", "stage12"],
            num_windows=2,
        ),
        decoder_n_points=2,
        decoder_layers=3,
        num_labels=91,
    ).to_dict()
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(str(root / "configs/_base_/models/rf-detr_small.py"))
    with torch.device("meta"):
        ours = MODELS.build(cfg.model)
        published = MODELS.build(lw_detr_model_config(None, config))
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in published.state_dict().items()}
    assert round(sum(p.numel() for p in ours.parameters()) / 1e6, 1) == 32.1


def test_original_rf_detr_checkpoint_loads(tmp_path):
    """Roboflow's own checkpoint file (``torch.save({'model': state_dict})`` in the names RF-DETR
    folders store: ``backbone.0.encoder.encoder.*``, ``transformer.decoder.*`` with fused
    ``in_proj``, ``refpoint_embed``) loads through ``load_model_weights`` into the model built
    for its architecture and gives HF's outputs."""
    hf, cfg = _saved("rf_detr", tmp_path / "hf")
    state = read_checkpoint(tmp_path / "hf")
    assert any(k.startswith("transformer.decoder.") and "in_proj" in k for k in state)
    torch.save(dict(model=dict(state)), tmp_path / "rf-detr.pth")
    model = MODELS.build(cfg).double().eval()
    load_model_weights(model, tmp_path / "rf-detr.pth")
    x = torch.randn(1, 3, *WHOLE_SIZES["rf_detr"], dtype=torch.float64)
    with torch.no_grad():
        ref, ours = hf(pixel_values=x), model.head(model.extract_feat(x), None)
    _compare(ours, ref)


def test_finetune_on_other_classes(tmp_path):
    """The published folder into a model of 2 classes: ``load_from`` (fine-tuning) keeps every
    weight but the class layers (the decoder's and every group's first-stage class head), which
    keep their initial values; ``load_model_weights`` (testing) refuses it, naming
    num_classes."""
    from visionfm.engine.checkpoint import load_checkpoint_to_model, load_from_local_weights_only

    hf, cfg = _saved("lw_detr", tmp_path)
    cfg["head"]["num_classes"] = 2
    model = MODELS.build(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="num_classes"):
        load_model_weights(model, tmp_path)
    load_checkpoint_to_model(model, load_from_local_weights_only(str(tmp_path)))
    after = model.state_dict()
    reinit = [k for k in after if "cls_head" in k]
    assert len(reinit) == 2 * (1 + GROUPS)
    assert all(torch.equal(after[k], before[k]) for k in reinit)
    hf_query = hf.state_dict()["model.query_feat.weight"].float()
    assert torch.equal(after["head.queries.content.weight"], hf_query)


@pytest.mark.parametrize("family", list(HF_MODELS))
def test_layout_matches_its_family_only(tmp_path, family):
    """A stored LW-DETR / RF-DETR checkpoint, with or without its config.json, matches its
    own family and no other registered one."""
    from visionfm.models.published import families

    _saved(family, tmp_path)
    state, config = read_checkpoint(tmp_path), read_hf_config(tmp_path)
    for hf_config in (config, None):
        found = [f.name for f in families() if f.matches(state, hf_config)]
        assert found == [family]
