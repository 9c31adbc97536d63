"""``PointInferencer``: a trained point-cloud model on point files, from Python.

``Inferencer`` returns one when the config's model is a ``PointModel``, so point and image
models share one entry point::

    inferencer = Inferencer("configs/point/...py", "work_dirs/.../epoch_50.pth")
    sample = inferencer("scene.ply")           # pred_segment (N,): one label per point
    sample = inferencer("chair.txt")           # pred_label, pred_score (K,)
    cloud = inferencer.read("scene_0000/")     # a Pointcept scene folder
    drawn = inferencer.visualize(cloud, sample)  # (H, W, 3) RGB: classes / title
    inferencer.turntable(cloud, sample, "scene.mp4")

Inputs: ``.ply``, ``.npy`` / ``.txt`` arrays (columns ``coord`` then the model's input
features, as the test pipeline's ``PackPointInputs(features=...)`` names them, unless
``fields=`` says otherwise; ``.txt`` split on commas when the first row has them, as
ModelNet40's files, else on whitespace) and Pointcept scene folders, read by
:func:`~visionfm.data.points_io.read_points_file` (bad files raise an error naming them);
or a cloud dict / an (N, 3 + C) array in that column order. Labels the file holds are
dropped. A classification dataset that brings every cloud to ``num_points``
(``ModelNetDataset``) has it done here too (:func:`~visionfm.data.datasets.points.fixed_size`),
then the config's test pipeline runs and the model predicts.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from mmengine.config import Config

from visionfm.data.datasets.points import fixed_size
from visionfm.data.points_io import FIELD_WIDTHS, read_points_file
from visionfm.models.point_model import PointModel
from visionfm.registry import DATASETS, MODELS
from visionfm.visualization.points import point_sample_style, render_points, write_turntable

from .inferencer import CONVERTED_FILES, Inferencer, resolve_config

__all__ = ["POINT_SUFFIXES", "PointInferencer", "is_point_config", "list_point_inputs"]

POINT_SUFFIXES = (".ply", ".npy", ".txt")
_INPUT_FIELDS = ("coord", "color", "normal")  # what inference keeps of a cloud (no labels)


def is_point_config(config: str | os.PathLike | Config, cfg_options: dict | None = None) -> bool:
    """Whether ``config`` (a config file or object, or a ``convert_checkpoint`` folder) builds
    a :class:`~visionfm.models.point_model.PointModel`. A published model's folder never
    does; an unknown model type is left to the model's build to report."""
    if not isinstance(config, Config) and os.path.isdir(config):
        if not os.path.isfile(os.path.join(config, CONVERTED_FILES[0])):
            return False
    cfg, _ = resolve_config(config, None, cfg_options)
    model_type = (cfg.get("model") or {}).get("type")
    try:
        model_class = MODELS.get(model_type) if isinstance(model_type, str) else model_type
    except KeyError:
        return False
    return isinstance(model_class, type) and issubclass(model_class, PointModel)


def _is_scene_folder(path: Path) -> bool:
    return path.is_dir() and (path / "coord.npy").is_file()


