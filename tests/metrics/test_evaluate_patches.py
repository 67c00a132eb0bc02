"""A seed ensemble trained by `mitokit train --seeds`, scored by `mitokit evaluate patches`."""

from __future__ import annotations

import json

import numpy as np
import yaml
from click.testing import CliRunner

from mitokit.cli import cli
from mitokit.data.synthetic.export import write_patch_dataset
from mitokit.data.synthetic.generate import generate_patches
from mitokit.io.annotations import read_annotations


def test_evaluate_patches_on_heldout_rows(tmp_path):
    batch = generate_patches(24, seed=0, size=32)
    data = tmp_path / "patches"
    data.mkdir()
    write_patch_dataset(data, batch.images, batch.cells, seed=0)
    ids = [a.id for a in read_annotations(data / "labels.csv")]
    split = tmp_path / "train_ids.csv"
    split.write_text("id\n" + "\n".join(ids[:16]) + "\n")
    cfg = {
        "task": "patch_classifier",
        "model": {"arch": "resnet18", "input_size": 32},
        "data": {
            "labels": str(data / "labels.csv"),
            "split": str(split),
            "folds": 0,
            "batch_size": 8,
            "augment": False,
        },
        "optim": {"lr": 1e-3},
        "train": {"epochs": 1, "out": str(tmp_path / "run")},
    }
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(
        cli, ["train", str(cfg_path), "--seeds", "2", "--no-progress", "--json"]
    )
    assert res.exit_code == 0, res.output
    members = json.loads(res.stdout)["members"]
    assert [m["out"] for m in members] == [str(tmp_path / "run" / f"seed{i}") for i in (0, 1)]
    res = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "patches",
            "--model",
            str(tmp_path / "run"),
            "--labels",
            str(data / "labels.csv"),
            "--exclude-ids",
            str(split),
            "--json",
            "--scores",
            str(tmp_path / "s.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n"] == 8 and out["members"] == 2
    scored = (tmp_path / "s.csv").read_text().splitlines()[1:]
    assert {line.split(",")[0] for line in scored} == set(ids[16:])
    assert 0.0 <= out["auc"] <= 1.0 and 0.0 <= out["ece"] <= 1.0
    assert np.isfinite(out["balanced_accuracy"])


def test_threshold_chosen_on_the_models_validation_rows(tmp_path):
    from mitokit.metrics.classification import best_threshold
    from mitokit.models.classifier import PatchClassifierTask, load_ensemble, predict_images

    batch = generate_patches(30, seed=1, size=32)
    data = tmp_path / "patches"
    data.mkdir()
    write_patch_dataset(data, batch.images, batch.cells, seed=1)
    ids = [a.id for a in read_annotations(data / "labels.csv")]
    split = tmp_path / "train_ids.csv"
    split.write_text("id\n" + "\n".join(ids[:20]) + "\n")
    data_cfg = {
        "labels": str(data / "labels.csv"),
        "split": str(split),
        "folds": 2,
        "batch_size": 8,
        "augment": False,
    }
    cfg = {
        "task": "patch_classifier",
        "model": {"arch": "resnet18", "input_size": 32},
        "data": data_cfg,
        "train": {"epochs": 1, "out": str(tmp_path / "run")},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(cli, ["train", str(tmp_path / "cfg.yaml"), "--no-progress"])
    assert res.exit_code == 0, res.output
    args = ["evaluate", "patches", "--model", str(tmp_path / "run"), "--labels"]
    args += [str(data / "labels.csv"), "--exclude-ids", str(split), "--json"]
    res = CliRunner().invoke(cli, [*args, "--threshold", "validation"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    # the same rows the run validated on, re-scored, give the same threshold
    table, _, _, val_idx = PatchClassifierTask().split_rows(data_cfg)
    assert out["threshold_source"] == "validation" and out["n_validation"] == len(val_idx) > 0
    assert not {table.ids[i] for i in val_idx} & set(ids[20:])  # never the evaluated rows
    ens, _ = load_ensemble([tmp_path / "run"])
    scores = predict_images(ens, [table.paths[i] for i in val_idx])
    assert out["threshold"] == best_threshold(table.label[val_idx], scores)
    # a word that is neither a number nor "validation": a usage error
    res = CliRunner().invoke(cli, [*args, "--threshold", "val"])
    assert res.exit_code == 2 and "neither a number" in res.output
    # the test rows themselves may not choose the threshold
    res = CliRunner().invoke(
        cli, [*args[:6], "--only-ids", str(split), "--json", "--threshold", "validation"]
    )
    assert res.exit_code != 0 and "overlap" in res.output
