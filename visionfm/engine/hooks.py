"""Hooks every visionfm run uses."""

from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.hooks import Hook

from visionfm.registry import HOOKS


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the python / numpy / torch random states in each checkpoint and restore
    them on resume, so a resumed run draws the same dropout masks and augmentations
    as an uninterrupted one (mmengine only re-seeds from the start)."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        np_state = np.random.get_state()
        checkpoint["rng_state"] = dict(
            python=random.getstate(),
            numpy=(
                np_state[0],
                np_state[1],
                int(np_state[2]),
                int(np_state[3]),
                float(np_state[4]),
            ),
            torch=torch.get_rng_state(),
        )

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state is None:
            runner.logger.warning(
                "checkpoint has no rng_state: random streams restart from the seed"
            )
            return
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
