import pytest

from edgetl.config import BuildConfig, load_build_config
from edgetl.errors import ConfigError


def test_yaml_config_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("target: jetson\ntrain: {epochs: 3, backbone: tiny}\n")
    cfg = load_build_config(p)
    assert cfg.target == "jetson" and cfg.train.epochs == 3
    cfg2 = cfg.with_overrides({"train.epochs": 5, "data.path": "x", "train.seed": None})
    assert cfg2.train.epochs == 5 and cfg2.data.path == "x" and cfg2.train.backbone == "tiny"


def test_unknown_key_in_config_is_an_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {epoch: 3}\n")
    with pytest.raises(ConfigError, match="field 'train.epoch': unknown field"):
        load_build_config(p)


def test_bad_override_names_the_field():
    with pytest.raises(ConfigError, match="train.batch_size"):
        BuildConfig().with_overrides({"train.batch_size": 0})
