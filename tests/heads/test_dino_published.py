"""Published DINO checkpoints (IDEA-Research/DINO ``checkpoint0011_4scale.pth``, detrex
``dino_r50_4scale_12ep.pth``) load strictly into TaskModel(TimmBackbone ResNet, DETRHead).

No installed library builds these models, so the test writes their state dicts itself: small
module trees with THEIR structure (torchvision's ResNet under ``backbone.0.body``, or its
detectron2 names; ``nn.MultiheadAttention`` decoder self-attention; the class / box heads as
one module listed under every decoder layer and under ``transformer.decoder``, as their
``state_dict()`` lists a shared module), filled with random values. Where a hand check is
possible, the loaded parts are run against those modules (float64)."""

from __future__ import annotations

import argparse
import copy

import pytest
import torch
import torchvision
from mmengine.structures import InstanceData
from torch import nn

from visionfm.data import DataSample
from visionfm.engine.checkpoint import load_model_weights
from visionfm.heads.detr import DetrDecoder
from visionfm.heads.detr.convert_dino import convert_dino_checkpoint, dino_layout, dino_model_config
from visionfm.heads.detr.dino_config import dino_model
from visionfm.models.published import find_family
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, load_converted, read_checkpoint

C, HEADS, POINTS, FFN, QUERIES, CLASSES, ENC, DEC = 32, 8, 2, 64, 30, 7, 1, 2
RESNET_DEPTHS = (1, 1, 1, 1)  # a one-block-per-stage ResNet-50 (Bottleneck) keeps it fast


# ---------------------------------------------------------------- their module structure
def _module(**children) -> nn.Module:
    m = nn.Module()
    for name, child in children.items():
        setattr(m, name, child)
    return m


def _mlp(*dims) -> nn.Module:  # their MLP: .layers of Linear
    return _module(layers=nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])))


def _ms_deform(levels: int) -> nn.Module:  # MSDeformAttn / MultiScaleDeformableAttention
    return _module(
        sampling_offsets=nn.Linear(C, HEADS * levels * POINTS * 2),
        attention_weights=nn.Linear(C, HEADS * levels * POINTS),
        value_proj=nn.Linear(C, C),
        output_proj=nn.Linear(C, C),
    )


def _resnet() -> nn.Module:
    """torchvision's ResNet (Bottleneck) as DINO's IntermediateLayerGetter keeps it: no fc."""
    body = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, RESNET_DEPTHS)
    del body.fc
    return body


def _input_proj(levels: int) -> nn.ModuleList:
    channels = [512, 1024, 2048][-min(levels, 3) :] if levels <= 4 else [256, 512, 1024, 2048]
    convs = [nn.Sequential(nn.Conv2d(c, C, 1), nn.GroupNorm(32, C)) for c in channels]
    for i in range(levels - len(channels)):
        cin = channels[-1] if i == 0 else C
        convs.append(nn.Sequential(nn.Conv2d(cin, C, 3, 2, 1), nn.GroupNorm(32, C)))
    return nn.ModuleList(convs)


def _heads(share: bool, num: int, classes: int = CLASSES) -> tuple[nn.ModuleList, nn.ModuleList]:
    cls, box = nn.Linear(C, classes), _mlp(C, C, C, 4)
    if share:
        return nn.ModuleList([cls] * num), nn.ModuleList([box] * num)
    return (
        nn.ModuleList(copy.deepcopy(cls) for _ in range(num)),
        nn.ModuleList(copy.deepcopy(box) for _ in range(num)),
    )


