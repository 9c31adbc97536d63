"""Reading and writing point-cloud files in the layouts real datasets ship.

Every reader returns a *cloud*: a dict with ``coord`` float32 (N, 3) and, when the file
holds them, ``color`` float32 (N, 3) in 0..255, ``normal`` float32 (N, 3), ``segment``
int64 (N,) (-1 = ignored) and ``instance`` int64 (N,) (-1 = none); absent fields are None.

Formats:

- ModelNet40 (``modelnet40_normal_resampled``): ``<class>/<class>_0001.txt`` with
  comma-separated ``x,y,z,nx,ny,nz`` rows, ``modelnet40_shape_names.txt`` (one class per
  line, line k = label k) and ``modelnet40_{train,test}.txt`` (one shape name per line);
- ScanObjectNN: ``.h5`` with ``data`` (B, P, 3) and ``label`` (B,);
- Pointcept's per-scene folders (S3DIS / ScanNet preprocessed): ``coord.npy``,
  ``color.npy``, ``normal.npy``, ``segment.npy`` (or ``segment20.npy`` / ``segment200.npy``),
  ``instance.npy``;
- ``.ply`` (ASCII, binary little / big endian; vertex ``x y z``, optional ``red green blue``,
  ``nx ny nz``, ``label`` and ``instance``), and ``.npy`` / ``.txt`` arrays (N, 3 + C) whose
  columns are named by ``fields``.

Bad input (missing x/y/z, wrong column counts, NaN / inf coordinates, label ids out of
range, fields of different lengths, empty clouds) raises an error naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "FIELD_WIDTHS",
    "check_cloud",
    "read_modelnet40_names",
    "read_modelnet40_shape",
    "read_modelnet40_split",
    "read_ply",
    "read_pointcept_scene",
    "read_points_array",
    "read_points_file",
    "read_scanobjectnn_h5",
    "write_modelnet40",
    "write_ply",
    "write_pointcept_scene",
    "write_points_array",
    "write_scanobjectnn_h5",
]

FIELD_WIDTHS = {"coord": 3, "color": 3, "normal": 3, "segment": 1, "instance": 1}
_FLOAT_FIELDS = ("coord", "color", "normal")
_INT_FIELDS = ("segment", "instance")


def _cloud(**fields) -> dict:
    return {name: fields.get(name) for name in FIELD_WIDTHS}


def _load_npy(path: str | os.PathLike) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read as a .npy array ({e})") from e


def check_cloud(cloud: dict, path: str | os.PathLike, num_classes: int | None = None) -> dict:
    """Validate and normalise ``cloud`` in place (dtypes, (N,) labels); errors name ``path``.

    Refuses an empty cloud, NaN / inf coordinates or normals, fields whose length differs
    from ``coord``'s, and (given ``num_classes``) segment ids outside ``[-1, num_classes)``.
    """
    coord = cloud.get("coord")
    if coord is None or coord.ndim != 2 or coord.shape[1] != 3:
        shape = None if coord is None else coord.shape
        raise ValueError(f"{path}: expected coordinates of shape (N, 3), got {shape}")
    if len(coord) == 0:
        raise ValueError(f"{path}: empty point cloud (0 points)")
    for name in FIELD_WIDTHS:
        value = cloud.get(name)
        if value is None:
            cloud[name] = None
            continue
        if name in _INT_FIELDS:
            if value.ndim == 2 and value.shape[1] == 1:  # Pointcept's S3DIS stores (N, 1)
                value = value[:, 0]
            if value.ndim != 1:
                raise ValueError(f"{path}: {name} must have shape (N,), got {value.shape}")
            if not np.issubdtype(value.dtype, np.integer):
                if not np.all(np.isfinite(value)) or np.any(value != np.round(value)):
                    raise ValueError(f"{path}: {name} holds non-integer values")
            value = value.astype(np.int64)
        else:
            if value.ndim != 2 or value.shape[1] != 3:
                raise ValueError(f"{path}: {name} must have shape (N, 3), got {value.shape}")
            value = value.astype(np.float32)
        if len(value) != len(coord):
            raise ValueError(
                f"{path}: {name} has {len(value)} entries but coord has {len(coord)} points; "
                "every field needs one entry per point"
            )
        cloud[name] = value
    for name in ("coord", "normal"):
        value = cloud[name]
        bad = np.flatnonzero(~np.all(np.isfinite(value), axis=1)) if value is not None else []
        if len(bad):
            raise ValueError(
                f"{path}: {len(bad)} points have NaN / inf {name} values (first at row "
                f"{bad[0]}: {value[bad[0]].tolist()}); remove or repair them"
            )
    segment = cloud["segment"]
    if num_classes is not None and segment is not None:
        bad = np.flatnonzero((segment < -1) | (segment >= num_classes))
        if len(bad):
            raise ValueError(
                f"{path}: segment ids must lie in [0, {num_classes}) (or -1 = ignore); "
                f"{len(bad)} points have ids out of range, e.g. {segment[bad[0]]} at row "
                f"{bad[0]}; check num_classes or remap the labels"
            )
    return cloud


# ---------------------------------------------------------------- plain arrays (.npy, .txt)


def read_points_array(
    path: str | os.PathLike,
    fields: Sequence[str] = ("coord",),
    num_classes: int | None = None,
    delimiter: str | None = None,
) -> dict:
    """A ``.npy`` or ``.txt`` array (N, sum of widths) -> cloud; ``fields`` name its column
    groups in order (widths in ``FIELD_WIDTHS``; ``.txt`` columns split on whitespace, or on
    ``delimiter``, e.g. ``","``)."""
    unknown = [f for f in fields if f not in FIELD_WIDTHS]
    if unknown:
        raise ValueError(f"unknown fields {unknown}; choose from {list(FIELD_WIDTHS)}")
    path = str(path)
    if path.endswith(".npy"):
        array = _load_npy(path)
    else:
        with open(path) as f:
            rows = [line.split(delimiter) for line in f if line.strip()]
        if not rows:
            raise ValueError(f"{path}: empty point cloud (no rows)")
        counts = {len(row) for row in rows}
        if len(counts) > 1:
            first = next(i for i, row in enumerate(rows) if len(row) != len(rows[0]))
            raise ValueError(
                f"{path}: rows have different column counts ({sorted(counts)}); "
                f"row {first} has {len(rows[first])}, row 0 has {len(rows[0])}"
            )
        try:
            array = np.array(rows, dtype=np.float64)
        except ValueError as e:
            raise ValueError(f"{path}: non-numeric value ({e})") from e
    width = sum(FIELD_WIDTHS[f] for f in fields)
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(
            f"{path}: expected {width} columns for fields {list(fields)}, got an array of "
            f"shape {array.shape}; pass the fields the file holds"
        )
    cloud, start = {}, 0
    for name in fields:
        cloud[name] = array[:, start : start + FIELD_WIDTHS[name]]
        start += FIELD_WIDTHS[name]
    return check_cloud(_cloud(**cloud), path, num_classes)


def write_points_array(
    path: str | os.PathLike, cloud: dict, fields: Sequence[str] = ("coord",), delimiter=" "
) -> None:
    """Write ``cloud``'s ``fields`` as columns to ``.npy`` (float32) or text (``%.6f``)."""
    columns = [np.asarray(cloud[f], np.float64).reshape(len(cloud["coord"]), -1) for f in fields]
    array = np.concatenate(columns, axis=1)
    if str(path).endswith(".npy"):
        np.save(path, array.astype(np.float32))
    else:
        np.savetxt(path, array, fmt="%.6f", delimiter=delimiter)


