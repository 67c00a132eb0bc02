"""Demo stages: a patch-classifier ensemble and the Reg / Reg-NS / BC tile study.

:func:`stage_ensemble` trains three soft-label patch classifiers through the engine and scores
them and their mean on held-out generated patches; :func:`stage_reg_vs_regns` runs
:func:`~mitokit.experiments.synthetic_studies.reg_vs_regns` (its quick settings with ``--quick``)
and reports it. Both take the demo's stage arguments (:mod:`mitokit.demo.core`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mitokit.report import HtmlReport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mitokit.demo.core import DemoSize, StageArgs

#: Members of the patch-classifier ensemble (seeds ``seed`` ... ``seed + 2``).
ENSEMBLE_SEEDS = 3


def stage_ensemble(out: Path, report: HtmlReport, **stage: Unpack[StageArgs]) -> None:
    """Train the patch-classifier ensemble, score it on held-out patches, report; the
    ensemble's folder goes to ``ctx["ensemble"]``."""
    from mitokit.metrics.classification import calibration_table

    size, seed = stage["size"], stage["seed"]
    folder = out / "models" / "patch_ensemble"
    stage["ctx"]["ensemble"] = folder
    _train_ensemble(out, folder, size=size, seed=seed, say=stage["say"])
    y, scores = _ensemble_scores(folder, size=size, seed=seed)
    fig = out / "figures" / "ensemble_reliability.png"
    _plot_reliability({k: calibration_table(y, p, n_bins=10) for k, p in scores.items()}, fig)
    report.section("A patch-classifier ensemble")
    report.paragraph(
        f"{ENSEMBLE_SEEDS} ResNet-18 patch classifiers (seeds {seed} to "
        f"{seed + ENSEMBLE_SEEDS - 1}, random initial weights, 64-pixel input, "
        f"{size.ensemble_epochs} epochs, class-balanced batches, soft targets: the mean vote) "
        f"trained through the engine on the {size.patches} patches above, then scored on "
        f"{len(y)} held-out generated patches ({int(y.sum())} with m > 0.5). The ensemble "
        "averages the members' probabilities. Truth is the latent score: m > 0.5."
    )
    report.table(
        _ensemble_rows(y, scores),
        header=["model", "AUC", "balanced accuracy (0.5)", "ECE", "Brier"],
        caption="Held-out patches against the truth m > 0.5 (ECE: 15 equal-width bins).",
    )
    report.image(fig, caption="Reliability of the members and of the ensemble (10 bins).")


def _train_ensemble(
    out: Path, folder: Path, *, size: DemoSize, seed: int, say: Callable[[str], None]
) -> None:
    """One soft-label patch classifier per seed under ``folder``, best weights only."""
    from mitokit.engines import train
    from mitokit.experiments.harness import prune_run
    from mitokit.models.classifier import ensemble_configs

    base = {
        "task": "patch_classifier",
        "model": {"arch": "resnet18", "input_size": 64},
        "data": {
            "labels": str(out / "patches" / "labels.csv"),
            "target": "soft",
            "folds": 0,
            "batch_size": 32,
        },
        "optim": {"name": "adam", "lr": 1e-3, "weight_decay": 1e-4},
        "train": {
            "epochs": size.ensemble_epochs,
            "batch_size": 32,
            "seed": seed,
            "device": "cpu",
            "log_every": 0,
            "out": str(folder),
        },
    }
    for cfg in ensemble_configs(base, ENSEMBLE_SEEDS):
        t = time.perf_counter()
        prune_run(train(cfg, progress=False).out_dir)  # keep best/ only
        say(f"      seed {cfg['train']['seed']}: trained in {time.perf_counter() - t:.0f} s")