def idea_dino(levels: int = 4, share: bool = True, classes: int = CLASSES) -> nn.Module:
    """IDEA-Research/DINO's DINO module tree (models/dino/dino.py, deformable_transformer.py)."""
    enc = _module(
        self_attn=_ms_deform(levels), norm1=nn.LayerNorm(C), linear1=nn.Linear(C, FFN),
        linear2=nn.Linear(FFN, C), norm2=nn.LayerNorm(C),
    )  # fmt: skip
    dec = _module(
        cross_attn=_ms_deform(levels), norm1=nn.LayerNorm(C),
        self_attn=nn.MultiheadAttention(C, HEADS), norm2=nn.LayerNorm(C),
        linear1=nn.Linear(C, FFN), linear2=nn.Linear(FFN, C), norm3=nn.LayerNorm(C),
    )  # fmt: skip
    class_embed, bbox_embed = _heads(share, DEC, classes)
    decoder = _module(
        layers=nn.ModuleList(copy.deepcopy(dec) for _ in range(DEC)),
        norm=nn.LayerNorm(C),
        ref_point_head=_mlp(2 * C, C, C),
        bbox_embed=bbox_embed,
        class_embed=class_embed,
    )
    transformer = _module(
        encoder=_module(layers=nn.ModuleList(copy.deepcopy(enc) for _ in range(ENC))),
        decoder=decoder,
        level_embed=nn.Parameter(torch.empty(levels, C)),
        tgt_embed=nn.Embedding(QUERIES, C),
        enc_output=nn.Linear(C, C),
        enc_output_norm=nn.LayerNorm(C),
        enc_out_class_embed=nn.Linear(C, classes),
        enc_out_bbox_embed=_mlp(C, C, C, 4),
    )
    return _fill(
        _module(
            transformer=transformer,
            label_enc=nn.Embedding(classes + 1, C),  # dn_labelbook_size + 1
            input_proj=_input_proj(levels),
            backbone=nn.ModuleList([_module(body=_resnet())]),
            class_embed=class_embed,
            bbox_embed=bbox_embed,
        )
    )


def detrex_dino() -> nn.Module:
    """detrex's DINO module tree (projects/dino/modeling, detrex.layers); its backbone is
    :func:`_resnet` (written in detectron2's names by :func:`detrex_state`)."""
    enc = _module(
        attentions=nn.ModuleList([_ms_deform(4)]),
        ffns=nn.ModuleList([_module(layers=nn.Sequential(
            nn.Sequential(nn.Linear(C, FFN), nn.ReLU(), nn.Dropout()), nn.Linear(FFN, C),
            nn.Dropout()))]),
        norms=nn.ModuleList([nn.LayerNorm(C), nn.LayerNorm(C)]),
    )  # fmt: skip
    dec = _module(
        attentions=nn.ModuleList(
            [_module(attn=nn.MultiheadAttention(C, HEADS, batch_first=True)), _ms_deform(4)]
        ),
        ffns=copy.deepcopy(enc.ffns),
        norms=nn.ModuleList([nn.LayerNorm(C) for _ in range(3)]),
    )
    class_embed, bbox_embed = _heads(False, DEC + 1)  # + the two-stage proposals' heads
    decoder = _module(
        layers=nn.ModuleList(copy.deepcopy(dec) for _ in range(DEC)),
        ref_point_head=_mlp(2 * C, C, C),
        norm=nn.LayerNorm(C),
        class_embed=class_embed,
        bbox_embed=bbox_embed,
    )
    transformer = _module(
        encoder=_module(layers=nn.ModuleList(copy.deepcopy(enc) for _ in range(ENC))),
        decoder=decoder,
        level_embeds=nn.Parameter(torch.empty(4, C)),
        tgt_embed=nn.Embedding(QUERIES, C),
        enc_output=nn.Linear(C, C),
        enc_output_norm=nn.LayerNorm(C),
    )
    proj = _input_proj(4)  # ChannelMapper: convs.{i} / extra_convs.{i} with .conv / .norm
    neck = _module(
        convs=nn.ModuleList(_module(conv=p[0], norm=p[1]) for p in proj[:3]),
        extra_convs=nn.ModuleList([_module(conv=proj[3][0], norm=proj[3][1])]),
    )
    return _fill(
        _module(
            backbone=_resnet(),
            neck=neck,
            transformer=transformer,
            class_embed=class_embed,
            bbox_embed=bbox_embed,
            label_enc=nn.Embedding(CLASSES, C),  # num_classes rows
        )
    )


