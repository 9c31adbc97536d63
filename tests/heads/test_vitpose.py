"""ViTPose heads: decoders, the UDP / DARK codec, loss weighting, flip testing, the RoI pose
head in a multi-head model, and equality with Hugging Face ``VitPoseForPoseEstimation``."""

from __future__ import annotations

import pytest
import torch
from mmengine.structures import InstanceData

from visionfm.data import DataSample
from visionfm.data.transforms import COCO_FLIP_PAIRS
from visionfm.heads.pose import (
    ClassicDecoder,
    SimpleDecoder,
    TopDownHeatmapHead,
    UDPHeatmapCodec,
    flip_heatmaps,
    load_vitpose_checkpoint,
)
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError

K = 17
INPUT_HW = (64, 48)
HEATMAP_HW = (32, 24)


def _keypoints(n: int, margin: float = 4.0, seed: int = 0) -> torch.Tensor:
    """(n, K, 3) float64 labelled keypoints at least ``margin`` px inside a 64 x 48 input."""
    g = torch.Generator().manual_seed(seed)
    h, w = INPUT_HW
    xy = torch.rand(n, K, 2, generator=g, dtype=torch.float64)
    xy = xy * torch.tensor([w - 2 * margin, h - 2 * margin], dtype=torch.float64) + margin
    return torch.cat((xy, torch.full((n, K, 1), 2.0, dtype=torch.float64)), -1)


def _mirror(kps: torch.Tensor, width: float) -> torch.Tensor:
    """Keypoints of the mirrored input: x -> W - x, left / right swapped."""
    order = list(range(K))
    for a, b in COCO_FLIP_PAIRS:
        order[a], order[b] = b, a
    out = kps[:, order].clone()
    out[..., 0] = width - out[..., 0]
    return out


def _pose_model(decoder: dict, flip_test: bool = True, **backbone) -> torch.nn.Module:
    torch.manual_seed(0)
    vit = dict(type="ViT", img_size=INPUT_HW, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    vit.update(class_token=False, **backbone)
    return MODELS.build(
        dict(
            type="TopDownPoseEstimator",
            backbone=vit,
            head=dict(type="TopDownHeatmapHead", decoder=decoder, sigma=1.5, flip_test=flip_test),
        )
    )


# ------------------------------------------------------------------------------ decoders
@pytest.mark.parametrize("kernels", [(4, 4), (3, 3), (2, 2)])
def test_classic_decoder_upsamples_by_four(kernels):
    dec = ClassicDecoder(32, K, deconv_channels=(16, 16), deconv_kernels=kernels)
    assert dec(torch.randn(2, 32, 8, 6)).shape == (2, K, 32, 24)


def test_simple_decoder_upsamples_by_scale_factor():
    assert SimpleDecoder(32, K, scale_factor=4)(torch.randn(2, 32, 8, 6)).shape == (2, K, 32, 24)


def test_classic_decoder_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="same length"):
        ClassicDecoder(32, K, deconv_channels=(16,), deconv_kernels=(4, 4))


# ------------------------------------------------------------------------------ codec
def test_udp_aligns_first_and_last_pixel_centres():
    codec = UDPHeatmapCodec(sigma=2.0)
    h, w = INPUT_HW
    xy = torch.tensor([[0.5, 0.5], [w - 0.5, h - 0.5]], dtype=torch.float64)
    uv = codec.to_heatmap(xy, INPUT_HW, HEATMAP_HW)
    assert torch.allclose(uv, torch.tensor([[0.0, 0.0], [23.0, 31.0]], dtype=torch.float64))
    assert torch.allclose(codec.to_input(uv, INPUT_HW, HEATMAP_HW), xy)


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_encode_decode_round_trip_is_sub_pixel(sigma):
    kps = _keypoints(6)
    exact = UDPHeatmapCodec(sigma, blur_kernel=0)
    heatmaps, weights = exact.encode(kps, INPUT_HW, HEATMAP_HW)
    assert heatmaps.shape == (6, K, *HEATMAP_HW) and bool((weights == 1).all())
    xy, scores = exact.decode(heatmaps, INPUT_HW)
    # the log of a Gaussian is quadratic: the Taylor step is exact
    assert (xy - kps[..., :2]).abs().max() < 1e-6
    assert bool((scores > 0.6).all())
    blurred, _ = UDPHeatmapCodec(sigma).decode(heatmaps, INPUT_HW)
    argmax, _ = UDPHeatmapCodec(sigma, refine=False).decode(heatmaps, INPUT_HW)
    err = (blurred - kps[..., :2]).norm(dim=-1)
    err_argmax = (argmax - kps[..., :2]).norm(dim=-1)
    assert err.mean() < 0.25 and err.mean() < 0.4 * err_argmax.mean()


