"""Export of the demo DINO detector (two-stage, box refinement, multi-scale deformable
attention; fewer layers, random weights) by ``tools/export.py``: one trace writes the
ONNX file and the ``torch.export`` program. Each file, reloaded from disk (ONNX Runtime on
CPU; the program in PyTorch), against the eager model (gather deformable attention, padding
from the samples) on batches of two sizes other than the traced one (padded and not, batch 2
and 1); the Inferencer and ``tools/demo.py --backend onnxruntime`` on the ONNX file against
the Inferencer on the checkpoint.

Tolerances: raw outputs 5e-4 absolute + 1e-4 relative (logits; boxes normalised to the
padded input: 0.06 px of a 128-px input; float rounding of ``GridSample`` / ONNX Runtime's
kernels against the gather op, grown through the decoder layers of random weights); final
boxes 0.1 px, scores 2e-4, labels equal.
"""

from __future__ import annotations

import contextlib
import copy
import io
import runpy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from visionfm.apis import Inferencer
from visionfm.data import DataSample
from visionfm.data.batch import padding_mask
from visionfm.engine.config import load_config
from visionfm.export import ExportError, ExportNetwork, open_backend, padding_from_sizes
from visionfm.export.runtime import OnnxRuntimeBackend, ProgramBackend, check_images
from visionfm.ops.deform_attn import multi_scale_deformable_attention
from visionfm.ops.deform_attn_grid import deform_attn_grid_sample
from visionfm.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs/dino/dino_vit-t_synthetic.py")
# fewer layers than the demo's (1 backbone block, 1 encoder and 2 decoder layers): the trace
# takes seconds per layer
OPTIONS = {
    "model.backbone.depth": 1,
    "model.head.encoder.num_layers": 1,
    "model.head.decoder.num_layers": 2,
}
CFG_OPTIONS = ["--cfg-options", *(f"{key}={value}" for key, value in OPTIONS.items())]
# batches other than the traced one (2 x 128 x 160): padded and not, other sizes and batch;
# 224 x 224 is the ViT's position-embedding grid (eager skips the resize; the files resize to
# the same grid, an identity)
BATCHES = [((96, 128), (80, 100)), ((224, 224),)]


def run_export(*args: str) -> str:
    """``tools/export.py ARGS`` in this process (no second torch import); its stdout."""
    out = io.StringIO()
    argv = sys.argv
    sys.argv = ["tools/export.py", *args]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(ROOT / "tools/export.py"), run_name="__main__")
    finally:
        sys.argv = argv
    return out.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The eager Inferencer on a random checkpoint, and both files tools/export.py wrote."""
    folder = tmp_path_factory.mktemp("export")
    model = MODELS.build(load_config(CONFIG, OPTIONS).model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # spread-out scores: no near-ties for the top-k to break apart
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.2 if p.dim() > 1 else 0.5))
    torch.save(model.state_dict(), folder / "model.pth")
    eager = Inferencer(CONFIG, str(folder / "model.pth"), "cpu", 0.0, OPTIONS)
    paths = {"onnx": str(folder / "model.onnx"), "torch-export": str(folder / "model.pt2")}
    printed = run_export(CONFIG, str(folder / "model.pth"), "--out", *paths.values(), *CFG_OPTIONS)
    assert "batch, height and width dynamic" in printed, printed
    return folder, eager, paths


def _batch(model, sizes, seed: int = 0) -> dict:
    """uint8 images of ``sizes`` through the model's data preprocessor (padded to 32)."""
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8) for h, w in sizes]
    samples = [DataSample(metainfo=dict(img_shape=s, ori_shape=s)) for s in sizes]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), False)


def _assert_same_detections(ours: DataSample, theirs: DataSample) -> None:
    a, b = ours.pred_instances, theirs.pred_instances
    assert len(b) > 0
    torch.testing.assert_close(a.scores, b.scores, atol=2e-4, rtol=0)
    assert torch.equal(a.labels, b.labels)
    torch.testing.assert_close(a.bboxes, b.bboxes, atol=0.1, rtol=0)