def _fill(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random values everywhere (matrices scaled by fan-in so the ResNet stays finite),
    batch-norm statistics included; float64, eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 4
            p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.double().eval()


def _frozen_bn(sd: dict) -> dict:
    """Their FrozenBatchNorm2d keeps no num_batches_tracked."""
    return {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def detrex_state(model: nn.Module) -> dict:
    """``model.state_dict()`` with the torchvision ResNet under detectron2's names
    (``stem.conv1(.norm)``, ``res{s}.{b}.conv{j}(.norm)``, ``.shortcut(.norm)``)."""
    out = {}
    for name, tensor in _frozen_bn(model.state_dict()).items():
        if name.startswith("backbone."):
            rest = name[len("backbone.") :]
            rest = rest.replace("conv1.", "stem.conv1.", 1) if rest.startswith("conv1.") else rest
            rest = rest.replace("bn1.", "stem.conv1.norm.", 1) if rest.startswith("bn1.") else rest
            for j in (1, 2, 3):
                rest = rest.replace(f".bn{j}.", f".conv{j}.norm.")
            rest = rest.replace(".downsample.0.", ".shortcut.").replace(
                ".downsample.1.", ".shortcut.norm."
            )
            if rest.startswith("layer"):
                rest = f"res{int(rest[5]) + 1}{rest[6:]}"
            name = "backbone." + rest
        out[name] = tensor
    return out


# ---------------------------------------------------------------- our models
def _ours(layout: str, levels: int = 4, **changes) -> nn.Module:
    """Our model of the tiny architecture, configured as ``layout`` runs."""
    idea = layout == "idea"
    names = ["p3", "p4", "p5"] if levels <= 4 else ["p2", "p3", "p4", "p5"]
    channels = {"p2": 256, "p3": 512, "p4": 1024, "p5": 2048}
    args = dict(
        num_classes=CLASSES,
        embed_dims=C,
        backbone=dict(
            model_name="resnet50", layers=RESNET_DEPTHS, out_indices=tuple(range(5 - len(names), 5))
        ),
        in_channels={n: channels[n] for n in names},
        strides={n: 2 ** int(n[1]) for n in names},
        num_feature_levels=levels,
        encoder_layers=ENC,
        decoder_layers=DEC,
        ffn_dims=FFN,
        num_heads=HEADS,
        num_points=POINTS,
        num_queries=QUERIES,
        share_pred_heads=idea,
        temperature=20 if idea else 10000,
        offset=0.0 if idea else -0.5,
    )
    return MODELS.build(dino_model(**{**args, **changes})).double().eval()


def _sample(h: int = 75, w: int = 101) -> DataSample:
    sample = DataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[5.0, 6.0, 40.0, 50.0]]), labels=torch.tensor([3])
    )
    return sample


def _outputs(model: nn.Module) -> dict:
    gen = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 255, (3, 75, 101), generator=gen).byte()]
    batch = model.data_preprocessor(dict(inputs=images, data_samples=[_sample()]), False)
    with torch.no_grad():
        feats = model.backbone(batch["inputs"].double())
        return model.head(feats, batch["data_samples"])


