"""Convert a published whole-model checkpoint into a visionfm checkpoint and config.

    python tools/convert_checkpoint.py SRC --out DIR [--config CONFIG] [--data-root ROOT]

SRC: a Hugging Face ``save_pretrained`` folder (``config.json``, ``model.safetensors`` /
``pytorch_model.bin``, ``preprocessor_config.json``) or weights file, or an original
repository's checkpoint file (DETR, Deformable DETR, DINO, RF-DETR / LW-DETR, Mask2Former:
the families of ``visionfm.models.published``). Writes

- ``DIR/model.pth``: our checkpoint (``state_dict`` + ``meta.dataset_meta.classes``), for
  ``tools/test.py``, ``tools/demo.py``, ``Inferencer`` and ``load_from``;
- ``DIR/config.py``: a complete config: the family's model for the checkpoint, the test
  pipeline of its ``preprocessor_config.json`` (or of the original repository's evaluation),
  the class names (``id2label``; COCO's for original checkpoints) and a COCO val2017 test
  loader / evaluator under ``data_root`` (``--cfg-options data_root=...`` moves it).

Then::

    python tools/test.py DIR/config.py DIR/model.pth --cfg-options data_root=/data/coco/
    python tools/demo.py DIR street.jpg

``--config CONFIG`` builds the model from a visionfm config instead (a family that cannot
describe its model, or a checkpoint of your own variant); that config is written as
``DIR/config.py``. The load is strict: every tensor of the model placed, every tensor of the
file used, or the conversion is refused naming the keys / shapes and the argument to set.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
from pprint import pformat

import torch
from mmengine.config import Config

from visionfm.engine.cli import run_tool
from visionfm.engine.config import load_config
from visionfm.models.published import families, find_family
from visionfm.models.published_config import class_names, find_num_classes, published_config
from visionfm.registry import MODELS
from visionfm.weights import CheckpointError, load_converted, read_checkpoint, read_hf_config

_ORDER = ("model", "metainfo", "data_root", "test_pipeline", "test_dataloader", "test_evaluator")


def config_text(config: dict, source: str, family: str) -> str:
    """The python text of a converted config (the runtime defaults as its ``_base_``)."""
    lines = [
        f"# Converted by tools/convert_checkpoint.py from {source} ({family} family).",
        "# Evaluate: python tools/test.py THIS_FILE model.pth --cfg-options data_root=/path/to/data/",
        '_base_ = ["../_base_/default_runtime.py"]',
        "",
    ]
    keys = [k for k in _ORDER if k in config] + [k for k in config if k not in _ORDER]
    for key in keys:
        lines.append(f"{key} = {pformat(config[key], sort_dicts=False, width=100)}")
    return "\n".join(lines) + "\n"


def _check_source(path: str, config: str | None) -> None:
    """Refuse what is not a checkpoint file or a model folder, naming the fix."""
    if not osp.exists(path):
        raise CheckpointError(f"{path}: no such file or folder")
    if config is None and osp.isdir(path) and read_hf_config(path) is None:
        raise CheckpointError(
            f"{path} is a folder without a Hugging Face config.json: save the model with "
            "model.save_pretrained(folder) (it writes config.json), or pass --config "
            "CONFIG.py (a visionfm config that builds its model)"
        )


def convert(source: str, out: str, config: str | None = None, data_root: str | None = None):
    """Write ``out/model.pth`` and ``out/config.py`` for the checkpoint at ``source``; returns
    the load report."""
    _check_source(source, config)
    state, hf_config = read_checkpoint(source), read_hf_config(source)
    print(f"read {len(state)} tensors from {source}")
    if config is None:
        cfg_dict, family = published_config(source, data_root=data_root, state=state)
        cfg = Config(cfg_dict)
        described = "config.json" if hf_config else "tensor names and shapes"
        print(f"{family.name} checkpoint; the model from its {described}")
    else:
        cfg = load_config(config)
        family = find_family(state, hf_config)
        if family is None:
            raise CheckpointError(
                f"{source} is in no published layout we know (keys such as "
                f"{', '.join(sorted(state)[:4])}); known families: "
                f"{', '.join(f.name for f in families())}"
            )
    model = MODELS.build(cfg.model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"built {type(model).__name__} ({n_params / 1e6:.2f} M parameters); converting")
    report = load_converted(model, family.convert(state, model, hf_config), strict=True)
    print(report)

    classes = cfg.get("metainfo", {}).get("classes") or class_names(
        hf_config, find_num_classes(cfg.model)
    )
    os.makedirs(out, exist_ok=True)
    weights = osp.join(out, "model.pth")
    meta = dict(dataset_meta=dict(classes=tuple(classes)), converted_from=osp.abspath(source))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), weights)
    config_path = osp.join(out, "config.py")
    if config is None:
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(config_text(cfg_dict, source, family.name))
    else:
        cfg.dump(config_path)
    load_config(config_path)  # the written config loads (its keys are checked)
    print(f"wrote {weights} ({len(model.state_dict())} tensors) and {config_path}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description="published checkpoint (HF folder / original file) -> model.pth + config.py"
    )
    parser.add_argument("source", help="Hugging Face model folder or checkpoint file")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", help="a visionfm config building the model (optional)")
    parser.add_argument(
        "--data-root",
        help="root of the test loader's data (default: data/coco/; a point classifier's "
        "data/modelnet40_normal_resampled/ or data/ScanObjectNN/h5_files/main_split/)",
    )
    args = parser.parse_args()
    convert(args.source, args.out, args.config, args.data_root)


if __name__ == "__main__":
    run_tool(main)