def test_grid_sample_formulation_equals_the_gather_op():
    """The traceable path against the default op, points inside, on the border and outside."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 9), (3, 5), (1, 2)]
    value = torch.randn(2, sum(h * w for h, w in shapes), 4, 8, generator=gen)
    locations = torch.rand(2, 7, 4, 3, 5, 2, generator=gen) * 1.4 - 0.2
    weights = torch.rand(2, 7, 4, 3, 5, generator=gen)
    spatial = torch.tensor(shapes)
    expected = multi_scale_deformable_attention(value, spatial, None, locations, weights)
    out = deform_attn_grid_sample(value, shapes, locations, weights)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_padding_from_sizes_equals_the_samples_padding_mask():
    sizes = [(5, 7), (3, 7), (5, 2)]
    samples = [DataSample(metainfo=dict(img_shape=s, batch_input_shape=(5, 7))) for s in sizes]
    expected = padding_mask(samples)
    assert torch.equal(padding_from_sizes(torch.tensor(sizes), (5, 7)), expected)


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_exported_detector_equals_eager_on_two_sizes(exported, fmt):
    _, eager, paths = exported
    model = eager.model
    network = ExportNetwork(model)
    backend = open_backend(paths[fmt])
    assert isinstance(backend, OnnxRuntimeBackend if fmt == "onnx" else ProgramBackend)
    assert backend.meta["static_dims"] == {"images": [], "image_sizes": []}
    for sizes in BATCHES:
        data = _batch(model, sizes)
        images, samples = data["inputs"], data["data_samples"]
        image_sizes = torch.tensor(sizes)
        with torch.no_grad():
            reference = dict(zip(network.output_names, network(images, image_sizes)))
            predicted = model(images, copy.deepcopy(samples), mode="predict")
        outputs = backend(images, image_sizes)
        assert outputs["logits"].shape == (len(sizes), 30, len(eager.dataset_meta["classes"]))
        for name in ("logits", "boxes"):
            torch.testing.assert_close(outputs[name], reference[name], atol=5e-4, rtol=1e-4)
        for ours, theirs in zip(network.predict(outputs, copy.deepcopy(samples)), predicted):
            _assert_same_detections(ours, theirs)


def test_inferencer_on_the_onnx_file_gives_the_checkpoints_detections(exported):
    """(The program runs through the same ``ExportedModel``; loading it takes seconds.)"""
    _, eager, paths = exported
    runner = Inferencer(CONFIG, paths["onnx"], "cpu", 0.0, OPTIONS, backend="onnxruntime")
    assert runner.exported is not None
    classes = tuple(eager.dataset_meta["classes"])
    assert tuple(runner.dataset_meta["classes"]) == classes  # from the file's metadata
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in ((90, 140, 3), (70, 60, 3))]
    for ours, theirs in zip(runner(images, batch_size=2), eager(images, batch_size=2)):
        assert tuple(ours.metainfo["classes"]) == classes
        _assert_same_detections(ours, theirs)


def test_demo_runs_the_onnx_file(exported):
    folder, _, paths = exported
    image = np.random.default_rng(0).integers(0, 255, (96, 140, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "image.png"), image[..., ::-1])
    proc = subprocess.run(
        [sys.executable, "tools/demo.py", CONFIG, paths["onnx"], str(folder / "image.png"),
         "--out", str(folder / "demo"), "--backend", "onnxruntime", *CFG_OPTIONS],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert cv2.imread(str(folder / "demo" / "image.png")).shape == image.shape


def test_backend_and_file_must_agree(exported, tmp_path):
    _, _, paths = exported
    with pytest.raises(ValueError, match="onnxruntime.*\\.onnx file"):
        open_backend(paths["torch-export"], "onnxruntime")
    with pytest.raises(ValueError, match="PyTorch checkpoint"):
        open_backend(paths["onnx"], "pytorch")
    with pytest.raises(ValueError, match="backend must be one of"):
        open_backend(paths["onnx"], "tensorrt")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        open_backend(str(tmp_path / "missing.onnx"))
    assert open_backend("epoch_1.pth") is None
    with pytest.raises(ValueError, match="leave amp out"):
        Inferencer(CONFIG, paths["onnx"], "cpu", cfg_options=OPTIONS, amp=True)


def test_an_out_file_of_no_known_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_export(CONFIG, "model.pth", "--out", "model.onnx", "model.trt")
    assert exit_info.value.code == 2
    assert "--out 'model.trt': name the file *.onnx (ONNX) or *.pt2" in capsys.readouterr().err


def test_a_static_file_refuses_another_shape_saying_why():
    meta = dict(traced_shape=[1, 3, 64, 48], static_dims=dict(images=[0, 2, 3], image_sizes=[0]))
    check_images(meta, torch.zeros(1, 3, 64, 48), "model.onnx")  # the traced shape passes
    with pytest.raises(
        ExportError,
        match=r"model.onnx takes images of batch 1, height 64, "
        r"width 48 only \(it was exported with --static\); got .*\(2, 3, 64, 48\)",
    ):
        check_images(meta, torch.zeros(2, 3, 64, 48), "model.onnx")
