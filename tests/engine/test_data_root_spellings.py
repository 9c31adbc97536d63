"""``--cfg-options data_root=/x/y`` and ``data_root=/x/y/`` resolve every shipped config the
same, with the paths under it joined (``/x/y/annotations/...``, never ``/x/yannotations``)."""

import re
from pathlib import Path

import pytest

from visionfm.engine import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(p for p in CONFIGS.glob("**/*.py") if "_base_" not in p.parts)
ROOT = "/x/y"


def _strings(node, path=""):
    """(dotted key, value) of every string nested in ``node``."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")


def test_every_shipped_config_is_checked():
    assert len(SHIPPED) > 30 and all("_base_" not in p.parts for p in SHIPPED)


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_both_spellings_of_data_root_resolve_the_same(config):
    plain = load_config(str(config))
    if "data_root" not in plain:
        pytest.skip("the config reads no data")
    bare = load_config(str(config), {"data_root": ROOT}).to_dict()
    slash = load_config(str(config), {"data_root": ROOT + "/"}).to_dict()
    assert bare == slash
    moved = {key: value for key, value in _strings(slash) if value.startswith(ROOT)}
    assert moved["data_root"] == ROOT + "/"
    assert len(moved) > 1, "no path followed data_root"
    badly_joined = {k: v for k, v in moved.items() if re.match(re.escape(ROOT) + r"[^/]", v)}
    assert not badly_joined


def test_a_root_the_config_spells_without_slash_is_kept_as_given(tmp_path):
    """Only a root the config ends with "/" gets one: a root the file spells without one
    builds its paths with a separator of its own."""
    config = tmp_path / "c.py"
    config.write_text('data_root = "data/a"\nann_file = data_root + "/ann.json"\n')
    cfg = load_config(str(config), {"data_root": "/x/y"})
    assert cfg.data_root == "/x/y" and cfg.ann_file == "/x/y/ann.json"