def list_point_inputs(path: str | os.PathLike) -> list[str]:
    """The point clouds ``path`` names: a file; a Pointcept scene folder (``coord.npy``
    inside); or a folder's ``.ply`` / ``.npy`` / ``.txt`` files and scene folders, sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such point-cloud file or folder: {path}")
    if path.is_file() or _is_scene_folder(path):
        return [str(path)]
    found = sorted(
        str(p)
        for p in path.iterdir()
        if (p.is_file() and p.suffix in POINT_SUFFIXES) or _is_scene_folder(p)
    )
    if not found:
        raise FileNotFoundError(
            f"{path}: no point clouds ({', '.join(POINT_SUFFIXES)} files or Pointcept scene "
            "folders with coord.npy) in this folder"
        )
    return found


def _dataset_resize(dataset: Mapping) -> tuple[int | None, str]:
    """``(num_points, sampling)`` the test dataset brings every cloud to (None: as read)."""
    try:
        params = inspect.signature(DATASETS.get(dataset.get("type"))).parameters
    except (KeyError, TypeError, ValueError):
        return None, "fps"
    if "num_points" not in params:
        return None, "fps"

    def value(name: str, fallback):
        param = params.get(name)
        default = fallback if param is None or param.default is param.empty else param.default
        return dataset.get(name, default)

    return value("num_points", None), value("sampling", "fps")


def _dataset_classes(dataset: Mapping) -> tuple[str, ...] | None:
    """The class names the test dataset reads from its files (ModelNet40's
    ``shape_names``), by building it without its data list; None where it cannot be built
    (its files are not on this machine)."""
    try:
        built = DATASETS.build({**dataset, "lazy_init": True, "pipeline": []})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    classes = built.metainfo.get("classes")
    return tuple(classes) if classes else None


class PointInferencer(Inferencer):
    """An :class:`Inferencer` of a point model (see the module doc); the constructor's
    arguments are the Inferencer's (``score_thr`` is unused). Class names: the checkpoint's
    ``dataset_meta``, else the config's metainfo, else those the test dataset reads from its
    files when they are on this machine (ModelNet40's ``shape_names``), else numbers."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        test_dataset = self.cfg.test_dataloader.dataset
        pack = [t for t in test_dataset.pipeline if t["type"] == "PackPointInputs"]
        if not pack:
            raise ValueError(
                "the config's test_dataloader.dataset.pipeline has no PackPointInputs: a "
                "point model's test pipeline must end with it"
            )
        self.fields = ("coord", *pack[-1].get("features", ()))
        self.num_points, self.sampling = _dataset_resize(test_dataset)
        classes = tuple(self.dataset_meta["classes"])
        if classes == tuple(str(i) for i in range(len(classes))):  # no names were found
            self.dataset_meta["classes"] = _dataset_classes(test_dataset) or classes

    def read(self, path: str | os.PathLike, fields: Sequence[str] | None = None) -> dict:
        """The cloud in ``path`` (file or scene folder); ``fields`` name a ``.npy`` /
        ``.txt`` file's columns (default: ``coord`` then the model's input features)."""
        path = os.fspath(path)
        if os.path.isdir(path) or path.endswith(".ply"):
            return read_points_file(path)
        delimiter = None
        if path.endswith(".txt"):
            with open(path) as f:
                delimiter = "," if "," in f.readline() else None
        return read_points_file(path, fields=tuple(fields or self.fields), delimiter=delimiter)

    def _cloud(self, item) -> tuple[dict, str]:
        """(cloud, its name) of a path, a cloud dict or an (N, 3 + C) array."""
        if isinstance(item, (str, os.PathLike)):
            return self.read(item), os.fspath(item)
        if isinstance(item, Mapping):
            return dict(item), str(item.get("file", "cloud"))
        if isinstance(item, np.ndarray):
            width = sum(FIELD_WIDTHS[f] for f in self.fields)
            if item.ndim != 2 or item.shape[1] != width:
                raise ValueError(
                    f"a point array must be (N, {width}): columns {list(self.fields)}; got "
                    f"shape {item.shape}"
                )
            starts = np.cumsum([0, *(FIELD_WIDTHS[f] for f in self.fields)])
            cloud = {f: item[:, a:b] for f, a, b in zip(self.fields, starts, starts[1:])}
            return cloud, "array"
        raise TypeError(
            "inputs must be point-cloud paths (.ply, .npy, .txt, scene folders), cloud dicts "
            f"or (N, 3 + C) arrays, or a list of them; got {type(item).__name__}"
        )

    def _prepare(self, item) -> dict:
        """The test pipeline's output for one cloud (labels dropped, resized as the test
        dataset does)."""
        cloud, name = self._cloud(item)
        cloud = {k: np.asarray(cloud[k]) for k in _INPUT_FIELDS if cloud.get(k) is not None}
        if "coord" not in cloud or cloud["coord"].ndim != 2 or cloud["coord"].shape[1] != 3:
            raise ValueError(f"{name}: a cloud needs coord (N, 3)")
        cloud["coord"] = cloud["coord"].astype(np.float32)
        if self.num_points is not None:
            cloud = fixed_size(cloud, self.num_points, self.sampling)
        return self.pipeline({**cloud, "file": name, "scene": Path(name).stem})

    def style(self, cloud, sample) -> tuple[np.ndarray, dict]:
        """(coord (N, 3), :func:`render_points` keywords) drawing ``sample``'s predictions
        on ``cloud`` (path, cloud dict or array, as given to the call): per-point classes
        with a legend, or the cloud's colours titled with the class and score."""
        cloud, _ = self._cloud(cloud)
        style = point_sample_style(
            sample,
            self.dataset_meta.get("classes"),
            prefix="pred",
            palette=self.dataset_meta.get("palette"),
            colors=cloud.get("color"),
        )
        return np.asarray(cloud["coord"]), style

    def visualize(self, cloud, sample, score_thr: float | None = None, **render_kwargs):
        """``sample``'s predictions drawn on ``cloud`` -> (H, W, 3) uint8 RGB; render_kwargs
        (view, size, point_radius, ...) go to
        :func:`~visionfm.visualization.points.render_points`."""
        coord, style = self.style(cloud, sample)
        return render_points(coord, **{**style, **render_kwargs})

    def turntable(self, cloud, sample, path: str | os.PathLike, **kwargs) -> str:
        """An mp4 of the drawing turning 360 degrees
        (:func:`~visionfm.visualization.points.write_turntable`; kwargs: frames, fps, size,
        ...). Returns the path."""
        coord, style = self.style(cloud, sample)
        return write_turntable(coord, path, **{**style, **kwargs})
