"""The command-line tools' entry point: a mistake the user can fix is one line, not a traceback.

``tools/*.py`` end with ``run_tool(main)``. A :class:`~visionfm.registry.ConfigError` (a
config typo, an unknown type, a ``_base_`` found nowhere), a
:class:`~visionfm.weights.CheckpointError` (a checkpoint that cannot be read or does not fit
the model), a :class:`~visionfm.data.converters.ConversionError` (a dataset to convert
with bad input, named by file and line) or a :class:`~visionfm.export.ExportError` (a model
or input shape an exported file does not take) ends the program with exit status 1 and one ``error: ...`` message on stderr,
which already names the config key or file at fault. ``VISIONFM_DEBUG=1`` shows the
traceback instead. Every other exception is a bug or an environment problem and keeps its
traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from visionfm.data.converters.common import ConversionError
from visionfm.export.network import ExportError
from visionfm.registry import ConfigError
from visionfm.weights import CheckpointError

__all__ = ["USER_ERRORS", "run_tool"]

USER_ERRORS = (ConfigError, CheckpointError, ConversionError, ExportError)


def run_tool(main: Callable[[], object]) -> None:
    """Run a tool's ``main()``; user errors exit with one line (see the module doc)."""
    try:
        main()
    except USER_ERRORS as exc:
        if os.environ.get("VISIONFM_DEBUG"):
            raise
        sys.exit(f"error: {exc}")
