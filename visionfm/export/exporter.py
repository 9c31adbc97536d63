"""Export a task model's network (:class:`~visionfm.export.network.ExportNetwork`) to a
``torch.export`` program (``.pt2``) or an ONNX file (``.onnx``).

Both go through one ``torch.export.export`` trace (non-strict): the ONNX file is the
dynamo exporter's translation of that same program (``torch.onnx.export(program,
dynamo=True)``, which needs ``onnxscript``). The TorchScript exporter (``dynamo=False``) is
deprecated since torch 2.9 and traces sizes into constants unless every size computation is
written for it; one ``torch.export`` trace with symbolic sizes serves both formats, and
what it cannot make dynamic it reports (:func:`static_dims`).

With ``dynamic=True`` the batch, height and width are ``Dim.AUTO``: symbolic unless the
model specialises them. Every exported family keeps all three, except that models with
adaptive pooling keep the traced height and width (``ExportNetwork.fixed_size_reason``);
sizes still follow the config's constraints (a multiple of ``size_divisor``). Multi-scale
deformable attention traces into its ``grid_sample`` formulation (ONNX ``GridSample``,
opset >= 16).

Each file carries ``visionfm`` metadata (JSON: input / output names, the axes fixed at the
traced shape and why, the checkpoint's ``dataset_meta``): ONNX in ``metadata_props``,
``.pt2`` as an extra file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import torch
from torch.fx.experimental.symbolic_shapes import is_concrete_int

from .network import INPUT_NAMES, ExportError, ExportNetwork

__all__ = ["FORMATS", "export_model", "export_program", "format_of", "metadata", "static_dims"]

FORMATS = {"onnx": ".onnx", "torch-export": ".pt2"}
META_KEY = "visionfm"  # ONNX metadata_props key; the .pt2 extra file is META_KEY + ".json"
MIN_OPSET = 16  # GridSample
_FREE_AXES = {"images": (0, 2, 3), "image_sizes": (0,)}


def example_inputs(
    network: ExportNetwork, size: Sequence[int] = (128, 160), batch: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``images`` (batch, 3, *size) and ``image_sizes`` (batch, 2) (the first image
    unpadded, the others padded) to trace with. For a dynamic export batch >= 2 and H != W,
    so that no size is specialised as 1 or as equal to another."""
    h, w = size
    device = next(network.parameters()).device
    images = torch.randn(batch, 3, h, w, device=device)
    sizes = torch.tensor([[h, w]] + [[h - 16 * i, w] for i in range(1, batch)], device=device)
    return images, sizes.clamp(min=1)


def export_program(
    network: ExportNetwork,
    inputs: tuple[torch.Tensor, torch.Tensor],
    dynamic: bool = True,
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``network`` (put in eval mode) traced on ``inputs``
    (``images``, ``image_sizes``); ``dynamic``: the batch symbolic, and the height and
    width too unless the network has a ``fixed_size_reason`` (``Dim.AUTO``: what the model
    still pins, :func:`static_dims` reports)."""
    network.eval()
    shapes = None
    if dynamic:
        auto = torch.export.Dim.AUTO
        hw = torch.export.Dim.STATIC if network.fixed_size_reason else auto
        shapes = {"images": {0: auto, 2: hw, 3: hw}, "image_sizes": {0: auto}}
    with torch.no_grad():
        return torch.export.export(network, tuple(inputs), dynamic_shapes=shapes, strict=False)


def static_dims(program: torch.export.ExportedProgram) -> dict[str, list[int]]:
    """``{input name: [axes fixed to the traced size]}`` among the axes an export may leave
    free (images: batch, height, width; image_sizes: batch). A fixed axis is a plain int or
    a symbol the trace replaced by its value (a SymInt of a constant)."""
    out = {}
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder"]
    user = program.graph_signature.user_inputs
    for name, node in zip(INPUT_NAMES, [n for n in placeholders if n.name in user]):
        shape = node.meta["val"].shape
        out[name] = [i for i in _FREE_AXES[name] if is_concrete_int(shape[i])]
    return out


def metadata(
    network: ExportNetwork,
    program: torch.export.ExportedProgram,
    inputs: tuple[torch.Tensor, torch.Tensor],
    dataset_meta: Mapping,
) -> dict:
    """The ``visionfm`` metadata written into an exported file (see the module doc):
    ``traced_shape`` is the traced ``images`` shape, the size of every axis in
    ``static_dims``; ``fixed_size_reason`` says why height and width are fixed, if so."""
    return dict(
        format_version=1,
        input_names=list(INPUT_NAMES),
        output_names=list(network.output_names),
        static_dims=static_dims(program),
        traced_shape=list(inputs[0].shape),
        fixed_size_reason=network.fixed_size_reason,
        dataset_meta=_jsonable(dataset_meta),
    )


def format_of(path: str | os.PathLike) -> str:
    """The format (``FORMATS`` key) a file's extension names, or ExportError."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    for fmt, suffix in FORMATS.items():
        if ext == suffix:
            return fmt
    raise ExportError(
        f"{os.fspath(path)!r}: name the file *.onnx (ONNX) or *.pt2 (torch.export program)"
    )


def export_model(
    model: torch.nn.Module,
    out: str | os.PathLike | Sequence[str | os.PathLike],
    dynamic: bool = True,
    opset: int | None = None,
    dataset_meta: Mapping | None = None,
    size: Sequence[int] = (128, 160),
) -> dict:
    """Export ``model`` (a built task model with its weights, in eval mode) to the file(s)
    ``out``, each in the format its extension names (``.onnx``, ``.pt2``), all from one
    trace at ``size`` (H, W; a size the model takes, e.g. a multiple of the preprocessor's
    ``size_divisor``); returns the metadata written with them. Without ``dynamic`` the files
    take one image of exactly ``size``. ``opset``: the ONNX opset (default: the exporter's;
    at least 16)."""
    paths = [out] if isinstance(out, (str, os.PathLike)) else list(out)
    formats = [format_of(path) for path in paths]
    if "onnx" in formats and opset is not None and opset < MIN_OPSET:
        raise ExportError(f"opset {opset}: deformable attention needs GridSample (>= 16)")
    network = ExportNetwork(model)
    inputs = example_inputs(network, size, 2 if dynamic else 1)  # 2: batch not taken as 1
    program = export_program(network, inputs, dynamic)
    meta = metadata(network, program, inputs, dataset_meta or {})
    for path, fmt in zip(paths, formats):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if fmt == "torch-export":
            extra = {META_KEY + ".json": json.dumps(meta)}
            torch.export.save(program, os.fspath(path), extra_files=extra)
        else:
            _write_onnx(program, os.fspath(path), opset, meta)
    return meta


def _write_onnx(program, out: str, opset: int | None, meta: dict) -> None:
    """The dynamo exporter's ONNX model of ``program`` at ``out``, weights inside the file,
    ``meta`` in its ``metadata_props``."""
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(
            f"--format onnx needs the onnx and onnxscript packages ({err}): pip install onnx "
            "onnxscript onnxruntime"
        ) from err
    onnx_program = torch.onnx.export(
        program,
        (),
        dynamo=True,
        opset_version=opset,
        input_names=list(meta["input_names"]),
        output_names=list(meta["output_names"]),
        external_data=False,
        optimize=False,  # onnxscript 0.7's optimizer drops a clamp's input (invalid graph)
    )
    onnx_program.model.metadata_props[META_KEY] = json.dumps(meta)
    onnx_program.save(out, external_data=False)


def _jsonable(value):
    """``value`` with tuples as lists and tensors / numpy values as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
