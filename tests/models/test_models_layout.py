"""Where model code lives: the one rule for finding a model folder, and the former module names."""

from __future__ import annotations

import importlib

import pytest
import torch

from mitokit.errors import MitokitError
from mitokit.models.checkpoint import (
    expand_checkpoints,
    load_state,
    load_weights,
    model_folder,
    save_model,
)

# former module -> (new module, names it must give as the very same objects)
MOVED = {
    "mitokit.models.io": (
        "mitokit.models.checkpoint",
        ["CONFIG", "WEIGHTS", "save_model", "load_model", "read_model_config", "load_state"],
    ),
    "mitokit.models.tasks_patch": (
        "mitokit.models.classifier",
        ["PatchClassifierTask", "PatchTransform", "read_patch_table", "patch_path", "center_crop"],
    ),
    "mitokit.models.tasks_tile": (
        "mitokit.models.classifier",
        ["TILE_CLASSIFIER", "TileClassifierTask", "TileRegressorTask", "read_tile_source"],
    ),
    "mitokit.models.patch_eval": (
        "mitokit.metrics.patches",
        ["evaluate_patch_file", "validation_threshold"],
    ),
    "mitokit.models.tile_eval": (
        "mitokit.metrics.tiles",
        ["read_tile_predictions", "truth_tile_scores", "evaluate_tile_scores", "sweep_table"],
    ),
    "mitokit.models.predictors": ("mitokit.models.classifier", ["TileScorePredictor"]),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_former_modules_give_the_same_objects(old):
    new, names = MOVED[old]
    old_mod, new_mod = importlib.import_module(old), importlib.import_module(new)
    for name in names:
        assert getattr(old_mod, name) is getattr(new_mod, name), name


def test_tasks_registered_from_their_packages():
    from mitokit.engines.task import get_task

    for name, module in (
        ("patch_classifier", "mitokit.models.classifier.patch_task"),
        ("tile_classifier", "mitokit.models.classifier.tile_task"),
        ("tile_regressor", "mitokit.models.classifier.tile_task"),
        ("diffusion", "mitokit.models.diffusion.task"),
    ):
        assert type(get_task(name)).__module__ == module


def _save(folder):
    model = torch.nn.Linear(2, 1)
    save_model(model, folder, task="toy", model_cfg={})
    return model


def test_model_folder_rule(tmp_path):
    run = tmp_path / "run"
    _save(run / "best")
    _save(run / "last")
    assert model_folder(run / "best") == run / "best"
    assert model_folder(run) == run / "best"  # a training run gives its best/
    assert model_folder(tmp_path) is None
    ens = tmp_path / "ens"
    _save(ens / "seed1")
    _save(ens / "seed0")
    assert expand_checkpoints([ens, run]) == [ens / "seed0", ens / "seed1", run / "best"]
    with pytest.raises(MitokitError, match="not a mitokit model folder"):
        expand_checkpoints([tmp_path / "run" / "best" / "model.safetensors"])


def test_load_weights_from_folder_or_file(tmp_path):
    from safetensors.torch import save_file

    model = _save(tmp_path / "m")
    expected = load_state(tmp_path / "m")
    for path in (tmp_path / "m", tmp_path / "m" / "model.safetensors"):
        got = load_weights(path)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in got)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.st")
    assert torch.equal(load_weights(tmp_path / "w.st")["weight"], model.weight.detach())
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    with pytest.raises(MitokitError, match="unreadable weights"):
        load_weights(tmp_path / "bad.safetensors")
    with pytest.raises(MitokitError, match="not a mitokit model folder"):
        load_weights(tmp_path / "missing")