def _torchvision_levels(body: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """layer2..layer4 outputs of torchvision's ResNet (eval batch norm = frozen batch norm)."""
    x = body.maxpool(body.relu(body.bn1(body.conv1(x))))
    outs = []
    for stage in (body.layer1, body.layer2, body.layer3, body.layer4):
        x = stage(x)
        outs.append(x)
    return outs[1:]


def _check_parts(model, self_attns, input_proj, body) -> None:
    """The first decoder layer's self-attention, the input projection and the backbone give
    what their modules give with the original weights."""
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 6, C, generator=gen).double() for _ in range(3))
    theirs = self_attns[0]
    ref = theirs(q, k, v)[0] if theirs.batch_first else theirs(*(t.transpose(0, 1) for t in (q, k, v)))[0].transpose(0, 1)  # fmt: skip
    ours = model.head.decoder.layers[0].self_attn(q, k, v)
    assert (ours - ref).abs().max() < 1e-12
    feats = {
        "p3": torch.randn(1, 512, 10, 13, generator=gen).double(),
        "p4": torch.randn(1, 1024, 5, 7, generator=gen).double(),
        "p5": torch.randn(1, 2048, 3, 4, generator=gen).double(),
    }
    projected = list(model.head.input_proj(feats).values())
    expected = [p(f) for p, f in zip(input_proj, feats.values())] + [input_proj[3](feats["p5"])]
    assert len(projected) == 4
    assert max((a - b).abs().max().item() for a, b in zip(projected, expected)) < 1e-12
    image = torch.randn(1, 3, 75, 101, generator=gen).double()
    ours = list(model.backbone(image).values())
    ref = _torchvision_levels(body, image)
    assert max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, ref)) < 1e-12


IDEA_ARGS = argparse.Namespace(
    nheads=HEADS, pe_temperatureH=20, pe_temperatureW=20, dn_number=100, dn_box_noise_scale=0.4,
    dec_pred_class_embed_share=True, dilation=False, num_classes=CLASSES,
)  # fmt: skip


def test_idea_layout_loads_strictly(tmp_path):
    theirs = idea_dino()
    sd = _frozen_bn(theirs.state_dict())
    assert {"class_embed.1.weight", "transformer.decoder.bbox_embed.1.layers.2.bias"} <= set(sd)
    assert dino_layout(sd) == "IDEA-Research DINO" and find_family(sd).name == "dino"
    path = tmp_path / "checkpoint0011_4scale.pth"
    torch.save({"model": sd, "args": IDEA_ARGS}, path)
    assert read_checkpoint(path).args["nheads"] == HEADS
    model = _ours("idea")
    load_model_weights(model, str(path))
    head, t = model.head, theirs.transformer
    fused = t.decoder.layers[1].self_attn.in_proj_weight
    attn = head.decoder.layers[1].self_attn
    for i, proj in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):  # q, k, v order
        assert torch.equal(proj.weight, fused[i * C : (i + 1) * C])
    assert torch.equal(head.level_embed, t.level_embed)
    assert torch.equal(head.queries.content.weight, t.tgt_embed.weight)
    assert torch.equal(head.denoising.label_embed.weight, theirs.label_enc.weight[:CLASSES])
    assert len(head.cls_heads) == 1 and torch.equal(
        head.cls_heads[0].weight, sd["class_embed.0.weight"]
    )
    assert torch.equal(head.proposals.box_head.layers[2].bias, t.enc_out_bbox_embed.layers[2].bias)
    assert torch.equal(head.decoder.layers[0].norm1.weight, t.decoder.layers[0].norm2.weight)
    _check_parts(model, [t.decoder.layers[0].self_attn], theirs.input_proj, theirs.backbone[0].body)
    assert torch.isfinite(_outputs(model)["boxes"]).all()
    # the pickled args are compared too: settings the tensors do not show
    torch.save({"model": sd, "args": argparse.Namespace(**{**vars(IDEA_ARGS), "nheads": 4})}, path)
    with pytest.raises(CheckpointError, match="nheads: 4 in config.json, 8 in the model"):
        load_model_weights(_ours("idea"), str(path))