def _ensemble_scores(
    folder: Path, *, size: DemoSize, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The truth ``m > 0.5`` of held-out patches, and each member's and the ensemble's scores."""
    from mitokit.data.synthetic.generate import generate_patches
    from mitokit.experiments.harness import HELDOUT_SEED_OFFSET
    from mitokit.models.classifier import load_ensemble, predict_images

    ensemble, _ = load_ensemble([folder])
    held = generate_patches(size.heldout_patches, seed=seed + HELDOUT_SEED_OFFSET)
    images = list(held.images)
    y = (held.cells.m > 0.5).astype(np.int64)
    scores = {
        f"seed {seed + i}": predict_images(member, images, batch_size=128)
        for i, member in enumerate(ensemble.members)
    }
    scores[f"ensemble (mean of {len(ensemble)})"] = predict_images(ensemble, images, batch_size=128)
    return y, scores


def _ensemble_rows(y: np.ndarray, scores: dict[str, np.ndarray]) -> list[list]:
    """AUC, balanced accuracy, ECE and Brier score of each model."""
    from mitokit.metrics.classification import (
        balanced_accuracy,
        expected_calibration_error,
        roc_auc,
    )

    return [
        [
            name,
            roc_auc(y, p) if y.min() != y.max() else float("nan"),
            balanced_accuracy(y, (p >= 0.5).astype(np.float64)),
            expected_calibration_error(y, p),
            float(np.mean((p - y) ** 2)),
        ]
        for name, p in scores.items()
    ]


def _plot_reliability(tables: dict[str, list[dict[str, float]]], path: Path) -> None:
    from mitokit.experiments.harness import figure

    with figure(path, figsize=(4.8, 4.6), dpi=110) as (_, ax):
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        for name, rows in tables.items():
            bold = name.startswith("ensemble")
            ax.plot(
                [r["mean_prob"] for r in rows],
                [r["mean_true"] for r in rows],
                marker="o",
                ms=3,
                lw=2.2 if bold else 1.0,
                alpha=1.0 if bold else 0.6,
                label=name,
            )
        ax.set(
            xlabel="predicted probability (bin mean)",
            ylabel="share with m > 0.5",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend(loc="upper left", fontsize="small")


def stage_reg_vs_regns(out: Path, report: HtmlReport, **stage: Unpack[StageArgs]) -> None:
    """Run the Reg / Reg-NS / BC study (its quick settings with ``--quick``) and report it."""
    from mitokit.experiments.synthetic_studies import REG_QUICK, reg_vs_regns

    folder, say = out / "reg_vs_regns", stage["say"]
    res = reg_vs_regns(
        folder,
        seed=stage["seed"],
        **(REG_QUICK if stage["size"].quick else {}),
        say=lambda msg: say(f"      {msg}"),
    )
    report.section("Reg, Reg-NS and BC on crowd-labelled tiles")
    report.paragraph(_reg_intro(res))
    _reg_tables(report, res)
    if "roc" in res["figures"]:
        report.image(
            folder / res["figures"]["roc"], caption="ROC curves of the held-out sub-tiles."
        )
    report.paragraph(
        "FPR compared with Reg's at equal TPR: "
        + ("; ".join(_reg_verdicts(res)) or "not computable")
        + ". One small run on generated data, not a replication; "
        "`mitokit experiment synthetic reg-vs-regns` runs it at a chosen scale.",
        note=True,
    )
    report.link(folder / "result.json", "reg_vs_regns/result.json (every number of this study)")


def _reg_intro(res: dict) -> str:
    """What the Reg / Reg-NS / BC study trained and on what it was scored."""
    st, data = res["settings"], res["data"]
    ns = [n for n in res["methods"] if n.startswith("Reg-NS")]
    return (
        f"The third paper's tile models, trained through the engine on {st['n_train_tiles']} "
        f"generated tiles of {st['tile_size']} px labelled with crowd boxes and their agreement: "
        "Reg regresses the tile score s_t = sum r_i a_i on tiles with an event only, Reg-NS adds "
        f"negative_ratio negative tiles per positive one ({', '.join(ns) or 'none'}), "
        f"BC classifies s_t > 0 with one negative per positive. ResNet-18, random initial "
        f"weights, {st['sub_tile']}-px sub-tiles at stride {st['stride']} resampled to "
        f"{st['input_size']} px, {st['epochs']} epochs, the same seed. Scored on every sub-tile "
        f"of {st['n_test_tiles']} held-out tiles ({data['n_test_subtiles']} sub-tiles, "
        f"{data['n_test_positive']} with s_t > 0 from the held-out crowd labels)."
    )


def _reg_tables(report: HtmlReport, res: dict) -> None:
    """The summary table (AUC, rates at 0.5, FPR at equal TPR) and the per-threshold table."""
    methods, targets = res["methods"], res["equal_tpr"]["targets"]
    summary = [
        [
            name,
            _num(m["auc"]),
            _num(m["auc_latent"]),
            m["tpr"],
            m["fpr"],
            *(_num(m["fpr_at_tpr"][k]) for k in targets),
        ]
        for name, m in methods.items()
    ]
    report.table(
        summary,
        header=[
            "method",
            "AUC",
            "AUC (m > 0.5)",
            "TPR at 0.5",
            "FPR at 0.5",
            f"FPR at Reg's TPR ({targets['reg@0.5']:.3f})",
            *(f"FPR at TPR {k}" for k in list(targets)[1:]),
        ],
        caption="Held-out sub-tiles. AUC against s_t > 0 and against a true mitosis (m > 0.5) "
        "centred in the sub-tile; FPR at equal TPR read off the ROC curve.",
    )
    header = ["threshold"] + [f"{n} {k}" for n in methods for k in ("TPR", "FPR")]
    rows = [[f"{r['threshold']:.1f}"] + [r[h] for h in header[1:]] for r in res["table"]]
    report.table(
        rows,
        header=header,
        caption="TPR and FPR per threshold, as in the paper's Tables 4-7 (Reg's scores are "
        "tile-score estimates, BC's probabilities).",
    )


def _reg_verdicts(res: dict) -> list[str]:
    """``<method> lower / not lower at <target>`` for every defined comparison with Reg."""
    lower = res["answer"]["lower_fpr_than_reg"]
    where = {
        k: ("Reg's TPR" if k == "reg@0.5" else f"TPR {k}") for k in res["equal_tpr"]["targets"]
    }
    return [
        f"{name} {'lower' if v else 'not lower'} at {where[k]}"
        for name in lower
        for k, v in lower[name].items()
        if v is not None
    ]


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


__all__ = ["ENSEMBLE_SEEDS", "stage_ensemble", "stage_reg_vs_regns"]