# ---------------------------------------------------------------- PLY

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_PLY_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_PLY_PROPERTIES = {  # cloud field -> accepted vertex property names
    "coord": (("x", "y", "z"),),
    "color": (("red", "green", "blue"), ("r", "g", "b")),
    "normal": (("nx", "ny", "nz"),),
    "segment": (("label",), ("segment",), ("class",)),
    "instance": (("instance",),),
}


def _ply_header(data: bytes, path: str) -> tuple[str, list[tuple[str, int, list]], int]:
    """(format, [(element, count, [(property, type or None for a list)])], body offset)."""
    end = data.find(b"end_header")
    body = data.find(b"\n", end) + 1 if end >= 0 else 0
    if not data.startswith(b"ply") or body == 0:
        raise ValueError(f"{path}: not a PLY file (expected 'ply' ... 'end_header' + newline)")
    fmt, elements = None, []
    for line in data[:end].decode("ascii", "replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2 and words[1] in _PLY_FORMATS:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements and len(words) == 3 and words[1] in _PLY_TYPES:
            elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
        elif words[0] == "property" and elements and words[1:2] == ["list"]:
            elements[-1][2].append((words[-1], None))
        else:
            raise ValueError(f"{path}: cannot parse PLY header line {line!r}")
    if fmt is None:
        raise ValueError(f"{path}: PLY header has no 'format ascii|binary_*_endian 1.0' line")
    return fmt, elements, body


def read_ply(path: str | os.PathLike, num_classes: int | None = None) -> dict:
    """A ``.ply`` file's vertices -> cloud (faces and other elements after them ignored)."""
    path = str(path)
    with open(path, "rb") as f:
        data = f.read()
    fmt, elements, body = _ply_header(data, path)
    if not elements or elements[0][0] != "vertex":
        raise ValueError(f"{path}: the first PLY element must be 'vertex', got {elements}")
    _, count, props = elements[0]
    if any(t is None for _, t in props):
        raise ValueError(f"{path}: list properties on vertices are not supported: {props}")
    names = [name for name, _ in props]
    if fmt == "ascii":
        lines = data[body:].decode("ascii", "replace").split("\n")[:count]
        rows = [line.split() for line in lines]
        if len(rows) < count or any(len(row) != len(props) for row in rows):
            raise ValueError(
                f"{path}: expected {count} vertex rows of {len(props)} values ({names})"
            )
        try:
            table = np.array(rows, dtype=np.float64).reshape(count, len(props))
        except ValueError as e:
            raise ValueError(f"{path}: non-numeric PLY vertex value ({e})") from e
        columns = {name: table[:, i] for i, name in enumerate(names)}
    else:
        dtype = np.dtype([(name, _PLY_FORMATS[fmt] + t) for name, t in props])
        if len(data) - body < count * dtype.itemsize:
            raise ValueError(
                f"{path}: truncated PLY: {count} vertices of {dtype.itemsize} bytes need "
                f"{count * dtype.itemsize} bytes, the file has {len(data) - body}"
            )
        table = np.frombuffer(data, dtype, count=count, offset=body)
        columns = {name: table[name] for name in names}
    cloud = {}
    for field, alternatives in _PLY_PROPERTIES.items():
        found = next((a for a in alternatives if all(n in columns for n in a)), None)
        if found is not None:
            cloud[field] = np.stack([columns[n] for n in found], axis=1)
        elif field == "coord":
            raise ValueError(f"{path}: PLY vertices need x, y, z properties; found {names}")
    for field in _INT_FIELDS:
        if field in cloud:
            cloud[field] = cloud[field][:, 0]
    return check_cloud(_cloud(**cloud), path, num_classes)


_PLY_WRITE = (  # (cloud field, property names, PLY type, numpy type)
    ("coord", ("x", "y", "z"), "float", "<f4"),
    ("color", ("red", "green", "blue"), "uchar", "u1"),
    ("normal", ("nx", "ny", "nz"), "float", "<f4"),
    ("segment", ("label",), "int", "<i4"),
    ("instance", ("instance",), "int", "<i4"),
)


def write_ply(path: str | os.PathLike, cloud: dict, binary: bool = True) -> None:
    """Write ``cloud``'s fields as PLY vertex properties: float ``x y z``, uchar
    ``red green blue`` (rounded), float ``nx ny nz``, int ``label`` / ``instance``."""
    n = len(cloud["coord"])
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    header.append(f"element vertex {n}")
    present = [s for s in _PLY_WRITE if cloud.get(s[0]) is not None]
    columns = []
    for field, names, ply_type, np_type in present:
        value = np.asarray(cloud[field]).reshape(n, -1)
        if field == "color":
            value = np.clip(np.round(value), 0, 255)
        for i, name in enumerate(names):
            header.append(f"property {ply_type} {name}")
            columns.append((name, np_type, value[:, i]))
    header.append("end_header\n")
    table = np.empty(n, np.dtype([(name, t) for name, t, _ in columns]))
    for name, _, value in columns:
        table[name] = value
    with open(path, "wb") as f:
        f.write("\n".join(header).encode("ascii"))
        if binary:
            f.write(table.tobytes())
        else:
            fmts = ["%d" if np.dtype(t).kind in "ui" else "%.6f" for _, t, _ in columns]
            np.savetxt(f, table, fmt=fmts)


# ---------------------------------------------------------------- any single file


def read_points_file(path: str | os.PathLike, num_classes: int | None = None, **kwargs) -> dict:
    """A ``.ply``, ``.npy`` / ``.txt`` (``fields=`` for their columns) or a Pointcept scene
    folder -> cloud."""
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"point-cloud file not found: {path}")
    if os.path.isdir(path):
        return read_pointcept_scene(path, num_classes=num_classes, **kwargs)
    if path.endswith(".ply"):
        return read_ply(path, num_classes)
    if path.endswith((".npy", ".txt")):
        return read_points_array(path, num_classes=num_classes, **kwargs)
    raise ValueError(f"{path}: unsupported point-cloud file; expected .ply, .npy, .txt or a folder")


