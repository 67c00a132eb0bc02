"""The synthetic studies (Reg vs Reg-NS vs BC; soft vs majority labels) at a tiny scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mitokit.cli import cli
from mitokit.errors import MitokitError
from mitokit.experiments import harness, reg_vs_regns, soft_vs_majority
from mitokit.experiments import synthetic_studies as studies

TINY = {"epochs": 1, "input_size": 32, "threads": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    out = tmp_path_factory.mktemp("reg") / "study"
    result = reg_vs_regns(
        out,
        seed=3,
        n_train_tiles=2,
        n_test_tiles=2,
        tile_size=512,
        sub_tile=128,
        stride=128,
        ratios=(0, 2),
        batch_size=8,
        **TINY,
    )
    return out, result


@pytest.fixture(scope="module")
def soft(tmp_path_factory):
    out = tmp_path_factory.mktemp("soft") / "study"
    result = soft_vs_majority(
        out, seed=5, n_patches=60, n_test_patches=30, batch_size=8, folds=3, **TINY
    )
    return out, result


def test_reg_methods_have_monotone_rates_at_the_nine_thresholds(reg):
    out, res = reg
    assert list(res["methods"]) == ["Reg", "Reg-NS2", "BC"]
    assert res["methods"]["Reg-NS2"]["negative_ratio"] == 2
    assert res["methods"]["BC"]["task"] == "tile_classifier"
    for name, m in res["methods"].items():
        rows = m["rows"]
        assert [r["threshold"] for r in rows] == pytest.approx(list(studies.THRESHOLDS)), name
        for key in ("tpr", "fpr"):
            values = np.array([r[key] for r in rows])
            assert ((values >= 0) & (values <= 1)).all(), (name, key)
            assert (np.diff(values) <= 0).all(), (name, key, values)
        assert set(m["fpr_at_tpr"]) == {"reg@0.5", "0.8", "0.9"}
    # The paper's table layout: one row per threshold, a TPR and an FPR column per method.
    assert len(res["table"]) == 9
    assert set(res["table"][0]) == {"threshold"} | {
        f"{n} {k}" for n in res["methods"] for k in ("TPR", "FPR")
    }
    on_disk = json.loads((out / "result.json").read_text())
    assert on_disk["methods"]["Reg"]["rows"] == res["methods"]["Reg"]["rows"]
    assert (out / "sweep.csv").read_text().splitlines()[0].startswith("threshold,Reg TPR")
    for rel in res["figures"].values():
        assert (out / rel).is_file()


def test_reg_predicts_on_held_out_images_only(reg):
    out, res = reg
    split = res["split"]
    assert split["train_seed"] != split["test_seed"]
    assert split["train_images"] and split["test_images"]
    assert not set(split["train_sha1"]) & set(split["test_sha1"])
    # Every sub-tile of every test image was scored: 2 images x 4 x 4 sub-tiles of 128 px.
    assert res["data"]["n_test_subtiles"] == 2 * 16
    assert (out / "data" / "train" / "crowd.json").is_file()
    assert (out / "data" / "test" / "crowd.json").is_file()


def test_reg_answer_compares_every_method_with_reg(reg):
    _, res = reg
    equal = res["equal_tpr"]
    assert equal["targets"]["reg@0.5"] == res["methods"]["Reg"]["tpr"]
    assert set(res["answer"]["lower_fpr_than_reg"]) == {"Reg-NS2", "BC"}


def test_soft_and_majority_share_split_and_held_out_test(soft):
    out, res = soft
    split = res["split"]
    assert split["same_split"] is True
    assert split["majority"] == split["soft"]
    assert split["soft"]["train"] and split["soft"]["val"]
    assert not set(split["soft"]["train"]) & set(split["soft"]["val"])
    assert split["train_seed"] != split["test_seed"]
    assert res["data"]["n_test"] == 30
    for name in ("majority", "soft"):
        m = res["methods"][name]
        for key in ("balanced_accuracy", "ece_truth", "ece_m", "ece_votes", "brier_truth"):
            assert 0.0 <= m[key] <= 1.0, (name, key)
        assert m["auc"] is None or 0.0 <= m["auc"] <= 1.0
    assert set(res["answer"]) == {
        "soft_lower_ece_truth",
        "soft_lower_ece_m",
        "soft_lower_ece_votes",
    }
    cfg_m = json.loads((out / "runs" / "majority" / "config.resolved.json").read_text())
    cfg_s = json.loads((out / "runs" / "soft" / "config.resolved.json").read_text())
    assert (cfg_m["data"]["target"], cfg_s["data"]["target"]) == ("majority", "soft")
    assert cfg_m["train"]["seed"] == cfg_s["train"]["seed"]
    assert (out / res["figures"]["reliability"]).is_file()
    # Weights are not kept by default; the logs are.
    assert res["methods"]["soft"]["model"] is None
    assert (out / "runs" / "soft" / "log.csv").is_file()
    assert not any((out / "runs" / "soft" / d).exists() for d in ("best", "last", "state"))


def test_bad_settings_and_used_folders_are_user_errors(tmp_path):
    with pytest.raises(MitokitError, match="must include 0"):
        reg_vs_regns(tmp_path / "a", ratios=(1, 2))
    assert not (tmp_path / "a").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "x.txt").write_text("x")
    with pytest.raises(MitokitError, match="not empty"):
        soft_vs_majority(used, n_patches=8, n_test_patches=4)


def test_run_settings_are_checked_before_any_folder_is_made(tmp_path):
    """Every study takes the harness's run settings; the device goes through the one resolver."""
    with pytest.raises(TypeError, match="sede"):
        reg_vs_regns(tmp_path / "a", sede=1)
    with pytest.raises(MitokitError, match="unknown device"):
        soft_vs_majority(tmp_path / "b", device="tpu")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    a = harness.arguments(
        {"n": 10, "m": 4, "epochs": 2, "run": {"scale": 0.5, "device": "cpu"}}, train="n", test="m"
    )
    assert (a.n_train, a.n_test, a.counts, a.dev) == (5, 2, {"n": 5, "m": 2}, "cpu")
    assert (a.seed, a.threads, a.keep_models, a.n_slides) == (0, None, False, 0)


