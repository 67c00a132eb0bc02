"""The demo's last stage: a conditional diffusion model, its transitions and counterfactuals.

A tiny conditional DDPM (:mod:`mitokit.models.diffusion`, the ``diffusion`` task) is trained
through the engine on the demo's synthetic cell patches at 32 px, conditioned on each cell's
probabilistic label (the mean rater vote). With it, :mod:`mitokit.interpret` then

- generates transition sets (one noise per set, denoised at c = 0, 0.1, ..., 1 in 25 sampler
  steps) and scores them with the demo's patch-classifier ensemble: the score-vs-condition
  curve and the good sets (first score < 0.1, last > 0.9, no step >= 0.3) with their yield;
- takes a few real negative cells part-way into the diffusion (forward noise to t) and brings
  them back with c = 1: one strip per cell and the likeness index (the earliest t at which the
  ensemble scores the counterfactual >= 0.5 and >= 0.9).

The model is trained for minutes on a CPU: the stage shows the pipeline end to end, not image
quality. :data:`FULL_SETTINGS` and :data:`QUICK_SETTINGS` size it for the demo's two sizes;
tests pass smaller :class:`DiffusionSettings`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mitokit.report import HtmlReport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mitokit.demo.core import StageArgs

#: The conditions of every transition set (11 steps from 0 to 1).
CONDITIONS = tuple(round(0.1 * k, 1) for k in range(11))
#: Noise levels t of the counterfactuals (forward steps of a 1000-step schedule; 0 = the cell).
T_GRID = tuple(range(0, 1001, 100))
#: The good-set rule of the first paper.
FIRST_BELOW, LAST_ABOVE, MAX_STEP = 0.1, 0.9, 0.3
#: The likeness thresholds: "resembles" and "convincing".
LIKENESS = (0.5, 0.9)

#: The demo's network: 32 px, three levels of 16/32/64 channels without attention (about 0.6 M
#: weights; twice as fast per step on a CPU as TINY_MODEL's attention at 16x16), and a short
#: weight average, so that the weights sampled with have seen the late steps of a short run.
DEMO_MODEL: dict[str, Any] = {
    "sample_size": 32,
    "block_out_channels": [16, 32, 64],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "ema_decay": 0.995,
}


@dataclass(frozen=True)
class DiffusionSettings:
    """How much the diffusion stage trains and generates.

    The sampler is DDPM (ancestral) with 25 skipped steps: the same network calls as DDIM-25,
    but the deterministic samplers (DDIM, DPM-Solver) drew grey, noise-like cells from a model
    trained this briefly (mean ensemble score at c = 1: 0.09 with DDIM-25, 0.46 with DDPM-25,
    measured on the full demo's model), while the per-step noise corrects its errors.
    Classifier-free guidance 3 sharpens the condition (mean score at c = 1 about 0.8, against
    about 0.5 without).

    Attributes:
        epochs: Training epochs over the demo's patches.
        batch_size: Patches per training step.
        lr: Adam learning rate.
        model: ``model`` section over :data:`DEMO_MODEL`.
        n_train: Patches to train on (a seeded subset; None: all).
        n_sets: Transition sets.
        scheduler: Sampler (``ddpm``, ``ddim`` or ``dpm-solver``).
        steps: Sampler steps over the whole schedule.
        guidance: Classifier-free guidance scale of the sampling (1 = none).
        n_cells: Real negative cells given counterfactuals.
        t_grid: Noise levels of the counterfactuals.
        sets_per_grid: Rows of each transition grid figure.
    """

    epochs: int
    batch_size: int = 32
    lr: float = 1e-3
    model: Mapping[str, Any] = field(default_factory=dict)
    n_train: int | None = None
    n_sets: int = 32
    scheduler: str = "ddpm"
    steps: int = 25
    guidance: float = 3.0
    n_cells: int = 6
    t_grid: tuple[int, ...] = T_GRID
    sets_per_grid: int = 16


#: ``mitokit demo`` (2000 patches): 126 s on an idle two-core CPU (training 100 s).
FULL_SETTINGS = DiffusionSettings(epochs=15, n_sets=32, n_cells=8)
#: ``mitokit demo --quick`` (400 patches): 35 s on the same idle CPU.
QUICK_SETTINGS = DiffusionSettings(epochs=16, n_sets=12, n_cells=3, sets_per_grid=12)


def settings_for(quick: bool) -> DiffusionSettings:
    """The stage's settings for the full or the quick demo."""
    return QUICK_SETTINGS if quick else FULL_SETTINGS


def stage_diffusion(
    out: Path,
    report: HtmlReport,
    settings: DiffusionSettings | None = None,
    **stage: Unpack[StageArgs],
) -> None:
    """Train the conditional model, then write its transitions and counterfactuals.

    Needs ``out/patches/labels.csv`` (the patches stage) and ``ctx["ensemble"]`` (the folder of
    the patch-classifier ensemble). Writes ``out/diffusion/``: ``model/`` (the run, best
    weights only), ``transitions/`` and ``counterfactuals/`` (as ``mitokit generate`` writes
    them, plus ``transitions/curve.csv``), and one report section.

    Args:
        out: The demo folder.
        report: The demo's report.
        settings: Overrides the settings chosen by ``size.quick``.
        **stage: The driver's :class:`~mitokit.demo.core.StageArgs`: ``size`` (``quick``
            picks the settings), ``seed`` (of the training and of all generated noise),
            ``say``, and ``ctx`` (reads ``ensemble``; sets ``diffusion``).
    """
    from mitokit.demo.diffusion_report import write_report
    from mitokit.models.classifier import load_ensemble

    seed, say, ctx = stage["seed"], stage["say"], stage["ctx"]
    st = settings or settings_for(bool(stage["size"].quick))
    folder = out / "diffusion"
    labels = out / "patches" / "labels.csv"

    t = time.perf_counter()
    run = _train(folder / "model", labels, st, seed=seed)
    train_s = time.perf_counter() - t
    say(f"      trained ({epochs_text(st.epochs)}, {run['n_train']} patches) in {train_s:.0f} s")
    model = run["model"]
    ctx["diffusion"] = run["dir"]
    ensemble, _ = load_ensemble([ctx["ensemble"]])  # the demo's members use no centre crop

    t = time.perf_counter()
    meta = {
        "model": os.path.relpath(run["dir"], out),
        "classifier": os.path.relpath(ctx["ensemble"], out),
    }
    gen = _Generator(model, ensemble, st, seed, meta)
    tr = _transitions(folder / "transitions", gen)
    say(
        f"      {st.n_sets} transition sets x {len(CONDITIONS)} conditions in "
        f"{time.perf_counter() - t:.0f} s; good sets: {tr['n_good_sets']} "
        f"({100 * tr['good_set_yield']:.0f}%)"
    )

    t = time.perf_counter()
    cf = _counterfactuals(folder / "counterfactuals", gen, labels)
    say(f"      counterfactuals of {len(cf['ids'])} cells in {time.perf_counter() - t:.0f} s")

    shares = _label_shares(labels)
    write_report(report, st=st, run=run, train_s=train_s, tr=tr, cf=cf, labels=shares)


def _train(run_dir: Path, labels: Path, st: DiffusionSettings, *, seed: int) -> dict[str, Any]:
    """Train the model through the engine; keep its best weights only; load them."""
    from mitokit.engines import train
    from mitokit.experiments.harness import prune_run
    from mitokit.models.diffusion import load_diffusion

    cfg = {
        "task": "diffusion",
        "model": {**DEMO_MODEL, **dict(st.model)},
        "data": {
            "labels": str(labels),
            "condition": "soft",
            "folds": 0,
            "augment": True,
            "n_max": st.n_train,
            "split_seed": seed,
        },
        "optim": {"name": "adam", "lr": float(st.lr)},
        "train": {
            "epochs": int(st.epochs),
            "batch_size": int(st.batch_size),
            "seed": seed,
            "device": "cpu",
            "grad_clip": 1.0,
            "log_every": 0,
            "out": str(run_dir),
        },
    }
    result = train(cfg, progress=False)
    prune_run(result.out_dir)
    model, _ = load_diffusion(result.out_dir)
    return {
        "model": model,
        "dir": result.out_dir,
        "train_loss": [float(r["train_loss"]) for r in result.history],
        "n_train": _n_train(result.out_dir),
        "params": sum(p.numel() for p in model.net.parameters()),
    }


def _n_train(run_dir: Path) -> int | None:
    """Training patches of a run, from its ``info.json`` (None when not recorded)."""
    import json

    try:
        value = json.loads((run_dir / "info.json").read_text(encoding="utf-8")).get("train_size")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) else None


