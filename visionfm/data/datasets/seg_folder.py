"""Semantic segmentation from two parallel folders: images and single-channel label PNGs
(the ADE20K / Cityscapes / Pascal-Context layout of mmsegmentation).

Config::

    train_dataloader = dict(
        batch_size=8, num_workers=4,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='SegFolderDataset', data_root='data/ade/ADEChallengeData2016/',
            data_prefix=dict(img='images/training/', seg='annotations/training/'),
            img_suffix='.jpg', seg_map_suffix='.png',
            reduce_zero_label=True,             # ADE20K: 0 = "other" -> 255, k -> k - 1
            metainfo=dict(classes=('wall', 'building', ...)),
            pipeline=[dict(type='LoadImage'), dict(type='LoadAnnotations', with_bbox=False,
                      with_label=False, with_seg=True), ..., dict(type='PackInputs')]))

Image ``img/<stem><img_suffix>`` (any depth of sub-folders) pairs with label
``seg/<stem><seg_map_suffix>``. Without ``ann_file`` every image under ``data_prefix['img']``
is used, sorted by path; with ``ann_file``, a text file of stems (one per line, relative to
the image folder, without suffix) lists the images in order.

Each sample handed to the pipeline has ``img_path``, ``seg_map_path`` (absent without a
``seg`` prefix: unlabelled images for inference), ``reduce_zero_label`` and ``num_classes``;
``LoadAnnotations(with_seg=True)`` reads the labels, applies ``reduce_zero_label`` and fails
naming the file when the label map's size differs from the image's or it holds a value
``>= num_classes`` other than 255 (cheapest there: the file is decoded anyway).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from mmengine.logging import print_log

from visionfm.registry import DATASETS

from ..palette import default_palette
from .base import VisionDataset

__all__ = ["SegFolderDataset"]


@DATASETS.register_module()
class SegFolderDataset(VisionDataset):
    """Images + label maps in parallel folders (see the module doc).

    Args:
        data_prefix: ``img`` (image folder) and ``seg`` (label folder; optional for
            unlabelled inference).
        img_suffix, seg_map_suffix: file name endings of images / label maps.
        reduce_zero_label: label 0 means "unlabelled": it becomes 255 and every other
            label k becomes k - 1 (ADE20K). Then ``classes`` names labels 1.. of the files.
        metainfo: ``classes`` (required: the names of labels 0..C-1 after
            ``reduce_zero_label``), optional ``palette`` (C RGB triples).
        pipeline: transforms (config dicts or callables), ending with ``PackInputs``.
        check_labels: at load time, fail listing the images whose label file is missing.
        on_error: 'raise' or 'skip': with 'skip' the images without a label file
            (``check_labels``) are left out, logged, and in training a sample whose files
            fail to load is skipped (see
            :class:`~visionfm.data.datasets.bad_samples.SkipBadSamplesMixin`).
        **base_args: :class:`~visionfm.data.datasets.base.VisionDataset`'s (mmengine
            ``BaseDataset``'s): ``ann_file`` (optional text file of image stems, see the
            module doc), ``data_root`` (joined to ``ann_file`` and the ``data_prefix``
            values), ``test_mode``, ``lazy_init``, ``serialize_data``, ``indices``,
            ``max_refetch``.
    """

    def __init__(
        self,
        data_prefix: dict | None = None,
        img_suffix: str = ".jpg",
        seg_map_suffix: str = ".png",
        reduce_zero_label: bool = False,
        metainfo: dict | None = None,
        pipeline: Sequence[dict | Callable] = (),
        check_labels: bool = True,
        on_error: str = "raise",
        **base_args,
    ) -> None:
        data_prefix = dict(data_prefix or dict(img=""))
        unknown = set(data_prefix) - {"img", "seg"}
        if unknown:
            raise ValueError(f"SegFolderDataset: data_prefix keys must be img / seg, got {unknown}")
        data_prefix.setdefault("img", "")
        classes = (metainfo or {}).get("classes")
        if not classes:
            raise ValueError(
                "SegFolderDataset needs metainfo=dict(classes=(...)): the names of labels "
                "0..C-1 (after reduce_zero_label); label maps do not name their classes"
            )
        self.img_suffix = img_suffix
        self.seg_map_suffix = seg_map_suffix
        self.reduce_zero_label = reduce_zero_label
        self.check_labels = check_labels
        super().__init__(
            pipeline, on_error, data_prefix=data_prefix, metainfo=metainfo, **base_args
        )

    def load_data_list(self) -> list[dict]:
        classes = tuple(self._metainfo["classes"])
        self._metainfo["classes"] = classes
        if len(self._metainfo.get("palette", ())) < len(classes):
            self._metainfo["palette"] = default_palette(len(classes))
        img_dir, seg_dir = self.data_prefix["img"], self.data_prefix.get("seg")
        stems = self._read_stems() if self.ann_file else self._scan_stems(img_dir)
        data_list = []
        for stem in stems:
            info = dict(
                img_path=os.path.join(img_dir, stem + self.img_suffix),
                reduce_zero_label=self.reduce_zero_label,
                num_classes=len(classes),
            )
            if seg_dir is not None:
                info["seg_map_path"] = os.path.join(seg_dir, stem + self.seg_map_suffix)
            data_list.append(info)
        if seg_dir is not None and self.check_labels:
            self._check_label_files(data_list)
        return data_list

    def _scan_stems(self, img_dir: str) -> list[str]:
        """Relative paths without suffix of every ``img_suffix`` file under ``img_dir``."""
        if not os.path.isdir(img_dir):
            raise FileNotFoundError(f"SegFolderDataset: image folder not found: {img_dir}")
        stems = []
        for root, _, files in os.walk(img_dir):
            for name in files:
                if name.endswith(self.img_suffix):
                    rel = os.path.relpath(os.path.join(root, name), img_dir)
                    stems.append(rel[: -len(self.img_suffix)])
        if not stems:
            raise FileNotFoundError(
                f"SegFolderDataset: no '*{self.img_suffix}' images under {img_dir} "
                f"(is img_suffix right?)"
            )
        return sorted(stems)

    def _read_stems(self) -> list[str]:
        if not os.path.isfile(self.ann_file):
            raise FileNotFoundError(f"SegFolderDataset: split file not found: {self.ann_file}")
        with open(self.ann_file, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]

    def _check_label_files(self, data_list: list[dict]) -> None:
        """Fail naming the images without a label file (and the label path expected); with
        ``on_error='skip'`` leave them out of ``data_list``, logged."""
        missing = [d for d in data_list if not os.path.isfile(d["seg_map_path"])]
        if not missing:
            return
        shown = "; ".join(f"{d['img_path']} -> {d['seg_map_path']}" for d in missing[:5])
        message = (
            f"SegFolderDataset: {len(missing)} of {len(data_list)} images have no label file "
            f"(image -> expected label): {shown}{' ...' if len(missing) > 5 else ''}"
        )
        if self.on_error == "raise":
            raise FileNotFoundError(message + " (on_error='skip' would leave them out)")
        print_log(f"{message}; left out (on_error='skip')", logger="current", level=logging.WARNING)
        data_list[:] = [d for d in data_list if os.path.isfile(d["seg_map_path"])]