def test_a_failed_study_leaves_no_folder(tmp_path, monkeypatch):
    def boom(*_, **__):
        raise MitokitError("training failed")

    monkeypatch.setattr(harness, "train_run", boom)
    with pytest.raises(MitokitError, match="training failed"):
        soft_vs_majority(tmp_path / "s", n_patches=8, n_test_patches=4, **TINY)
    assert not (tmp_path / "s").exists()


def test_cli_soft_vs_majority_json(tmp_path):
    out = tmp_path / "cli"
    args = ["experiment", "synthetic", "soft-vs-majority", "--out", str(out), "--quick"]
    res = CliRunner().invoke(
        cli, [*args, "--scale", "0.05", "--threads", "1", "--device", "cpu", "--json"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["study"] == "soft_vs_majority" and data["settings"]["epochs"] == 2
    again = CliRunner().invoke(cli, [*args, "--scale", "0.05"])
    assert again.exit_code == 2 and "not empty" in again.output


def _imported_modules(path, package):
    """Every module a source file imports, and ``module.name`` of each ``from`` import
    (relative imports resolved against ``package``)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _core_imports_of_studies(root):
    """``file: module`` for each import of mitokit.experiments / mitokit.demo outside
    experiments/, demo/ and cli/ of the package folder ``root``."""
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("experiments", "demo", "cli"):
            continue
        package = ".".join(["mitokit", *rel.parts[:-1]])
        for name in _imported_modules(path, package):
            if name.split(".")[:2] in (["mitokit", "experiments"], ["mitokit", "demo"]):
                offenders.append(f"{rel}: {name}")
    return offenders


def test_the_library_core_never_imports_the_studies_or_the_demo(tmp_path):
    """Only experiments/, demo/ and the CLI may import mitokit.experiments or mitokit.demo."""
    from pathlib import Path

    import mitokit

    root = Path(mitokit.__file__).parent
    assert len(list(root.rglob("*.py"))) > 20  # the scan sees the package
    assert _core_imports_of_studies(root) == []
    # The scan itself catches absolute, relative and lazy imports.
    fake = tmp_path / "mitokit"
    (fake / "models" / "wss").mkdir(parents=True)
    (fake / "cli").mkdir()
    (fake / "cli" / "ok.py").write_text("from mitokit.demo import run_demo\n")
    (fake / "metrics.py").write_text("def f():\n    import mitokit.experiments.harness\n")
    (fake / "models" / "wss" / "a.py").write_text("from ...experiments import harness\n")
    (fake / "models" / "b.py").write_text("from .. import demo\n")
    found = _core_imports_of_studies(fake)
    assert {f.split(":")[0] for f in found} == {"metrics.py", "models/wss/a.py", "models/b.py"}
