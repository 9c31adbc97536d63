"""Monocular depth datasets: RGB images paired with 16-bit depth PNGs.

Two ways to pair them:

- **folders**: every image under ``data_prefix['img']`` (recursively, by ``img_suffix``)
  pairs with ``data_prefix['depth']/<same relative path, depth_suffix>``. The synthetic
  world (``images/{split}/000000.jpg`` + ``depth/{split}/000000.png`` in millimetres) and
  NYU Depth v2 exports read this way.
- **a list file** (``ann_file``), one sample per line: ``<image> <depth> [more columns]``,
  paths relative to ``data_prefix['img']`` / ``data_prefix['depth']`` -- the split files of
  BTS / AdaBins for NYU and KITTI (third column: focal length, unused). A depth of
  ``None`` (KITTI frames without ground truth) skips the line.

Depth PNGs hold ``depth * depth_scale`` as uint16, 0 = missing: NYU / synthetic
millimetres (``depth_scale=1000``), KITTI metres * 256 (``depth_scale=256``, sparse LiDAR:
most pixels 0). ``LoadAnnotations(with_depth=True)`` reads them with the dataset's
``depth_scale`` and refuses 8-bit files and maps whose size differs from the image's, naming
the file.

Per-sample dict: ``img_path``, ``depth_path``, ``depth_scale``, ``img_id`` (index). The
dataset's ``metainfo`` carries ``depth_scale``, ``min_depth``, ``max_depth`` and
``eval_crop``, which :class:`~visionfm.evaluation.DepthMetric` uses unless told otherwise.

Config::

    dataset = dict(type='DepthFolderDataset', data_root='data/synthetic/',
                   data_prefix=dict(img='images/train/', depth='depth/train/'),
                   depth_scale=1000.0, max_depth=10.0, pipeline=[...])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from mmengine.logging import print_log

from visionfm.registry import DATASETS

from .base import VisionDataset

__all__ = ["DepthFolderDataset", "KittiDepthDataset", "EVAL_CROPS"]

EVAL_CROPS = ("nyu", "garg", "eigen")


def _scan(folder: str, suffixes: tuple[str, ...]) -> list[str]:
    """Paths relative to ``folder`` of the files ending in ``suffixes``, sorted."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder}")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(suffixes):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return found