# ---------------------------------------------------------------- Pointcept scene folders


def read_pointcept_scene(
    folder: str | os.PathLike, segment_file: str | None = None, num_classes: int | None = None
) -> dict:
    """A Pointcept per-scene folder -> cloud. ``segment_file`` picks the labels (e.g.
    ``"segment200.npy"``); by default ``segment.npy``, else ``segment20.npy``, else none."""
    folder = Path(folder)
    if not (folder / "coord.npy").is_file():
        raise FileNotFoundError(f"{folder}: a Pointcept scene folder needs coord.npy")
    if segment_file is None:
        segment_file = next(
            (n for n in ("segment.npy", "segment20.npy") if (folder / n).is_file()), None
        )
    elif not (folder / segment_file).is_file():
        raise FileNotFoundError(f"{folder / segment_file}: segment file not found")
    files = {"coord": "coord.npy", "color": "color.npy", "normal": "normal.npy"}
    files.update(segment=segment_file, instance="instance.npy")
    cloud = {
        name: _load_npy(folder / file)
        for name, file in files.items()
        if file is not None and (folder / file).is_file()
    }
    return check_cloud(_cloud(**cloud), folder, num_classes)


def write_pointcept_scene(folder: str | os.PathLike, cloud: dict) -> None:
    """Write ``cloud`` as Pointcept does: float32 coord / normal, uint8 color, int16
    segment / instance ``.npy`` files (None fields are skipped)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dtypes = {"coord": np.float32, "color": np.uint8, "normal": np.float32}
    for name in FIELD_WIDTHS:
        if cloud.get(name) is not None:
            value = np.asarray(cloud[name])
            value = np.round(value) if name == "color" else value
            np.save(folder / f"{name}.npy", value.astype(dtypes.get(name, np.int16)))


# ---------------------------------------------------------------- ModelNet40


def read_modelnet40_names(root: str | os.PathLike, prefix: str = "modelnet40") -> list[str]:
    """``{prefix}_shape_names.txt`` -> class names (index = label)."""
    path = Path(root) / f"{prefix}_shape_names.txt"
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names")
    return names


def read_modelnet40_split(
    root: str | os.PathLike, split: str, prefix: str = "modelnet40"
) -> list[tuple[Path, int]]:
    """``{prefix}_{split}.txt`` -> [(``root/<class>/<name>.txt``, label)]."""
    classes = {name: i for i, name in enumerate(read_modelnet40_names(root, prefix))}
    path = Path(root) / f"{prefix}_{split}.txt"
    with open(path) as f:
        shapes = [line.strip() for line in f if line.strip()]
    items = []
    for shape in shapes:
        cls = shape.rsplit("_", 1)[0]
        if cls not in classes:
            raise ValueError(
                f"{path}: shape {shape!r} names class {cls!r}, which is not in "
                f"{prefix}_shape_names.txt"
            )
        items.append((Path(root) / cls / f"{shape}.txt", classes[cls]))
    return items


def read_modelnet40_shape(path: str | os.PathLike) -> dict:
    """One ModelNet40 ``x,y,z,nx,ny,nz`` file -> cloud with coord and normal."""
    return read_points_array(path, fields=("coord", "normal"), delimiter=",")


def write_modelnet40(
    root: str | os.PathLike,
    class_names: Sequence[str],
    splits: dict[str, list[tuple[int, dict]]],
    prefix: str = "modelnet40",
) -> None:
    """Write ``splits`` ({split: [(label, cloud with coord and normal)]}) in the ModelNet40
    layout; shapes are numbered per class from 1 across splits in the given order."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{prefix}_shape_names.txt").write_text("".join(f"{n}\n" for n in class_names))
    counts = dict.fromkeys(class_names, 0)
    for split, items in splits.items():
        names = []
        for label, cloud in items:
            cls = class_names[label]
            counts[cls] += 1
            names.append(f"{cls}_{counts[cls]:04d}")
            (root / cls).mkdir(exist_ok=True)
            write_points_array(root / cls / f"{names[-1]}.txt", cloud, ("coord", "normal"), ",")
        (root / f"{prefix}_{split}.txt").write_text("".join(f"{n}\n" for n in names))


