"""Run an exported network: ONNX Runtime on a ``.onnx`` file, or a ``torch.export`` program
(``.pt2``), between the model's own data preprocessor and post-processing.

:class:`ExportedModel` is what the :class:`~visionfm.apis.Inferencer` runs instead of the
PyTorch model when it is given an exported file: ``test_step`` preprocesses the batch with
the config's data preprocessor, runs the file on the tensors, and hands the outputs to the
heads' post-processing (:meth:`ExportNetwork.predict`), so predictions come back in the
same form, in original-image coordinates.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import Tensor

from .exporter import FORMATS, META_KEY
from .network import ExportError, ExportNetwork

__all__ = [
    "BACKENDS",
    "ExportedModel",
    "OnnxRuntimeBackend",
    "ProgramBackend",
    "check_images",
    "fixed_axes",
    "open_backend",
]

#: ``backend=`` values: the PyTorch model, or an exported file's runtime.
BACKENDS = ("pytorch", "onnxruntime", "torch-export")
_FORMAT_OF = {"onnxruntime": "onnx", "torch-export": "torch-export"}
_AXES = ("batch", "channels", "height", "width")


def fixed_axes(meta: dict) -> str:
    """The ``images`` axes an exported file (its metadata ``meta``) fixed, with their sizes
    (``'height 64, width 96'``); empty when batch, height and width are free."""
    return ", ".join(f"{_AXES[i]} {meta['traced_shape'][i]}" for i in meta["static_dims"]["images"])


def check_images(meta: dict, images: Tensor, path: str | os.PathLike) -> None:
    """Refuse ``images`` (B, 3, H, W) whose batch / height / width differ from the traced
    shape on an axis the exported file ``path`` fixed (its metadata ``meta``), saying why."""
    traced = meta["traced_shape"]
    wrong = [i for i in meta["static_dims"]["images"] if images.shape[i] != traced[i]]
    if not wrong:
        return
    why = meta.get("fixed_size_reason") or "it was exported with --static"
    raise ExportError(
        f"{os.fspath(path)} takes images of {fixed_axes(meta)} only ({why}); got images of shape "
        f"{tuple(images.shape)}: resize / pad the inputs to that size (a Resize to it in the "
        "test pipeline), or export again at the size you need (tools/export.py --size H W)"
    )


class OnnxRuntimeBackend:
    """An ONNX file in an ONNX Runtime CPU session: ``(images, image_sizes) -> {output name:
    tensor}`` (see ``visionfm.export.network``). ``threads``: intra-op threads (None: the
    runtime's default)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ExportError(
                f"the onnxruntime backend needs onnxruntime ({err}): pip install onnxruntime"
            ) from err
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            os.fspath(path), options, providers=["CPUExecutionProvider"]
        )
        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise ExportError(
                f"{path} was not written by tools/export.py (no {META_KEY!r} metadata)"
            )
        self.path, self.meta = path, json.loads(props[META_KEY])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, images: Tensor, image_sizes: Tensor) -> dict[str, Tensor]:
        check_images(self.meta, images, self.path)
        feeds = {
            "images": images.detach().cpu().float().numpy(),
            "image_sizes": image_sizes.detach().cpu().to(torch.int64).numpy(),
        }
        wanted = {i.name: feeds[i.name] for i in self.session.get_inputs()}
        outputs = self.session.run(self.output_names, wanted)
        return {
            name: torch.from_numpy(np.asarray(out)).to(images.device)
            for name, out in zip(self.output_names, outputs)
        }


class ProgramBackend:
    """A ``torch.export`` program (``.pt2``): ``(images, image_sizes) -> {output name:
    tensor}``."""

    def __init__(self, path: str | os.PathLike) -> None:
        extra = {META_KEY + ".json": ""}
        program = torch.export.load(os.fspath(path), extra_files=extra)
        if not extra[META_KEY + ".json"]:
            raise ExportError(f"{path} was not written by tools/export.py (no {META_KEY} file)")
        self.path, self.meta = path, json.loads(extra[META_KEY + ".json"])
        self.module = program.module()

    @torch.no_grad()
    def __call__(self, images: Tensor, image_sizes: Tensor) -> dict[str, Tensor]:
        check_images(self.meta, images, self.path)
        outputs = self.module(images, image_sizes.to(torch.int64))
        return dict(zip(self.meta["output_names"], outputs))


def open_backend(
    path: str | os.PathLike | None, backend: str | None = None
) -> OnnxRuntimeBackend | ProgramBackend | None:
    """The runtime of an exported file, or None when ``path`` is a checkpoint for the PyTorch
    model. ``backend`` None: from the extension (``.onnx`` -> ``onnxruntime``, ``.pt2`` ->
    ``torch-export``, anything else -> ``pytorch``); a backend that does not fit the file
    is refused."""
    if backend is not None and backend not in BACKENDS:
        raise ExportError(f"backend must be one of {BACKENDS}, got {backend!r}")
    ext = os.path.splitext(os.fspath(path or ""))[1].lower()
    found = {suffix: name for name, suffix in FORMATS.items()}.get(ext)
    wanted = None if backend is None or backend == "pytorch" else _FORMAT_OF[backend]
    if backend is not None and wanted != found:
        what = "a PyTorch checkpoint"
        if wanted:
            what = f"a {FORMATS[wanted]} file (tools/export.py --out *{FORMATS[wanted]})"
        raise ExportError(f"backend={backend!r} runs {what}, got {path!r}")
    if found is None:
        return None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"exported model {path!r} does not exist")
    return OnnxRuntimeBackend(path) if found == "onnx" else ProgramBackend(path)


class ExportedModel:
    """``model``'s data preprocessor and post-processing around an exported network run by
    ``backend``; ``test_step`` as an mmengine model's (collated batch -> samples)."""

    def __init__(self, model: torch.nn.Module, backend: OnnxRuntimeBackend | ProgramBackend):
        self.model, self.backend = model, backend
        self.network = ExportNetwork(model)
        exported = list(backend.meta["output_names"])
        if exported != list(self.network.output_names):
            raise ExportError(
                f"the exported file gives outputs {exported}, but the config's model gives "
                f"{list(self.network.output_names)}: export it from this config"
            )
        self.dataset_meta = backend.meta.get("dataset_meta") or {}

    @torch.no_grad()
    def test_step(self, data: dict) -> list:
        """Collated ``dict(inputs, data_samples)`` -> the samples with predictions."""
        data = self.model.data_preprocessor(data, False)
        images, samples = data["inputs"], data["data_samples"]
        sizes = torch.tensor([s.img_shape[:2] for s in samples], dtype=torch.long)
        return self.network.predict(self.backend(images, sizes), samples)
