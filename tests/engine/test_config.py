"""load_config: command-line overrides of a config file's variables reach every value the
file computed from them (mmengine alone fixes those when the file is read)."""

from pathlib import Path

import pytest

from visionfm.engine import load_config
from visionfm.registry import ConfigError

DEMO = str(Path(__file__).resolve().parents[2] / "configs/dino/dino_vit-t_synthetic.py")


def test_plain_load_is_mmengines():
    cfg = load_config(DEMO)
    assert cfg.max_epochs == cfg.train_cfg.max_epochs == 9


def test_a_variable_moves_the_keys_of_its_name_that_held_its_value(logs):
    cfg = load_config(DEMO, {"max_epochs": 10, "num_classes": 3})
    assert cfg.max_epochs == cfg.train_cfg.max_epochs == 10
    assert cfg.model.head.num_classes == cfg.model.head.denoising.num_classes == 3
    assert cfg.model.head.num_queries == 30  # untouched
    assert any("max_epochs 9 -> 10: also set train_cfg.max_epochs" in m for m in logs)


def test_keys_of_its_name_holding_other_values_are_kept_and_named(logs):
    """The demo overrides the schedule's lr (4e-4) with 1e-3: lr=2e-3 cannot tell whether
    1e-3 came from it, keeps it and says so."""
    cfg = load_config(DEMO, {"lr": 2e-3})
    assert cfg.lr == 2e-3 and cfg.optim_wrapper.optimizer.lr == 1e-3
    text = "\n".join(logs)
    assert "no key named 'lr' holds the old value" in text
    assert "optim_wrapper.optimizer.lr = 0.001" in text


def test_dotted_keys_set_only_themselves():
    cfg = load_config(DEMO, {"train_cfg.max_epochs": 3})
    assert cfg.train_cfg.max_epochs == 3 and cfg.max_epochs == 9


def test_data_root_moves_every_path_under_it(tmp_path):
    root = f"{tmp_path}/mydata/"
    cfg = load_config(DEMO, {"data_root": root})
    assert cfg.data_root == root
    assert cfg.train_dataloader.dataset.data_root == root
    assert cfg.val_evaluator.ann_file == root + "annotations/instances_val.json"


def test_a_python_file_that_is_not_a_config_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "script.py"
    path.write_text("x = 1 / 0\n")
    with pytest.raises(
        ConfigError, match=rf"{path} could not be read as a config file: ZeroDivisionError"
    ):
        load_config(str(path))