# ---------------------------------------------------------------- ScanObjectNN


def read_scanobjectnn_h5(
    path: str | os.PathLike, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A ScanObjectNN ``.h5`` -> (points float32 (B, P, 3), labels int64 (B,))."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise OSError(f"{path}: cannot open as HDF5 ({e})") from e
    with f:
        missing = [k for k in ("data", "label") if k not in f]
        if missing:
            raise KeyError(f"{path}: ScanObjectNN .h5 needs datasets {missing}; has {list(f)}")
        points = np.asarray(f["data"], np.float32)
        labels = np.asarray(f["label"]).reshape(-1).astype(np.int64)
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[1] == 0:
        raise ValueError(f"{path}: 'data' must have shape (B, P>0, 3), got {points.shape}")
    if len(points) != len(labels):
        raise ValueError(f"{path}: {len(points)} clouds in 'data' but {len(labels)} labels")
    bad = np.flatnonzero(~np.all(np.isfinite(points), axis=(1, 2)))
    if len(bad):
        raise ValueError(f"{path}: clouds {bad[:5].tolist()} have NaN / inf coordinates")
    if num_classes is not None and np.any((labels < 0) | (labels >= num_classes)):
        raise ValueError(
            f"{path}: labels must lie in [0, {num_classes}); found {sorted(set(labels.tolist()))}"
        )
    return points, labels


def write_scanobjectnn_h5(path: str | os.PathLike, points: np.ndarray, labels: np.ndarray):
    """Write ``points`` (B, P, 3) and ``labels`` (B,) as ScanObjectNN's ``data`` / ``label``."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.asarray(points, np.float32))
        f.create_dataset("label", data=np.asarray(labels, np.int64))
