"""Export of the dense and keypoint families from their synthetic configs (random weights,
2 backbone blocks, DPT 4): semantic segmentation (SegFormer; UperNet at one fixed size),
panoptic segmentation (Mask2Former: deformable pixel decoder, masked attention), depth (DPT)
and top-down pose (ViTPose, flip test: the network gives the mirrored crops' heatmaps too).
The ONNX file in ONNX Runtime and the ``torch.export`` program, both from one trace and
reloaded, against the eager network and the model's own ``predict`` on batches of two sizes
other than the traced one: ViTPose, SegFormer, DPT, Mask2Former and UperNet (fixed size).

Tolerances: raw maps / heatmaps / logits 1e-4 absolute + 1e-4 relative; semantic labels equal
wherever the two best logits differ by more than 1e-3; panoptic and semantic maps of
Mask2Former (argmaxes of mask x class products) on 99 % of the pixels; depth 1e-4;
keypoints 1e-2 px, their scores 1e-4.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _helpers import write_tiny_bert
from _tiny_models import tiny_vit_grounding
from mmengine.config import Config

from visionfm.data import DataSample
from visionfm.engine.config import load_config
from visionfm.export import ExportError, ExportNetwork, export_model, open_backend
from visionfm.registry import MODELS

# config, its options, the batches to compare (sizes of the images in each)
FAMILIES = {
    "segformer": ("configs/segformer/segformer_vit-t_synthetic.py", {}, [((64, 96),), ((96, 64),)]),
    "dpt": (
        "configs/dpt/dpt_vit-t_synthetic.py",
        {"model.backbone.depth": 4},  # DPT reads 4 blocks
        [((64, 96), (48, 80)), ((96, 64),)],
    ),
    "vitpose": ("configs/vitpose/vitpose_vit-t_synthetic.py", {}, [((64, 48),) * 3, ((96, 72),)]),
    "mask2former": (
        "configs/mask2former/mask2former_vit-t_synthetic-panoptic.py",
        {},
        [((64, 96), (48, 80)), ((96, 64),)],
    ),
}
UPERNET = "configs/upernet/upernet_vit-t_synthetic.py"
WEIGHT_SCALE = {"dpt": 0.05}  # DPT's sigmoid depth saturates at 0.2 (most pixels at 0 or 10 m)


def _model(config: str, options: dict, scale: float = 0.2) -> torch.nn.Module:
    """The config's model, random weights of std ``scale`` (biases, norms: 0.5)."""
    cfg = load_config(config, {"model.backbone.depth": 2, **options})
    model = MODELS.build(cfg.model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (scale if p.dim() > 1 else 0.5))
    return model.eval()


def _batch(model, sizes) -> dict:
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8) for h, w in sizes]
    samples = [DataSample(metainfo=dict(img_shape=s, ori_shape=s)) for s in sizes]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), False)


def _assert_same_predictions(ours: DataSample, theirs: DataSample) -> None:
    if "pred_panoptic_seg" in theirs:  # Mask2Former: argmaxes over logits equal to 1e-4
        same = ours.pred_panoptic_seg == theirs.pred_panoptic_seg
        assert same.float().mean() > 0.99, same.float().mean()
        assert (ours.pred_sem_seg == theirs.pred_sem_seg).float().mean() > 0.99
    elif "seg_logits" in theirs:
        logits = theirs.seg_logits
        top2 = logits.topk(2, dim=0).values
        clear = (top2[0] - top2[1]) > 1e-3
        assert torch.equal(ours.pred_sem_seg[clear], theirs.pred_sem_seg[clear])
        torch.testing.assert_close(ours.seg_logits, logits, atol=1e-4, rtol=0)
    elif "pred_depth" in theirs or "pred_disparity" in theirs:
        key = "pred_depth" if "pred_depth" in theirs else "pred_disparity"
        torch.testing.assert_close(ours.get(key), theirs.get(key), atol=1e-4, rtol=1e-4)
    else:
        a, b = ours.pred_instances, theirs.pred_instances
        torch.testing.assert_close(a.keypoints[..., :2], b.keypoints[..., :2], atol=1e-2, rtol=0)
        torch.testing.assert_close(a.keypoints[..., 2], b.keypoints[..., 2], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_exported_network_equals_eager_on_two_sizes(name, tmp_path):
    """Both files from one trace, each against the eager network and ``predict``."""
    config, options, batches = FAMILIES[name]
    model = _model(config, options, WEIGHT_SCALE.get(name, 0.2))
    network = ExportNetwork(model)
    paths = [str(tmp_path / "model.onnx"), str(tmp_path / "model.pt2")]
    meta = export_model(model, paths, size=(64, 48) if name == "vitpose" else (64, 96))
    assert meta["static_dims"] == {"images": [], "image_sizes": []}, "batch, H, W free"
    for path in paths:
        backend = open_backend(path)
        for sizes in batches:
            data = _batch(model, sizes)
            images, samples = data["inputs"], data["data_samples"]
            with torch.no_grad():
                reference = dict(zip(network.output_names, network(images, torch.tensor(sizes))))
                predicted = model(images, copy.deepcopy(samples), mode="predict")
            outputs = backend(images, torch.tensor(sizes))
            assert sorted(outputs) == sorted(reference)
            for key, value in reference.items():
                torch.testing.assert_close(outputs[key], value, atol=1e-4, rtol=1e-4)
            for ours, theirs in zip(network.predict(outputs, copy.deepcopy(samples)), predicted):
                _assert_same_predictions(ours, theirs)


def test_upernet_is_exported_at_one_size_and_refuses_others(tmp_path):
    """Adaptive pooling (PPM) has no free-size form: the file takes the traced H, W only
    (any batch), equal to eager there, and says why on another size."""
    model = _model(UPERNET, {})
    network = ExportNetwork(model)
    path = str(tmp_path / "model.onnx")
    meta = export_model(model, path, size=(64, 96))
    assert meta["static_dims"] == {"images": [2, 3], "image_sizes": []}
    assert "PyramidPooling" in meta["fixed_size_reason"]
    backend = open_backend(path)
    for sizes in (((64, 96), (48, 80)), ((64, 96),)):
        data = _batch(model, sizes)
        images, samples = data["inputs"], data["data_samples"]
        with torch.no_grad():
            reference = network(images, torch.tensor(sizes))[0]
            predicted = model(images, copy.deepcopy(samples), mode="predict")
        outputs = backend(images, torch.tensor(sizes))
        torch.testing.assert_close(outputs["maps"], reference, atol=1e-4, rtol=1e-4)
        for ours, theirs in zip(network.predict(outputs, copy.deepcopy(samples)), predicted):
            _assert_same_predictions(ours, theirs)
    images = _batch(model, ((96, 64),))["inputs"]
    with pytest.raises(ExportError, match=r"height 64, width 96 only \(.*PyramidPooling"):
        backend(images, torch.tensor([[96, 64]]))


def test_refused_models_say_why(tmp_path):
    grounding = Config(dict(model=tiny_vit_grounding(str(write_tiny_bert(tmp_path / "bert")))))
    slide = load_config(
        UPERNET,
        {"model.test_cfg": dict(mode="slide", crop_size=(64, 64), stride=(32, 32))},
    )
    roi_pose = load_config("configs/vitpose/dino-roipose_vit-t_synthetic.py")
    for cfg, reason in (
        (grounding, "reads text prompts"),
        (slide, "test_cfg.mode is 'slide'"),
        (roi_pose, "reads other heads' predictions"),
    ):
        with pytest.raises(ExportError, match=reason):
            ExportNetwork(MODELS.build(cfg.model))
