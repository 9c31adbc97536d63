"""Hooks every visionfm run uses."""

from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.hooks import Hook

from visionfm.registry import HOOKS


def rng_state() -> dict:
    """The python / numpy / torch (and CUDA, once initialized) random states, in a form
    that ``torch.load(weights_only=True)`` reads back."""
    np_state = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(np_state[0], np_state[1], int(np_state[2]), int(np_state[3]), float(np_state[4])),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned (CUDA states only onto as many devices)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the python / numpy / torch random states in each checkpoint and restore
    them on resume, so a resumed run draws the same dropout masks and augmentations
    as an uninterrupted one (mmengine only re-seeds from the start)."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["rng_state"] = rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state is None:
            runner.logger.warning(
                "checkpoint has no rng_state: random streams restart from the seed"
            )
            return
        set_rng_state(state)


@HOOKS.register_module()
class DrawPredictionsHook(Hook):
    """During testing, draw each image's predictions with the original image into ``out_dir``
    (``visionfm.visualization.draw_sample``: instances, semantic / panoptic maps, depth;
    class names and colours from the test dataset's metainfo). A point cloud's predictions
    (``pred_segment`` / ``pred_label``) are drawn on the cloud the model saw
    (``visionfm.visualization.points.draw_point_sample``), named by its ``scene``."""

    def __init__(self, out_dir: str, score_thr: float = 0.3):
        self.out_dir = out_dir
        self.score_thr = score_thr

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        import os

        import cv2

        from visionfm.visualization import draw_sample
        from visionfm.visualization.points import draw_point_sample, sample_coords

        meta = runner.test_dataloader.dataset.metainfo
        os.makedirs(self.out_dir, exist_ok=True)
        for i, sample in enumerate(outputs or []):
            if "pred_segment" in sample or "pred_label" in sample:  # a point cloud
                coord = sample_coords(data_batch["inputs"][i], sample)
                drawn = draw_point_sample(
                    coord, sample, meta.get("classes"), palette=meta.get("palette")
                )
                name = f"{sample.metainfo.get('scene', batch_idx * len(outputs) + i)}.png"
                path = os.path.join(self.out_dir, name)
                cv2.imwrite(path, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                continue
            image = cv2.cvtColor(cv2.imread(sample.img_path), cv2.COLOR_BGR2RGB)
            drawn = draw_sample(
                image,
                sample,
                meta.get("classes"),  # None (e.g. depth datasets): the sample's own, if any
                skeleton=meta.get("skeleton"),
                prefix="pred",
                score_thr=self.score_thr,
                palette=meta.get("palette"),
            )
            name = os.path.splitext(os.path.basename(sample.img_path))[0] + ".png"
            cv2.imwrite(os.path.join(self.out_dir, name), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))


@HOOKS.register_module()
class ClassNumCheckHook(Hook):
    """Refuse to train / evaluate when a head's ``num_classes`` differs from the number of
    classes of the dataset it runs on (the usual cause of "AP is 0" reports). Only heads and
    their parts are checked (a timm backbone's ``num_classes`` is its removed classifier's);
    prompted heads (``needs_text``: their classes are the prompt's phrases) are not."""

    priority = "VERY_HIGH"

    def _check(self, runner, dataloader, split: str) -> None:
        from mmengine.model import is_model_wrapper

        classes = getattr(dataloader.dataset, "metainfo", {}).get("classes")
        if classes is None:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        from visionfm.heads.base import Head

        heads = [n for n, m in model.named_modules() if isinstance(m, Head) and not m.needs_text]
        for name, module in model.named_modules():
            if not any(name == p or name.startswith(p + ".") for p in heads):
                continue
            num = getattr(module, "num_classes", None)
            if isinstance(num, int) and num != len(classes):
                source = getattr(dataloader.dataset, "ann_file", "the dataset")
                raise ValueError(
                    f"model.{name}.num_classes is {num} but the {split} dataset ({source}) has "
                    f"{len(classes)} classes: {list(classes)[:20]}. Set num_classes = "
                    f"{len(classes)} in the config (head and denoising), or give the dataset "
                    f"metainfo=dict(classes=...) with the head's classes."
                )

    def before_train(self, runner) -> None:
        self._check(runner, runner.train_dataloader, "train")

    def before_val(self, runner) -> None:
        self._check(runner, runner.val_dataloader, "val")

    def before_test(self, runner) -> None:
        self._check(runner, runner.test_dataloader, "test")