def test_detrex_layout_loads_strictly(tmp_path):
    theirs = detrex_dino()
    sd = detrex_state(theirs)
    assert {"backbone.stem.conv1.norm.running_var", "backbone.res3.0.shortcut.norm.bias",
            "neck.extra_convs.0.conv.weight", "transformer.decoder.class_embed.2.bias"} <= set(sd)  # fmt: skip
    assert dino_layout(sd) == "detrex DINO" and find_family(sd).name == "dino"
    path = tmp_path / "dino_r50_4scale_12ep.pth"
    torch.save({"model": sd}, path)
    model = _ours("detrex")
    load_model_weights(model, str(path))
    head, t = model.head, theirs.transformer
    assert torch.equal(head.level_embed, t.level_embeds)
    assert torch.equal(head.denoising.label_embed.weight, theirs.label_enc.weight)
    assert torch.equal(head.cls_heads[1].weight, theirs.class_embed[1].weight)
    assert torch.equal(head.proposals.cls_head.weight, theirs.class_embed[DEC].weight)
    assert torch.equal(
        head.proposals.box_head.layers[0].weight, theirs.bbox_embed[DEC].layers[0].weight
    )
    assert torch.equal(head.decoder.layers[1].norm2.weight, t.decoder.layers[1].norms[1].weight)
    neck = theirs.neck
    proj = [nn.Sequential(c.conv, c.norm) for c in (*neck.convs, *neck.extra_convs)]
    _check_parts(model, [t.decoder.layers[0].attentions[0].attn], proj, theirs.backbone)
    assert torch.isfinite(_outputs(model)["boxes"]).all()


@pytest.mark.parametrize("layout", ["idea", "detrex"])
def test_model_config_builds_the_checkpoint_architecture(tmp_path, layout):
    """dino_model_config (from the tensors and args) builds a model that loads strictly and
    runs as the hand-configured one; it trains (denoising included)."""
    if layout == "idea":
        state = read_checkpoint({"model": _frozen_bn(idea_dino().state_dict()), "args": IDEA_ARGS})
    else:
        state = read_checkpoint({"model": detrex_state(detrex_dino())})
    config = dino_model_config(state)
    built = MODELS.build(config).double().eval()
    load_converted(built, convert_dino_checkpoint(state, built), strict=True)
    reference = _ours(layout)
    load_converted(reference, convert_dino_checkpoint(state, reference), strict=True)
    ours, ref = _outputs(built), _outputs(reference)
    assert torch.equal(ours["logits"], ref["logits"]) and torch.equal(ours["boxes"], ref["boxes"])
    built.train()
    losses = built(*_loss_inputs(built), mode="loss")
    assert "dn_loss_cls" in losses and all(torch.isfinite(v) for v in losses.values())


def _loss_inputs(model):
    images = [
        torch.randint(0, 255, (3, 75, 101), generator=torch.Generator().manual_seed(4)).byte()
    ]
    batch = model.data_preprocessor(dict(inputs=images, data_samples=[_sample()]), True)
    return batch["inputs"].double(), batch["data_samples"]


def test_tied_copies():
    sd = _frozen_bn(idea_dino().state_dict())
    bad = dict(sd, **{"transformer.decoder.bbox_embed.1.layers.0.bias": sd["bbox_embed.1.layers.0.bias"] + 1})  # fmt: skip
    with pytest.raises(CheckpointError, match="differs from its tied copy"):
        convert_dino_checkpoint(bad, _ours("idea"))
    per_layer = _frozen_bn(idea_dino(share=False).state_dict())
    with pytest.raises(CheckpointError, match="share_pred_heads=False"):
        convert_dino_checkpoint(per_layer, _ours("idea"))
    model = _ours("idea", share_pred_heads=False)
    args = read_checkpoint({"model": per_layer, "args": argparse.Namespace(dec_pred_class_embed_share=False)})  # fmt: skip
    load_converted(model, convert_dino_checkpoint(args, model), strict=True)
    assert torch.equal(
        model.head.box_heads[1].layers[0].weight, per_layer["bbox_embed.1.layers.0.weight"]
    )


