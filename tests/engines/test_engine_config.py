"""Training configs: defaults, typed overrides, and clear errors for every kind of bad input."""

from __future__ import annotations

import _toy_task  # noqa: F401 - registers the toy tasks
import pytest
from click.testing import CliRunner

from mitokit.cli import cli
from mitokit.engines.config import OPTIM_DEFAULTS, TRAIN_DEFAULTS, load_config, parse_value
from mitokit.errors import MitokitError


def _write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_fill_every_section():
    cfg = load_config({"task": "toy"})
    assert cfg["optim"] == OPTIM_DEFAULTS
    assert cfg["train"] == TRAIN_DEFAULTS
    assert cfg["optim"]["lr"] == 1e-5 and cfg["optim"]["name"] == "adam"
    assert cfg["model"] == {"hidden": 8, "weights": None, "dropout": 0.0, "features": 4}
    assert cfg["data"]["n"] == 256 and cfg["plugins"] == []


def test_yaml_values_and_typed_overrides(tmp_path):
    path = _write(tmp_path, "task: toy\noptim: {lr: 1e-3, name: SGD}\ntrain: {epochs: 7}\n")
    cfg = load_config(path)
    assert cfg["optim"]["lr"] == pytest.approx(1e-3) and isinstance(cfg["optim"]["lr"], float)
    assert cfg["optim"]["name"] == "sgd" and cfg["train"]["epochs"] == 7

    cfg = load_config(
        path,
        [
            "optim.lr=1e-4",
            "train.epochs=3",
            "train.deterministic=false",
            "optim.betas=[0.8, 0.99]",
            "model.hidden=16",
            "train.amp=off",
            "optim.weight_decay=0",
        ],
    )
    assert cfg["optim"]["lr"] == 1e-4 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["train"]["epochs"] == 3 and isinstance(cfg["train"]["epochs"], int)
    assert cfg["train"]["deterministic"] is False
    assert cfg["optim"]["betas"] == [0.8, 0.99]
    assert cfg["model"]["hidden"] == 16
    assert cfg["train"]["amp"] == "off"  # YAML 1.1 reads `off` as false
    assert isinstance(cfg["optim"]["weight_decay"], float)  # an int is fine where a float is due


def test_parse_value_reads_numbers_yaml_1_1_misses():
    assert parse_value("1e-5") == 1e-5
    assert parse_value("3") == 3 and parse_value("true") is True and parse_value("abc") == "abc"


def test_unknown_key_lists_valid_keys_and_suggests(tmp_path):
    path = _write(tmp_path, "task: toy\ntrain: {epoch: 3}\n")
    with pytest.raises(MitokitError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "unknown key train.epoch" in msg
    assert "did you mean train.epochs?" in msg
    assert "batch_size" in msg and "patience" in msg and "\n" not in msg


def test_unknown_override_key_names_the_override(tmp_path):
    path = _write(tmp_path, "task: toy\n")
    with pytest.raises(MitokitError, match=r"--set optim\.learning_rate=0\.1: unknown key"):
        load_config(path, ["optim.learning_rate=0.1"])
    with pytest.raises(MitokitError, match=r"valid keys of model: dropout, features, hidden"):
        load_config(path, ["model.hiden=3"])


def test_unknown_section(tmp_path):
    path = _write(tmp_path, "task: toy\ntrian: {epochs: 3}\n")
    with pytest.raises(MitokitError, match=r"unknown section trian \(did you mean train\?\)"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("optim: {lr: fast}", "optim.lr must be a number"),
        ("train: {epochs: 2.5}", "train.epochs must be an integer"),
        ("train: {deterministic: 1}", "train.deterministic must be true or false"),
        ("optim: {name: rmsprop}", "optim.name must be one of adam, sgd"),
        ("optim: {lr: -1.0}", "optim.lr must be > 0"),
        ("optim: {betas: [0.9]}", "optim.betas must be two numbers"),
        ("train: 5", "train must be a mapping"),
        ("model: {hidden: eight}", "model.hidden must be an integer"),
    ],
)
def test_wrong_types_and_values(tmp_path, text, problem):
    path = _write(tmp_path, f"task: toy\n{text}\n")
    with pytest.raises(MitokitError, match=problem):
        load_config(path)


def test_bad_yaml_missing_file_and_bad_override(tmp_path):
    path = _write(tmp_path, "task: toy\ntrain: {epochs: [1\n")
    with pytest.raises(MitokitError, match="invalid YAML") as err:
        load_config(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    with pytest.raises(MitokitError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(MitokitError, match="a config must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n", "list.yaml"))
    with pytest.raises(MitokitError, match="expected key=value"):
        load_config({"task": "toy"}, ["train.epochs"])


def test_task_and_plugins(tmp_path):
    with pytest.raises(MitokitError, match="unknown task 'nope'; known tasks: .*toy"):
        load_config({"task": "nope"})
    with pytest.raises(MitokitError, match="no task given"):
        load_config({})
    with pytest.raises(MitokitError, match="cannot import plugin 'no_such_module_xyz'"):
        load_config({"task": "toy", "plugins": ["no_such_module_xyz"]})
    cfg = load_config({"task": "toy-rigged"}, ["task=toy", "plugins=[_toy_task]"])
    assert cfg["task"] == "toy" and cfg["plugins"] == ["_toy_task"]


def test_cli_bad_config_is_one_line_exit_2(tmp_path):
    path = _write(tmp_path, "task: toy\ntrain: {epoch: 3}\n")
    res = CliRunner().invoke(cli, ["train", str(path)])
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and "did you mean train.epochs?" in res.output
    res = CliRunner().invoke(cli, ["train", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.output