@dataclass(frozen=True)
class _Generator:
    """What the transitions and the counterfactuals are made with and recorded by."""

    model: Any  # the trained conditional diffusion model
    ensemble: Any  # the patch-classifier ensemble that scores the generated cells
    st: DiffusionSettings
    seed: int  # seed of all generated noise
    meta: dict[str, Any]  # what the written files record (the model's and classifier's folders)


def _transitions(folder: Path, gen: _Generator) -> dict[str, Any]:
    """Generate, score and write the transition sets; add ``curve.csv``."""
    from mitokit.interpret import generate_transitions, score_transitions, write_transitions
    from mitokit.io.atomic import write_text_atomic

    st = gen.st
    tr = generate_transitions(
        gen.model,
        st.n_sets,
        CONDITIONS,
        scheduler=st.scheduler,
        steps=st.steps,
        guidance=st.guidance,
        seed=gen.seed,
        batch_size=8 * len(CONDITIONS),
        device="cpu",
    )
    scores = score_transitions(tr, gen.ensemble, batch_size=128, device="cpu")
    summary = write_transitions(
        folder,
        tr,
        scores=scores,
        first_below=FIRST_BELOW,
        last_above=LAST_ABOVE,
        max_step=MAX_STEP,
        sets_per_grid=st.sets_per_grid,
        meta=gen.meta,
    )
    curve = summary["curve"]
    lines = ["condition,mean,median,se,n"]
    for k, c in enumerate(tr.conditions):
        se = curve["se"][k]
        lines.append(
            f"{c:.1f},{curve['mean'][k]:.6g},{curve['median'][k]:.6g},"
            f"{'' if se is None else f'{se:.6g}'},{tr.n_sets}"
        )
    write_text_atomic(folder / "curve.csv", "\n".join(lines) + "\n")
    grids = sorted((folder / "grids").glob("*.png"))
    return {**summary, "scores": scores, "grids": grids, "folder": folder}


