"""Runner glue on mmengine: checkpoint loading under weights_only, runner building.

Importing this package routes mmengine's local checkpoint loading through
``visionfm.engine.checkpoint.load_checkpoint_file`` (torch >= 2.6), its checkpoint
saving through the atomic ``checkpoint_saving.save_checkpoint`` and its ``--resume
auto`` search through ``checkpoint.find_latest_checkpoint``; every tool imports it
before building a runner.
"""

from .checkpoint import install as _install_checkpoint_loader
from .checkpoint import load_checkpoint_file
from .checkpoint_saving import SafeCheckpointHook
from .config import load_config
from .config_check import check_config
from .data_hooks import SkippedSamplesHook
from .hooks import DrawPredictionsHook, RNGStateHook
from .loops import ResumableEpochBasedTrainLoop, ResumableIterBasedTrainLoop
from .nan_guard import NonFiniteLossError, NonFiniteLossHook
from .optim import AutocastOptimWrapper, LayerDecayOptimWrapperConstructor
from .runner import build_runner

_install_checkpoint_loader()

__all__ = [
    "AutocastOptimWrapper",
    "DrawPredictionsHook",
    "LayerDecayOptimWrapperConstructor",
    "NonFiniteLossError",
    "NonFiniteLossHook",
    "RNGStateHook",
    "ResumableEpochBasedTrainLoop",
    "ResumableIterBasedTrainLoop",
    "SafeCheckpointHook",
    "SkippedSamplesHook",
    "build_runner",
    "check_config",
    "load_checkpoint_file",
    "load_config",
]