def test_decode_refines_noisy_heatmaps():
    kps = _keypoints(20, seed=1)
    codec = UDPHeatmapCodec(2.0)
    heatmaps, _ = codec.encode(kps, INPUT_HW, HEATMAP_HW)
    noisy = heatmaps + 0.05 * torch.randn(
        heatmaps.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    refined, _ = codec.decode(noisy, INPUT_HW)
    argmax, _ = UDPHeatmapCodec(2.0, refine=False).decode(noisy, INPUT_HW)
    err = (refined - kps[..., :2]).norm(dim=-1).mean()
    assert err < 0.5 and err < (argmax - kps[..., :2]).norm(dim=-1).mean()


def test_target_weights_follow_visibility_and_extent():
    kps = _keypoints(1)
    kps[0, 3, 2] = 0  # unlabelled
    kps[0, 4, :2] = torch.tensor([-30.0, 10.0])  # far left of the crop
    kps[0, 5, :2] = torch.tensor([-1.0, 10.0])  # just outside: its Gaussian reaches in
    heatmaps, weights = UDPHeatmapCodec(1.5).encode(kps, INPUT_HW, HEATMAP_HW)
    assert weights[0, 3] == 0 and weights[0, 4] == 0 and weights[0, 5] == 1
    assert heatmaps[0, 3].abs().max() == 0 and heatmaps[0, 4].abs().max() == 0
    assert heatmaps[0, 5].max() > 0.1


def test_udp_flip_is_exact():
    """Heatmaps of the mirrored keypoints, flipped back, are the original ones: no shift."""
    codec = UDPHeatmapCodec(1.5)
    kps = _keypoints(3)
    heatmaps, _ = codec.encode(kps, INPUT_HW, HEATMAP_HW)
    mirrored, _ = codec.encode(_mirror(kps, INPUT_HW[1]), INPUT_HW, HEATMAP_HW)
    assert torch.allclose(flip_heatmaps(mirrored, COCO_FLIP_PAIRS), heatmaps, atol=1e-12)


def test_flip_heatmaps_rejects_bad_pairs():
    with pytest.raises(ValueError, match="out of range"):
        flip_heatmaps(torch.zeros(1, 3, 4, 4), [(1, 5)])


# ------------------------------------------------------------------------------ head
def _crop_sample(kps: torch.Tensor) -> DataSample:
    sample = DataSample(
        metainfo=dict(img_shape=INPUT_HW, batch_input_shape=INPUT_HW, bbox_score=0.9)
    )
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[0.0, 0.0, 48.0, 64.0]]), labels=torch.zeros(1).long(), keypoints=kps
    )
    return sample


def test_loss_ignores_unlabelled_keypoints_and_reaches_every_parameter():
    head = TopDownHeatmapHead(ClassicDecoder(32, K, (16,), (4,)), sigma=1.5)
    feats = {"block1": torch.randn(2, 32, 16, 12, requires_grad=True)}
    kps = _keypoints(2).float()
    loss = head.loss(feats, [_crop_sample(kps[:1]), _crop_sample(kps[1:])])["loss_kpt"]
    moved = kps.clone()
    moved[0, 2, :2] += 7.0
    moved[0, 2, 2] = 0  # unlabelled: wherever it is, the loss is the same
    kps[0, 2, 2] = 0
    same = head.loss(feats, [_crop_sample(kps[:1]), _crop_sample(kps[1:])])["loss_kpt"]
    moved_loss = head.loss(feats, [_crop_sample(moved[:1]), _crop_sample(kps[1:])])["loss_kpt"]
    assert torch.allclose(same, moved_loss) and not torch.allclose(loss, same)
    moved_loss.backward()
    assert all(p.grad is not None for p in head.parameters()) and feats["block1"].grad is not None


def test_loss_needs_one_instance_per_crop():
    head = TopDownHeatmapHead(ClassicDecoder(32, K, (16,), (4,)))
    sample = _crop_sample(_keypoints(1).float())
    sample.gt_instances = InstanceData(keypoints=_keypoints(2).float())
    with pytest.raises(ValueError, match="exactly one"):
        head.loss({"x": torch.randn(1, 32, 16, 12)}, [sample])


