"""Soft vs majority labels for the patch classifier (first paper), re-run on generated patches.

:func:`soft_vs_majority` asks: does a patch classifier trained on the pathologists' mean vote
(soft labels) have a lower calibration error than one trained on their majority vote?

Training patches (seed ``seed``) and held-out test patches (seed ``seed +``
:data:`~mitokit.experiments.harness.HELDOUT_SEED_OFFSET`) are rated by the same noisy panel
(:class:`~mitokit.data.synthetic.labelling.RaterPanel` with ``rater_noise``, ``repeat_fraction``
of the cells rated again) and written under ``out_dir/data``. Both runs train a ResNet-18 through
the engine with the same seed, the same training / validation split (fold 0 of ``folds``, grouped
and stratified as the task does; the best epoch by validation loss is kept) and the same batches;
only ``data.target`` differs.

Evaluation on the test patches, against the truth:

- ``auc``, ``balanced_accuracy`` (at 0.5): against ``m > 0.5``;
- ``ece_truth``: ECE against ``m > 0.5``; ``ece_m``: against the latent ``m`` itself;
  ``ece_votes``: against the test panel's mean vote (the probabilistic label);
- ``auc_majority_votes``: AUC against the test panel's majority (what a study without truth
  would report).

:data:`SOFT_QUICK` is the ``--quick`` setting (under two minutes on one CPU core).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from mitokit.errors import MitokitError
from mitokit.experiments.harness import (
    Arm,
    Study,
    arguments,
    arm_engine,
    auc_or_none,
    figure,
    fmt,
    positive_int,
    write_csv,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mitokit.experiments.harness import RunSettings, Say, Trained


#: Settings of :func:`soft_vs_majority` for ``--quick``.
SOFT_QUICK: dict[str, Any] = {"n_patches": 400, "n_test_patches": 300, "epochs": 2}

#: The two arms: the label each trains on.
TARGETS = ("majority", "soft")


def soft_vs_majority(
    out_dir: str | os.PathLike,
    *,
    n_patches: int = 1500,
    n_test_patches: int = 600,
    epochs: int = 4,
    input_size: int = 64,
    rater_noise: float = 0.15,
    n_raters: int = 3,
    repeat_fraction: float = 0.5,
    folds: int = 5,
    balanced: bool = True,
    batch_size: int = 32,
    lr: float = 1e-3,
    n_bins: int = 10,
    figures: bool = True,
    say: Say = None,
    **run: Unpack[RunSettings],
) -> dict[str, Any]:
    """Patch classifier trained on majority vs soft (mean-vote) labels: AUC and calibration.

    The design and what is reported: the module's description.

    Args:
        out_dir: Folder for data, runs, ``result.json``, ``calibration.csv`` and
            ``figures/reliability.png``; created, and must be empty if it exists.
        n_patches: Training patches (train + validation; before ``scale``).
        n_test_patches: Held-out test patches (before ``scale``).
        epochs: Training epochs.
        input_size: Side the 64-pixel patches are resampled to inside the model.
        rater_noise: SD of each pathologist's view of ``m``.
        n_raters: Pathologists in the panel.
        repeat_fraction: Share of cells each pathologist rates again.
        folds: Validation folds (fold 0 validates); 0 trains on every patch, keeping the last
            epoch.
        balanced: Class-balanced batches (the first paper's setting).
        batch_size: Patches per step.
        lr: Adam learning rate (random initial weights).
        n_bins: Equal-width bins of the calibration error and the reliability diagram.
        figures: Write the reliability diagram.
        say: Progress messages.
        **run: The :class:`~mitokit.experiments.harness.RunSettings` (``seed``, ``scale``,
            ``device``, ``threads``, ``keep_models``).

    Returns:
        ``{"study", "question", "settings", "data", "split", "methods", "answer",
        "calibration", "figures", "seconds"}``; ``methods`` has ``majority`` and ``soft``.

    Raises:
        MitokitError: Bad settings, or a non-empty ``out_dir``.
    """
    a = _checked(arguments(locals(), train="n_patches", test="n_test_patches", minimum=(4, 2)))
    with Study.of("soft-vs-majority", out_dir, a, say) as study:
        study.say(f"generating {a.n_train} training and {a.n_test} test patches")
        test = _write_data(study, a)
        evaluation = _Evaluation(study, test, a)
        methods = study.run_arms(_arms(a, study.out / "data" / "train"), evaluation)
        return study.finish(_summary(evaluation, methods), {})


def _checked(a: SimpleNamespace) -> SimpleNamespace:
    """Validate this study's own arguments; add ``panel``."""
    from mitokit.data.synthetic.labelling import RaterPanel

    a.n_bins = positive_int(a.n_bins, "n_bins")
    try:
        a.panel = RaterPanel(
            n_raters=a.n_raters, noise=a.rater_noise, repeat_fraction=a.repeat_fraction
        )
    except ValueError as exc:
        raise MitokitError(f"rater settings: {exc}") from None
    return a


def _settings(a: SimpleNamespace) -> dict[str, Any]:
    """The soft-label study's own settings, as its result records them (:meth:`Study.settings`
    adds the seeds, the data counts, the device and the threads)."""
    return {
        "epochs": a.epochs,
        "arch": "resnet18",
        "input_size": int(a.input_size),
        "panel": {
            "n_raters": int(a.n_raters),
            "noise": float(a.rater_noise),
            "repeat_fraction": float(a.repeat_fraction),
            "scale": "0 / 0.5 / 1",
        },
        "folds": int(a.folds),
        "validation": f"fold 0 of {a.folds}, best epoch by val loss" if a.folds >= 2 else "none",
        "balanced": bool(a.balanced),
        "batch_size": int(a.batch_size),
        "optimizer": f"adam lr {a.lr:g}, weight decay 1e-4, random init",
        "augment": "HED jitter, flips, 90-degree rotations",
        "n_bins": a.n_bins,
    }


@dataclass(frozen=True)
class _TestPatches:
    """The held-out patches and their three truths."""

    images: np.ndarray
    m: np.ndarray  # latent mitosis score
    votes: np.ndarray  # the test panel's mean vote
    y: np.ndarray  # m > 0.5
    y_votes: np.ndarray  # votes > 0.5


def _write_data(study: Study, a: SimpleNamespace) -> _TestPatches:
    """Rated training and test patches under ``data/train`` and ``data/test``."""
    from mitokit.models.tasks_patch import read_patch_table

    train_dir, test_dir = study.out / "data" / "train", study.out / "data" / "test"
    _write_patches(train_dir, n=a.n_train, seed=study.seed, panel=a.panel)
    images, m = _write_patches(test_dir, n=a.n_test, seed=study.test_seed, panel=a.panel)
    votes = read_patch_table(test_dir / "labels.csv").score
    y = (m > 0.5).astype(np.int64)
    return _TestPatches(images, m, votes, y, (votes > 0.5).astype(np.int64))


def _write_patches(out: Path, *, n: int, seed: int, panel: Any) -> tuple[np.ndarray, np.ndarray]:
    """``n`` generated patches rated by ``panel``; their images and latent scores ``m``."""
    from mitokit.data.synthetic.export import write_patch_dataset
    from mitokit.data.synthetic.generate import generate_patches

    batch = generate_patches(n, seed=seed)
    write_patch_dataset(out, batch.images, batch.cells, seed=seed, panel=panel)
    return batch.images, np.asarray(batch.cells.m, dtype=np.float64)


def _arms(a: SimpleNamespace, train_dir: Path) -> list[Arm]:
    """One patch classifier per target: everything else the same."""
    from mitokit.models.classifier import PATCH_CLASSIFIER

    engine = arm_engine(a)
    arms = []
    for target in TARGETS:
        cfg = {
            "task": PATCH_CLASSIFIER,
            "model": {"arch": "resnet18", "input_size": int(a.input_size)},
            "data": {
                "labels": str(train_dir / "labels.csv"),
                "target": target,
                "split_seed": int(a.seed),
                "folds": int(a.folds),
                "fold": 0,
                "balanced": bool(a.balanced),
                "batch_size": int(a.batch_size),
            },
            **engine,
        }
        arms.append(Arm(target, cfg, f"training on {target} labels"))
    return arms


class _Evaluation:
    """Scores each trained classifier on the test patches; keeps its probabilities and split."""

    def __init__(self, study: Study, test: _TestPatches, a: SimpleNamespace) -> None:
        self.study, self.test, self.a = study, test, a
        self.probs: dict[str, np.ndarray] = {}
        self.splits: dict[str, tuple[list[str], list[str]]] = {}

    def __call__(self, arm: Arm, trained: Trained) -> dict[str, Any]:
        from mitokit.metrics.classification import balanced_accuracy, expected_calibration_error
        from mitokit.models.classifier import PATCH_CLASSIFIER, predict_images
        from mitokit.models.io import load_model

        t, n_bins, dev, result = self.test, self.a.n_bins, self.a.dev, trained.result
        self.splits[arm.name] = _split_ids(trained.resolved_config(), int(self.a.seed))
        model, _ = load_model(
            result.model_dir, expect_task=PATCH_CLASSIFIER, map_location=dev, fold_bn=True
        )
        p = predict_images(model, list(t.images), batch_size=128, device=dev)
        self.probs[arm.name] = p
        row = {
            "auc": auc_or_none(t.y, p),
            "balanced_accuracy": balanced_accuracy(t.y, (p >= 0.5).astype(np.float64)),
            "ece_truth": expected_calibration_error(t.y, p, n_bins=n_bins),
            "ece_m": expected_calibration_error(t.m, p, n_bins=n_bins),
            "ece_votes": expected_calibration_error(t.votes, p, n_bins=n_bins),
            "brier_truth": float(np.mean((p - t.y) ** 2)),
            "auc_majority_votes": auc_or_none(t.y_votes, p),
            "mean_prob": float(p.mean()),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "train_seconds": round(trained.seconds, 1),
            "model": trained.model,
        }
        self.study.say(
            f"{arm.name}: AUC {fmt(row['auc'])}, ECE {row['ece_truth']:.3f} vs truth "
            f"({trained.seconds:.0f} s)"
        )
        return row


def _split_ids(cfg: Mapping[str, Any], seed: int) -> tuple[list[str], list[str]]:
    """The training and validation ids the engine's run used (rebuilt from its config)."""
    from mitokit.engines.task import get_task

    data = get_task(cfg["task"]).build_data(cfg["data"], seed=seed)
    val = list(data.val.ids) if data.val is not None else []
    return list(data.train.ids), val


def _summary(ev: _Evaluation, methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The study's result (without ``seconds``); writes ``calibration.csv`` and the figure."""
    from mitokit.metrics.classification import calibration_table

    a, study, t = ev.a, ev.study, ev.test
    calibration = {
        target: {
            "truth": calibration_table(t.y, p, n_bins=a.n_bins),
            "votes": calibration_table(t.votes, p, n_bins=a.n_bins),
        }
        for target, p in ev.probs.items()
    }
    write_csv(
        study.out / "calibration.csv",
        [
            {"target": target, "against": against, **row}
            for target, by in calibration.items()
            for against, rows in by.items()
            for row in rows
        ],
    )
    figs: dict[str, str] = {}
    if a.figures:
        _plot_reliability(calibration, study.out / "figures" / "reliability.png", methods)
        figs["reliability"] = "figures/reliability.png"
    splits, soft, major = ev.splits, methods["soft"], methods["majority"]
    return study.result(
        "soft_vs_majority",
        "Does training the patch classifier on soft (mean-vote) labels give a lower "
        "calibration error than training it on majority labels?",
        _settings(a),
        data={
            "n_test": int(len(t.y)),
            "n_test_positive": int(t.y.sum()),
            "test_vote_majority_agrees_with_truth": float(np.mean(t.y_votes == t.y)),
            "n_train_patches": len(splits["soft"][0]),
            "n_val_patches": len(splits["soft"][1]),
        },
        split=study.split(
            same_split=bool(splits["majority"] == splits["soft"]),
            **{k: {"train": splits[k][0], "val": splits[k][1]} for k in TARGETS},
        ),
        methods=methods,
        answer={
            f"soft_lower_{key}": bool(soft[key] < major[key])
            for key in ("ece_truth", "ece_m", "ece_votes")
        },
        calibration=calibration,
        figures=figs,
    )


def _plot_reliability(
    calibration: Mapping[str, Mapping[str, list[dict[str, float]]]],
    path: Path,
    methods: Mapping[str, Mapping[str, Any]],
) -> None:
    """Reliability diagrams of both arms, against the truth and against the test votes."""
    titles = {"truth": "against the truth m > 0.5", "votes": "against the test panel's mean vote"}
    ece_key = {"truth": "ece_truth", "votes": "ece_votes"}
    with figure(path, 1, 2, figsize=(9.6, 4.6), dpi=110) as (_, axes):
        for ax, against in zip(axes, ("truth", "votes"), strict=True):
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
            for target, by in calibration.items():
                rows = by[against]
                xs = [r["mean_prob"] for r in rows]
                ys = [r["mean_true"] for r in rows]
                total = sum(r["count"] for r in rows)
                sizes = [10 + 400 * r["count"] / total for r in rows]
                ece = methods[target][ece_key[against]]
                ax.plot(xs, ys, marker="o", ms=3, label=f"{target} labels (ECE {ece:.3f})")
                ax.scatter(xs, ys, s=sizes, alpha=0.25)
            ax.set(
                xlabel="predicted probability (bin mean)",
                ylabel="observed frequency (bin mean)",
                xlim=(0, 1),
                ylim=(0, 1),
                title=titles[against],
            )
            ax.legend(loc="upper left", fontsize="small")


__all__ = ["SOFT_QUICK", "soft_vs_majority"]
