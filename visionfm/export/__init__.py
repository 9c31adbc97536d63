"""visionfm.export: task models as ONNX files and ``torch.export`` programs, and the runtimes
that run them between the model's own pre- and post-processing (``tools/export.py``,
``Inferencer(config, "model.onnx")``)."""

from .exporter import FORMATS, export_model, export_program, format_of
from .network import ExportError, ExportNetwork, padding_from_sizes
from .runtime import BACKENDS, ExportedModel, OnnxRuntimeBackend, ProgramBackend, open_backend

__all__ = [
    "BACKENDS",
    "FORMATS",
    "ExportError",
    "ExportNetwork",
    "ExportedModel",
    "OnnxRuntimeBackend",
    "ProgramBackend",
    "export_model",
    "export_program",
    "format_of",
    "open_backend",
    "padding_from_sizes",
]