@DATASETS.register_module()
class DepthFolderDataset(VisionDataset):
    """RGB + depth PNG pairs from folders or a list file (see the module doc).

    Args:
        data_prefix: ``img`` and ``depth`` folders (joined to ``data_root``).
        pipeline: transforms (config dicts or callables), ending with ``PackInputs``.
        img_suffix: image file endings scanned in folder mode.
        depth_suffix: ending of the depth file replacing the image's.
        depth_scale: stored value per metre (1000: millimetres; KITTI 256).
        min_depth, max_depth: metres; the valid range for evaluation (dataset metainfo).
        eval_crop: evaluation crop for ``DepthMetric``: None, 'nyu' (Eigen's NYU crop),
            'garg' or 'eigen' (KITTI).
        check_files: at load time, fail listing the image / depth files that do not exist.
        on_error: 'raise' or 'skip': with 'skip' the pairs with a missing file
            (``check_files``) are left out, logged, and in training a sample whose files
            fail to load is skipped (see
            :class:`~visionfm.data.datasets.bad_samples.SkipBadSamplesMixin`).
        metainfo: added to (and overriding) the depth settings above in ``metainfo``.
        **base_args: :class:`~visionfm.data.datasets.base.VisionDataset`'s (mmengine
            ``BaseDataset``'s): ``ann_file`` (list file, relative to ``data_root``; ''
            pairs the folders instead), ``data_root``, ``test_mode``, ``lazy_init``,
            ``serialize_data``, ``indices``, ``max_refetch``.
    """

    def __init__(
        self,
        data_prefix: dict | None = None,
        pipeline: Sequence[dict | Callable] = (),
        img_suffix: str | Sequence[str] = (".jpg", ".jpeg", ".png"),
        depth_suffix: str = ".png",
        depth_scale: float = 1000.0,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        eval_crop: str | None = None,
        check_files: bool = True,
        on_error: str = "raise",
        metainfo: dict | None = None,
        **base_args,
    ) -> None:
        data_prefix = dict(data_prefix or {})
        if set(data_prefix) != {"img", "depth"}:
            raise ValueError(
                f"data_prefix needs exactly the keys 'img' and 'depth', got {sorted(data_prefix)}"
            )
        if eval_crop is not None and eval_crop not in EVAL_CROPS:
            raise ValueError(f"eval_crop must be None or one of {EVAL_CROPS}, got {eval_crop!r}")
        if depth_scale <= 0 or not 0 <= min_depth < max_depth:
            raise ValueError(
                f"need depth_scale > 0 and 0 <= min_depth < max_depth, got {depth_scale}, "
                f"{min_depth}, {max_depth}"
            )
        self.img_suffix = (img_suffix,) if isinstance(img_suffix, str) else tuple(img_suffix)
        self.depth_suffix = depth_suffix
        self.depth_scale = float(depth_scale)
        self.check_files = check_files
        self.num_skipped = 0
        info = dict(
            depth_scale=self.depth_scale,
            min_depth=float(min_depth),
            max_depth=float(max_depth),
            eval_crop=eval_crop,
        )
        super().__init__(
            pipeline,
            on_error,
            data_prefix=data_prefix,
            metainfo={**info, **(metainfo or {})},
            **base_args,
        )

    def load_data_list(self) -> list[dict]:
        img_dir, depth_dir = self.data_prefix["img"], self.data_prefix["depth"]
        listed = self.ann_file and not os.path.isdir(self.ann_file)
        pairs = self._read_list(self.ann_file) if listed else self._pair_folders(img_dir)
        data_list = [
            dict(
                img_path=os.path.join(img_dir, img),
                depth_path=os.path.join(depth_dir, depth),
                depth_scale=self.depth_scale,
                img_id=i,
            )
            for i, (img, depth) in enumerate(pairs)
        ]
        if self.num_skipped:
            print_log(
                f"{self.ann_file}: skipped {self.num_skipped} lines without a depth map",
                logger="current",
                level=logging.WARNING,
            )
        if self.check_files:
            self._check(data_list, listed)
        return data_list

    def _pair_folders(self, img_dir: str) -> list[tuple[str, str]]:
        """(image, depth) relative paths: every image with its namesake depth file."""
        images = _scan(img_dir, tuple(s.lower() for s in self.img_suffix))
        return [(img, os.path.splitext(img)[0] + self.depth_suffix) for img in images]

    def _read_list(self, path: str) -> list[tuple[str, str]]:
        """(image, depth) relative paths from a list file (see the module doc)."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"depth list file not found: {path}")
        pairs = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) < 2:
                    raise ValueError(
                        f"{path}, line {number}: expected '<image> <depth> [focal]', got "
                        f"{line.strip()!r}"
                    )
                if fields[1] == "None":
                    self.num_skipped += 1
                    continue
                pairs.append((fields[0].lstrip("/"), fields[1].lstrip("/")))
        return pairs

    def _check(self, data_list: list[dict], listed: bool) -> None:
        """Fail naming the missing files (depth maps first: the usual mistake); with
        ``on_error='skip'`` leave their pairs out of ``data_list``, logged."""
        where = self.ann_file if listed else self.data_prefix["img"]
        for key, what in (("depth_path", "depth maps"), ("img_path", "images")):
            missing = [d[key] for d in data_list if not os.path.isfile(d[key])]
            if not missing:
                continue
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            hint = ""
            if key == "depth_path" and not listed:
                hint = f" (depth files are named like the image with {self.depth_suffix!r})"
            message = f"{where}: {len(missing)} of {len(data_list)} {what} not found: {shown}{hint}"
            if self.on_error == "raise":
                raise FileNotFoundError(message + " (on_error='skip' would leave them out)")
            print_log(
                f"{message}; left out (on_error='skip')", logger="current", level=logging.WARNING
            )
            gone = set(missing)
            data_list[:] = [d for d in data_list if d[key] not in gone]
        if not data_list:
            print_log(f"{where}: no image found", logger="current", level=logging.WARNING)


@DATASETS.register_module()
class KittiDepthDataset(DepthFolderDataset):
    """KITTI depth (Geiger et al., 2012; Uhrig et al., 2017): sparse LiDAR ground truth as
    16-bit PNGs of metres * 256 (0 = no return), read from a BTS-style list file.

    Defaults: ``depth_scale=256``, ``max_depth=80``, ``eval_crop='garg'``. Crop the inputs to
    the benchmark window with the ``KBCrop`` transform; predictions come back at the full
    frame size (0 outside the window), as BTS / AdaBins evaluate. Other arguments are
    :class:`DepthFolderDataset`'s.
    """

    def __init__(
        self,
        data_prefix: dict | None = None,
        ann_file: str = "",
        pipeline: Sequence[dict | Callable] = (),
        depth_scale: float = 256.0,
        min_depth: float = 1e-3,
        max_depth: float = 80.0,
        eval_crop: str | None = "garg",
        **kwargs,
    ) -> None:
        super().__init__(
            data_prefix=data_prefix,
            ann_file=ann_file,
            pipeline=pipeline,
            depth_scale=depth_scale,
            min_depth=min_depth,
            max_depth=max_depth,
            eval_crop=eval_crop,
            **kwargs,
        )