def test_flip_test_predictions_are_mirror_symmetric():
    """With flip testing, the mirrored crop's keypoints are the mirror image of the crop's."""
    model = (
        _pose_model(
            dict(
                type="ClassicDecoder",
                in_channels=32,
                out_channels=K,
                deconv_channels=(16,),
                deconv_kernels=(4,),
            )
        )
        .double()
        .eval()
    )
    x = torch.randn(1, 3, *INPUT_HW, dtype=torch.float64)
    both = torch.cat((x, x.flip(-1)))
    samples = [DataSample(metainfo=dict(img_shape=INPUT_HW)) for _ in range(2)]
    with torch.no_grad():
        preds = model(both, samples, mode="predict")
    a, b = (p.pred_instances.keypoints for p in preds)  # (1, K, 3) in input pixels
    assert torch.allclose(_mirror(a, INPUT_HW[1])[..., :2], b[..., :2], atol=1e-6)
    assert torch.allclose(_mirror(a, INPUT_HW[1])[..., 2], b[..., 2], atol=1e-9)
    model.head.flip_test = False
    with torch.no_grad():
        plain = model(
            both, [DataSample(metainfo=dict(img_shape=INPUT_HW)) for _ in range(2)], mode="predict"
        )
    c, d = (p.pred_instances.keypoints for p in plain)
    assert not torch.allclose(_mirror(c, INPUT_HW[1])[..., 2], d[..., 2], atol=1e-6)


def test_predictions_go_back_to_the_original_image():
    model = _pose_model(dict(type="SimpleDecoder", in_channels=32, out_channels=K)).eval()
    # crop = original scaled by 2 and shifted by (10, 20)
    matrix = [[2.0, 0.0, -10.0], [0.0, 2.0, -20.0], [0.0, 0.0, 1.0]]
    meta = dict(img_shape=INPUT_HW, homography_matrix=matrix, bbox=[5, 10, 29, 42], bbox_score=0.8)
    with torch.no_grad():
        pred = model(torch.randn(1, 3, *INPUT_HW), [DataSample(metainfo=meta)], mode="predict")[0]
        heatmaps = model(torch.randn(1, 3, *INPUT_HW), mode="tensor")
    inst = pred.pred_instances
    assert heatmaps.shape == (1, K, 32, 24)
    assert inst.keypoints.shape == (1, K, 3) and inst.scores.tolist() == pytest.approx([0.8])
    assert inst.bboxes.tolist() == [[5.0, 10.0, 29.0, 42.0]]
    xy = inst.keypoints[0, :, :2]
    assert bool(((xy[:, 0] >= 5) & (xy[:, 0] <= 29) & (xy[:, 1] >= 10) & (xy[:, 1] <= 42)).all())


# ------------------------------------------------------------------------------ multi-head
def test_multi_head_config_trains_and_predicts_keypoints():
    from visionfm.engine import load_config

    cfg = load_config("configs/vitpose/dino-roipose_vit-t_synthetic.py")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    h, w = 96, 128
    sample = DataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
    kps = torch.cat((torch.rand(2, K, 2) * 40 + 20, torch.full((2, K, 1), 2.0)), -1)
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10.0, 10.0, 60.0, 90.0], [70.0, 5.0, 120.0, 60.0]]),
        labels=torch.tensor([4, 1]),  # a person and a square
        keypoints=kps,
    )
    data = model.data_preprocessor(
        dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8)], data_samples=[sample]),
        True,
    )
    losses = model(**data, mode="loss")
    assert "pose.loss_kpt" in losses and "det.loss_cls" in losses
    losses["pose.loss_kpt"].backward()
    assert model.heads["pose"].decoder.final.weight.grad is not None
    model.eval()
    model.heads["pose"].score_thr = 0.0  # random weights: low scores
    # random heatmaps are ~1e-5 of either sign (their sign depends on the build order of the
    # parts); a positive bias makes a decoded keypoint's confidence tell from a zero-filled one
    torch.nn.init.constant_(model.heads["pose"].decoder.final.bias, 0.1)
    with torch.no_grad():
        pred = model(**data, mode="predict")[0].pred_instances
    assert pred.keypoints.shape == (len(pred), K, 3)
    person = pred.labels == 4
    assert 0 < int(person.sum()) and bool((pred.keypoints[~person] == 0).all())
    assert bool((pred.keypoints[person, :, 2] > 0).all())  # confidences of decoded heatmaps