def test_bad_input():
    five = _frozen_bn(idea_dino(levels=5).state_dict())
    with pytest.raises(CheckpointError, match=r"num_feature_levels=5.*out_indices=\(1, 2, 3, 4\)"):
        convert_dino_checkpoint(five, _ours("idea"))
    five_model = _ours("idea", levels=5)
    load_converted(five_model, convert_dino_checkpoint(five, five_model), strict=True)
    sd = _frozen_bn(idea_dino().state_dict())
    with pytest.raises(CheckpointError, match=rf"head.num_classes={CLASSES}"):
        convert_dino_checkpoint(sd, _ours("idea", num_classes=80))
    with pytest.raises(CheckpointError, match="temperature=20"):
        convert_dino_checkpoint(sd, _ours("idea", temperature=10000))
    with pytest.raises(CheckpointError, match="share_pred_heads=False"):
        convert_dino_checkpoint(detrex_state(detrex_dino()), _ours("detrex", share_pred_heads=True))
    refpoints = dict(sd, **{"transformer.refpoint_embed.weight": torch.zeros(QUERIES, 4)})
    with pytest.raises(CheckpointError, match="learned reference boxes"):
        convert_dino_checkpoint(refpoints, _ours("idea"))
    with pytest.raises(CheckpointError, match="not a parameter of the IDEA-Research DINO layout"):
        convert_dino_checkpoint(dict(sd, **{"transformer.encoder.layers.0.gate.weight": sd["label_enc.weight"]}), _ours("idea"))  # fmt: skip


def test_coco_category_rows():
    """A 91-row checkpoint (COCO category ids) loads into 91 classes as it is, and into COCO's
    80 categories by their ids' rows (class heads, proposals' head, denoising labels)."""
    from visionfm.models.published_config import COCO_CATEGORY_NAMES

    sd = _frozen_bn(idea_dino(classes=91).state_dict())
    ids = sorted(COCO_CATEGORY_NAMES)
    model = _ours("idea", num_classes=80)
    load_converted(model, convert_dino_checkpoint(sd, model), strict=True)
    head = model.head
    assert torch.equal(head.cls_heads[0].bias, sd["class_embed.0.bias"][ids])
    assert torch.equal(
        head.proposals.cls_head.weight, sd["transformer.enc_out_class_embed.weight"][ids]
    )
    assert torch.equal(head.denoising.label_embed.weight, sd["label_enc.weight"][ids])
    assert head.cls_heads[0].bias[0] == sd["class_embed.0.bias"][1]  # person: id 1
    full = _ours("idea", num_classes=91)
    load_converted(full, convert_dino_checkpoint(sd, full), strict=True)
    assert torch.equal(full.head.denoising.label_embed.weight, sd["label_enc.weight"][:91])


def test_base_config_is_the_published_architecture():
    """configs/_base_/models/dino_r50.py builds what dino_model() (and dino_model_config for
    the published IDEA-Research checkpoint) builds."""
    from pathlib import Path

    from mmengine import Config

    path = Path(__file__).resolve().parents[2] / "configs/_base_/models/dino_r50.py"
    assert Config.fromfile(str(path)).model.to_dict() == dino_model()


def test_query_pos_frame():
    """DetrDecoder(query_pos_frame='padded') (DINO's code) equals 'image' on an unpadded
    image and differs on a padded one; unknown frames are refused."""
    model = _ours("idea")
    sd = _frozen_bn(idea_dino().state_dict())
    load_converted(model, convert_dino_checkpoint(sd, model), strict=True)
    gen = torch.Generator().manual_seed(5)
    batch = torch.randn(2, 3, 80, 101, generator=gen).double()
    shapes = [(80, 101), (64, 72)]  # the second image padded at the bottom / right
    samples = [
        DataSample(metainfo=dict(img_shape=s, ori_shape=s, batch_input_shape=(80, 101)))
        for s in shapes
    ]
    outs = {}
    with torch.no_grad():
        feats = model.backbone(batch)
        for frame in ("padded", "image"):
            model.head.decoder.query_pos_frame = frame
            outs[frame] = model.head(feats, samples)["boxes"]
    assert torch.equal(outs["padded"][:, 0], outs["image"][:, 0])
    assert (outs["padded"][:, 1] - outs["image"][:, 1]).abs().max() > 1e-6  # float64 noise: 1e-15
    with pytest.raises(ValueError, match="query_pos_frame"):
        DetrDecoder(copy.deepcopy(model.head.decoder.layers[0]), 1, query_pos_frame="level0")
