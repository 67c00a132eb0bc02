"""The demo's diffusion stage, run with tiny settings on a prepared demo folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from _tiny_diffusion import write_cells

from mitokit.demo.core import FULL, QUICK
from mitokit.demo.diffusion import (
    CONDITIONS,
    FULL_SETTINGS,
    QUICK_SETTINGS,
    DiffusionSettings,
    settings_for,
    stage_diffusion,
)
from mitokit.experiments.synthetic_studies import torch_threads
from mitokit.report import HtmlReport

TINY_SETTINGS = DiffusionSettings(
    epochs=1,
    batch_size=8,
    model={
        "sample_size": 16,
        "block_out_channels": [8, 16],
        "down_block_types": ["DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D"],
        "norm_num_groups": 4,
        "num_train_timesteps": 100,
    },
    n_sets=3,
    steps=5,
    n_cells=2,
    t_grid=(0, 50, 100),
    sets_per_grid=2,
)


def _save_ensemble(folder):
    """A one-member patch-classifier 'ensemble' with random weights (scores only need a range)."""
    from mitokit.engines.task import get_task
    from mitokit.models.io import save_model

    task = get_task("patch_classifier")
    cfg = {**task.model_defaults, "input_size": 32}
    torch.manual_seed(0)
    save_model(task.build_model(cfg), folder / "seed0", task="patch_classifier", model_cfg=cfg)
    return folder


def _run_stage(out, ensemble):
    ctx = {"ensemble": ensemble}
    report = HtmlReport("demo", root=out)
    said: list[str] = []
    with torch_threads(1):
        stage_diffusion(
            out,
            report,
            size=QUICK,
            seed=0,
            real_dir=None,
            say=said.append,
            ctx=ctx,
            settings=TINY_SETTINGS,
        )
    return out, report, ctx, said


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo folder after the stage: (out, report, ctx, messages)."""
    out = tmp_path_factory.mktemp("demo")
    write_cells(out / "patches", n=12, size=32, seed=3)
    return _run_stage(out, _save_ensemble(out / "models" / "patch_ensemble"))


def test_settings_follow_the_demo_size():
    assert settings_for(True) is QUICK_SETTINGS and settings_for(False) is FULL_SETTINGS
    assert QUICK.patches * QUICK_SETTINGS.epochs < FULL.patches * FULL_SETTINGS.epochs
    assert QUICK_SETTINGS.n_sets < FULL_SETTINGS.n_sets
    assert QUICK_SETTINGS.n_cells < FULL_SETTINGS.n_cells


def test_transitions_write_a_curve_over_eleven_conditions(demo):
    out, _, _, said = demo
    folder = out / "diffusion" / "transitions"
    with open(folder / "curve.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["condition"]) for r in rows] == pytest.approx(list(CONDITIONS))
    assert len(rows) == 11
    for r in rows:
        assert 0.0 <= float(r["mean"]) <= 1.0
        assert 0.0 <= float(r["median"]) <= 1.0
        assert int(r["n"]) == TINY_SETTINGS.n_sets
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["curve"]["mean"] == pytest.approx([float(r["mean"]) for r in rows], abs=1e-5)
    assert summary["n_sets"] == TINY_SETTINGS.n_sets
    assert summary["scheduler"] == TINY_SETTINGS.scheduler
    assert summary["steps"] == TINY_SETTINGS.steps
    assert summary["good_set_yield"] == pytest.approx(summary["n_good_sets"] / 3)
    with open(folder / "scores.csv", encoding="utf-8") as f:
        scores = [float(r["score"]) for r in csv.DictReader(f)]
    assert len(scores) == 3 * 11
    assert all(0.0 <= s <= 1.0 for s in scores)
    # two grid figures of at most two sets each, and the curve
    assert len(list((folder / "grids").glob("*.png"))) == 2
    assert (folder / "curve.png").stat().st_size > 0
    assert (folder / "selected.png").exists() == (summary["n_good_sets"] > 0)
    assert any("transition sets" in m for m in said)


def test_counterfactuals_give_a_likeness_row_per_negative_cell(demo):
    from mitokit.models.classifier import read_patch_table

    out, _, _, _ = demo
    folder = out / "diffusion" / "counterfactuals"
    with open(folder / "likeness.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == TINY_SETTINGS.n_cells
    table = read_patch_table(out / "patches" / "labels.csv")
    label = dict(zip(table.ids, table.score, strict=True))
    lowest = np.sort(table.score)[TINY_SETTINGS.n_cells - 1]
    grid = TINY_SETTINGS.t_grid
    for r in rows:
        # negative cells: a low label (<= 0.1, or among the lowest when too few are)
        assert label[r["id"]] <= max(0.1, lowest)
        scores = [float(r[f"score_t{t}"]) for t in grid]
        assert all(0.0 <= s <= 1.0 for s in scores)
        for key, thr in (("t_resembles", 0.5), ("t_convincing", 0.9)):
            reached = [t for t, s in zip(grid, scores, strict=True) if s >= thr]
            assert r[key] == (str(reached[0]) if reached else "")
        assert (folder / "strips" / f"{r['id']}.png").stat().st_size > 0
    assert (folder / "all_cells.png").stat().st_size > 0


def test_the_model_is_kept_and_the_report_gets_the_section(demo):
    from mitokit.models.diffusion import load_diffusion

    out, report, ctx, _ = demo
    model, _ = load_diffusion(ctx["diffusion"])
    assert model.sample_size == 16
    assert not (ctx["diffusion"] / "state").exists()  # pruned: best weights only
    titles = [s.title for s in report.sections]
    assert titles == ["Conditional diffusion: transitions and counterfactuals"]
    html = report.render()
    for rel in (
        "diffusion/transitions/curve.png",
        "diffusion/transitions/grids/sets_000000.png",
        "diffusion/counterfactuals/all_cells.png",
        "diffusion/counterfactuals/likeness.csv",
    ):
        assert rel in html
        assert (out / rel).is_file()
    summary = json.loads((out / "diffusion/transitions/summary.json").read_text(encoding="utf-8"))
    assert f"<td>all three: good sets</td><td>{summary['n_good_sets']}</td>" in html
    assert "likeness index" in html.lower()
    assert "not the image quality" in html


def test_the_same_seed_gives_the_same_files(demo, tmp_path):
    import shutil

    first = demo[0]
    out = tmp_path / "again"
    shutil.copytree(first / "patches", out / "patches")
    _run_stage(out, first / "models" / "patch_ensemble")
    for rel in ("transitions/scores.csv", "transitions/curve.csv", "counterfactuals/likeness.csv"):
        assert (out / "diffusion" / rel).read_bytes() == (first / "diffusion" / rel).read_bytes()