def test_roi_pose_head_alone_uses_the_whole_image():
    head = MODELS.build(
        dict(
            type="RoIPoseHead",
            person_label=0,
            decoder=dict(type="SimpleDecoder", in_channels=8, out_channels=K),
        )
    ).eval()
    sample = DataSample(
        metainfo=dict(img_shape=(64, 48), ori_shape=(32, 24), scale_factor=(2.0, 2.0))
    )
    pred = head.predict({"p": torch.randn(1, 8, 8, 6)}, [sample])[0].pred_instances
    assert pred.bboxes.tolist() == [[0.0, 0.0, 24.0, 32.0]] and pred.keypoints.shape == (1, K, 3)


# ------------------------------------------------------------------------------ HF weights
@pytest.mark.parametrize("simple", [False, True], ids=["classic", "simple"])
def test_hugging_face_vitpose_gives_the_same_heatmaps(simple):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    # a non-default input size (HF's default is 256 x 192) and patch grid (4 x 3)
    backbone_cfg = transformers.VitPoseBackboneConfig(
        image_size=[64, 48], patch_size=[16, 16], hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, out_indices=[2],
    )  # fmt: skip
    cfg = transformers.VitPoseConfig(
        backbone_config=backbone_cfg, use_simple_decoder=simple, num_labels=K
    )
    hf = transformers.VitPoseForPoseEstimation(cfg).double().eval()
    with torch.no_grad():  # random weights everywhere, incl. norms and BN statistics
        for p in hf.parameters():
            p.normal_(0, 0.2)
        for name, b in hf.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.normal_()
    decoder = (
        dict(type="SimpleDecoder", in_channels=32, out_channels=K)
        if simple
        else dict(type="ClassicDecoder", in_channels=32, out_channels=K)
    )
    ours = MODELS.build(
        dict(
            type="TopDownPoseEstimator",
            backbone=dict(
                type="ViT", img_size=(64, 48), patch_size=16, embed_dim=32, depth=2, num_heads=2,
                class_token=False, embed_layer="patch_pad2", norm_layer="LN_1e-12",
            ),
            head=dict(type="TopDownHeatmapHead", decoder=decoder),
        )
    ).double().eval()  # fmt: skip
    reports = load_vitpose_checkpoint(ours, hf.state_dict())
    assert reports["backbone"].ok and reports["head"].ok
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    with torch.no_grad():
        expected = hf(pixel_values=x).heatmaps
        got = ours(x, mode="tensor")
    assert got.shape == expected.shape == (2, K, 16, 12)
    assert (got - expected).abs().max() <= 1e-5


def test_vitpose_checkpoint_errors_are_actionable():
    model = _pose_model(dict(type="SimpleDecoder", in_channels=32, out_channels=K), patch_size=16)
    sd = {
        "backbone.embeddings.patch_embeddings.projection.weight": torch.zeros(32, 3, 16, 16),
        "backbone.embeddings.position_embeddings": torch.zeros(1, 13, 32),
        "head.deconv1.weight": torch.zeros(32, 256, 4, 4),
    }
    with pytest.raises(CheckpointError, match="classic decoder"):
        load_vitpose_checkpoint(model, sd)
    with pytest.raises(CheckpointError, match="not a ViTPose checkpoint"):
        load_vitpose_checkpoint(model, {"foo.weight": torch.zeros(1)})


def test_original_vitpose_repo_layout_loads():
    """mmpose-0.x names (``last_norm``, ``keypoint_head.deconv_layers``) and a pos_embed with
    the class slot load into an identical model."""
    decoder = dict(type="ClassicDecoder", in_channels=32, out_channels=K, deconv_channels=(16, 16))
    source = _pose_model(decoder, patch_size=16, embed_layer="patch_pad2").eval()
    sd = {}
    for name, tensor in source.state_dict().items():
        name = name.replace("backbone.norm.", "backbone.last_norm.")
        name = name.replace("head.decoder.deconv.", "keypoint_head.deconv_layers.")
        sd[name.replace("head.decoder.final.", "keypoint_head.final_layer.")] = tensor
    grid = sd.pop("backbone.pos_embed").flatten(1, 2)  # (1, 12, C)
    slot = torch.randn(1, 1, 32)
    sd["backbone.pos_embed"] = torch.cat((slot, grid - slot), 1)  # folded back: grid
    torch.manual_seed(1)
    target = _pose_model(decoder, patch_size=16, embed_layer="patch_pad2").eval()
    reports = load_vitpose_checkpoint(target, sd)
    assert reports["backbone"].source_format == "ViTPose (original repo)" and reports["head"].ok
    x = torch.randn(1, 3, *INPUT_HW)
    with torch.no_grad():
        assert torch.allclose(target(x, mode="tensor"), source(x, mode="tensor"), atol=1e-5)