def _negative_cells(labels: Path, n: int, *, seed: int) -> tuple[list[Path], list[str], np.ndarray]:
    """``n`` cells with a low label (mean vote <= 0.1, else the lowest), drawn with ``seed``."""
    from mitokit.models.classifier import read_patch_table

    table = read_patch_table(labels)
    score = np.asarray(table.score, dtype=np.float64)
    pool = np.flatnonzero(score <= 0.1)
    n = min(int(n), len(score))
    if len(pool) < n:
        pool = np.argsort(score, kind="stable")[:n]
    rng = np.random.default_rng([seed, 7])
    pick = np.sort(rng.choice(pool, size=n, replace=False))
    return [table.paths[i] for i in pick], [table.ids[i] for i in pick], score[pick]


def _counterfactuals(folder: Path, gen: _Generator, labels: Path) -> dict[str, Any]:
    """Counterfactuals (c = 1) of a few negative cells over the t grid, scored and written."""
    from mitokit.data.arrays import read_rgb
    from mitokit.interpret import counterfactual, score_images, write_counterfactuals
    from mitokit.interpret.figures import grid_figure
    from mitokit.interpret.selection import likeness_index

    st = gen.st
    paths, ids, label_scores = _negative_cells(labels, st.n_cells, seed=gen.seed)
    res = counterfactual(
        gen.model,
        [read_rgb(p) for p in paths],
        st.t_grid,
        condition=1.0,
        mode="noise",
        seed=gen.seed,
        scheduler=st.scheduler,
        steps=st.steps,
        guidance=st.guidance,
        batch_size=16,
        device="cpu",
    )
    scores = score_images(gen.ensemble, res.images, batch_size=128, device="cpu")
    summary = write_counterfactuals(
        folder, res, ids, scores=scores, thresholds=LIKENESS, meta=gen.meta
    )
    li = likeness_index(scores, res.t_grid, thresholds=LIKENESS)
    grid_figure(
        res.images,
        folder / "all_cells.png",
        col_labels=["input" if t == 0 else f"t={t}" for t in res.t_grid],
        row_labels=ids,
        scores=scores,
        title="Counterfactuals (c = 1) of negative cells by noise level t",
    )
    return {
        **summary,
        "ids": ids,
        "label_scores": label_scores,
        "scores": scores,
        "likeness": li,
        "folder": folder,
    }


def _label_shares(labels: Path) -> tuple[float, float]:
    """Shares of the patches whose label (mean vote) is exactly 0 and exactly 1."""
    from mitokit.models.classifier import read_patch_table

    score = np.asarray(read_patch_table(labels).score, dtype=np.float64)
    return float(np.mean(score == 0.0)), float(np.mean(score == 1.0))


def epochs_text(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")
