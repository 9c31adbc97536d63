"""Runner glue on mmengine: checkpoint loading under weights_only, runner building.

Importing this package routes mmengine's local checkpoint loading through
``visionfm.engine.checkpoint.load_checkpoint_file`` (the one mmengine workaround
for torch >= 2.6); every tool imports it before building a runner.
"""

from .checkpoint import install as _install_checkpoint_loader
from .checkpoint import load_checkpoint_file
from .config import load_config
from .hooks import DrawPredictionsHook, RNGStateHook
from .optim import AutocastOptimWrapper, LayerDecayOptimWrapperConstructor
from .runner import build_runner

_install_checkpoint_loader()

__all__ = [
    "AutocastOptimWrapper",
    "DrawPredictionsHook",
    "LayerDecayOptimWrapperConstructor",
    "RNGStateHook",
    "build_runner",
    "load_checkpoint_file",
    "load_config",
]
