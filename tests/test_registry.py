"""Registries: recursive building, errors that name the key and suggest names."""

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config

from visionfm.registry import DATASETS, MODELS, TRANSFORMS, ConfigError, settings


@MODELS.register_module(force=True)
class _Encoder(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.proj = nn.Linear(width, width)


@MODELS.register_module(force=True)
class _Composite(nn.Module):
    def __init__(self, encoder: nn.Module, heads: list, scale: float = 1.0):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleList(heads)
        self.scale = scale


_SETTINGS = MappingProxyType(dict(max_per_img=100, score_thr=0.0))


@MODELS.register_module(force=True)
class _Wider(_Encoder):
    """Hands its other arguments on to ``_Encoder``."""

    def __init__(self, extra: int = 0, test_cfg: Mapping = _SETTINGS, **kwargs):
        super().__init__(**kwargs)
        self.test_cfg = settings(test_cfg, _SETTINGS, "test_cfg")


def test_nested_configs_are_built_before_the_constructor():
    model = MODELS.build(
        dict(
            type="_Composite",
            encoder=dict(type="_Encoder", width=3),
            heads=[dict(type="_Encoder"), dict(type="_Encoder", width=2)],
            scale=0.5,
        )
    )
    assert isinstance(model.encoder, _Encoder) and model.encoder.proj.in_features == 3
    assert [h.proj.in_features for h in model.heads] == [4, 2]
    assert model.scale == 0.5


def test_key_order_does_not_change_the_initial_weights(tmp_path):
    """The config mmengine dumps to the work dir (keys sorted) rebuilds the same weights."""
    cfg = Config.fromfile(Path(__file__).parents[1] / "configs/dino/dino_vit-t_synthetic.py")
    cfg.dump(tmp_path / "config.py")
    dumped = Config.fromfile(tmp_path / "config.py")
    assert list(dumped.model) != list(cfg.model)  # the dump did reorder the keys
    states = []
    for c in cfg, dumped:
        torch.manual_seed(0)
        states.append(MODELS.build(c.model).state_dict())
    assert list(states[0]) == list(states[1])
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name


def test_plain_python_construction_needs_no_config():
    model = _Composite(encoder=_Encoder(), heads=[_Encoder()])
    assert isinstance(model.encoder, nn.Module)


def test_unknown_type_names_key_registry_and_suggestion():
    with pytest.raises(ConfigError) as err:
        MODELS.build(dict(type="_Composite", encoder=dict(type="_Encodr"), heads=[]))
    msg = str(err.value)
    assert "model.encoder.type" in msg
    assert "visionfm::model" in msg
    assert "'_Encoder'" in msg


def test_unknown_argument_names_key_and_suggestion():
    with pytest.raises(ConfigError) as err:
        MODELS.build(dict(type="_Composite", encoder=dict(type="_Encoder", widht=3), heads=[]))
    msg = str(err.value)
    assert "model.encoder.widht" in msg and "'width'" in msg


def test_arguments_handed_to_the_base_class_are_checked_against_it():
    assert MODELS.build(dict(type="_Wider", width=3)).proj.in_features == 3
    with pytest.raises(ConfigError, match="model.widht: _Wider takes no argument.*'width'"):
        MODELS.build(dict(type="_Wider", widht=3))


def test_a_dict_of_settings_takes_only_its_keys():
    """A read-only mapping default declares the settings: some may be set, no other."""
    built = MODELS.build(dict(type="_Wider", test_cfg=dict(score_thr=0.5)))
    assert built.test_cfg == dict(max_per_img=100, score_thr=0.5)
    with pytest.raises(ConfigError, match="model.test_cfg.max_per_im: no such .*'max_per_img'"):
        MODELS.build(dict(type="_Wider", test_cfg=dict(max_per_im=5)))
    with pytest.raises(ConfigError, match="test_cfg.max_per_im: no such setting"):
        _Wider(test_cfg=dict(max_per_im=5))  # plain Python too


def test_missing_type_key():
    with pytest.raises(ConfigError, match="no 'type' key"):
        MODELS.build(dict(width=3))


def test_list_of_configs_builds_module_list():
    built = MODELS.build([dict(type="_Encoder"), dict(type="_Encoder")])
    assert isinstance(built, nn.ModuleList) and len(built) == 2


@pytest.mark.parametrize(
    "registry, name",
    [(MODELS, "visionfm.ops"), (DATASETS, "visionfm.data"), (TRANSFORMS, "visionfm.data")],
)
def test_registries_name_their_locations(registry, name):
    assert name in registry._locations


def test_lookup_imports_modules_itself():
    """A fresh interpreter finds a registered class without importing its module."""
    code = (
        "import sys\n"
        "from visionfm.registry import HOOKS\n"
        "assert 'visionfm.engine' not in sys.modules\n"
        "assert HOOKS.get('RNGStateHook') is not None\n"
        "assert 'visionfm.engine' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
