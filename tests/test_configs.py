"""Every experiment config in configs/ is valid for its task."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitokit.engines.config import load_config
from mitokit.engines.task import get_task

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_names_a_known_task(path):
    cfg = load_config(path)
    task = get_task(cfg["task"])
    assert set(cfg["model"]) <= set(task.model_defaults)
    assert set(cfg["data"]) <= set(task.data_defaults)
    assert cfg["train"]["out"]


def test_there_are_configs_for_each_formulation():
    names = {p.stem for p in CONFIGS}
    assert {"patch-classifier", "amibr-atypical", "tile-bc", "tile-reg", "tile-reg-ns"} <= names
    assert {"diffusion", "amibr-diffusion"} <= names
    assert {"det", "det-ns", "det-wl", "det-ns-wl", "weak-localiser"} <= names
