"""Registries: recursive building, errors that name the key and suggest names."""

import subprocess
import sys

import pytest
import torch.nn as nn

from visionfm.registry import DATASETS, MODELS, TRANSFORMS, ConfigError


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
