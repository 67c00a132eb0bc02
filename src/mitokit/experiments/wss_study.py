"""The second paper's aggregation ablation, re-run on generated tiles whose truth is known.

:func:`aggregation_ablation`: a weak localiser (:mod:`mitokit.models.wss`) is trained from
image-level labels only (``image_labels.csv``: does the tile hold a consensus mitosis?) once per
aggregation (max, mean, embedding mean / max, attention), and each is scored on held-out
generated tiles: image AUC and balanced accuracy, and point precision / recall / F1 at 7.5 um
(30 px at 0.25 um/px) against the consensus mitosis centroids (``centroids.csv``), which no
model sees during training.

Two references put the point figures in context (neither is a method of the paper):

- ``chance_f1``: the F1 of as many points as the model predicted on each test tile, placed
  uniformly at random (mean of 20 seeded draws);
- ``oracle_f1``: the best pooled F1 over the map thresholds 0.05 ... 0.95 and the model's own,
  chosen on the test tiles themselves: an upper bound of what a threshold rule could reach with
  that map.

Training tiles (seed ``seed``) and held-out test tiles (seed ``seed +``
:data:`~mitokit.experiments.harness.HELDOUT_SEED_OFFSET`) are written with every
label kind under ``out/data/train`` and ``out/data/test``. Each model is trained through the
engine with the same seed and split (``val_fraction`` of the training tiles for model
selection by val loss and for the threshold, ``threshold`` rule), random initial weights,
Adam and whole tiles as inputs; the kept model then reads the test tiles through its slide
predictor (:class:`~mitokit.models.wss.WeakLocaliserPredictor`).

Like every study on the harness (:mod:`mitokit.experiments.harness`), it writes its data, runs,
``result.json`` and ``table.csv`` under one folder and returns a JSON-friendly dict.
Generated tiles are small (128 px, 32 um at 0.25 um/px) and carry more mitoses than the generator's
default (``mitotic_fraction`` 0.08 instead of 0.015), so that about 40 % of the tiles are
positive and a CPU run finishes in minutes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
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
    fmt,
    positive_int,
    table_rows,
)
from mitokit.experiments.heldout_slides import slide_columns
from mitokit.experiments.point_eval import (
    CHANCE_DRAWS,
    chance_point_scores,
    peak_offsets,
    predict_localiser,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mitokit.experiments.harness import RunSettings, Say, TileSplit, Trained


#: Settings of :func:`aggregation_ablation` for ``--quick``.
WSS_QUICK: dict[str, Any] = {"n_train_tiles": 48, "n_test_tiles": 32, "epochs": 4}

#: Columns of ``table.csv`` after the aggregation's name.
TABLE_COLUMNS = (
    "image_auc",
    "image_balanced_accuracy",
    "threshold",
    "precision",
    "recall",
    "f1",
    "tp",
    "fp",
    "fn",
    "chance_f1",
    "oracle_f1",
    "train_seconds",
    lambda m: slide_columns(m["slides"]),
)


def aggregation_ablation(
    out: str | os.PathLike,
    *,
    epochs: int = 8,
    aggregations: Sequence[str] | None = None,
    n_train_tiles: int = 96,
    n_test_tiles: int = 64,
    tile_size: int = 128,
    mitotic_fraction: float = 0.08,
    batch_size: int = 16,
    lr: float = 1e-3,
    val_fraction: float = 0.25,
    threshold: str | None = None,
    offset: str | None = None,
    tta: str | None = None,
    points: str | None = None,
    peak_distance_um: float | None = None,
    slides: int = 0,
    slide_size: int = 4000,
    attention: str | None = None,
    progress: Say = None,
    **run: Unpack[RunSettings],
) -> dict[str, Any]:
    """Train one weak localiser per aggregation on generated tiles; score them on held-out ones.

    The design: the module's description. The localiser's settings (``threshold`` to
    ``peak_distance_um``, ``attention``) are its own defaults where None
    (:class:`~mitokit.models.wss.WeakLocaliserTask`).

    Args:
        out: Folder for data, runs, ``result.json`` and ``table.csv``; created, and must be
            empty if it exists.
        epochs: Training epochs of every model.
        aggregations: Which to train (default: all of :data:`mitokit.models.wss.AGGREGATIONS`).
        n_train_tiles: Training tiles (before ``scale``), validation tiles included.
        n_test_tiles: Held-out test tiles (before ``scale``).
        tile_size: Side of the generated tiles in pixels (at 0.25 um/px).
        mitotic_fraction: Share of tumour cells that are mitotic in the generated scenes.
        batch_size: Tiles per step.
        lr: Adam learning rate.
        val_fraction: Share of the training tiles held out for validation.
        threshold: The weak localiser's threshold rule (``roc``, ``max_f1`` or ``fixed``).
        offset: Its map-offset rule (``rot180``: estimated on the validation tiles from image
            labels only; ``none``).
        tta: Its test-time views (``none``, ``rot180``, ``dihedral``), for the threshold choice
            and the test predictions.
        points: How maps become points (``components`` or ``peaks``, at least
            ``peak_distance_um`` apart): :func:`mitokit.models.wss.map_to_points`.
        peak_distance_um: Smallest distance between two peaks (``peaks``).
        slides: Also score every model on this many held-out generated slides of side
            ``slide_size`` through the slide engine, as ``mitokit detect`` reads slides
            (:mod:`mitokit.experiments.heldout_slides`), at its own threshold; 0: none.
        slide_size: Side of the held-out slides in pixels.
        attention: ``gated`` or ``plain`` attention (the ``attention`` aggregation).
        progress: Called with one line per step.
        **run: The :class:`~mitokit.experiments.harness.RunSettings` (``seed``, ``scale``,
            ``device``, ``threads``, ``keep_models``).

    Returns:
        ``{"study", "question", "settings", "data", "methods", "table", "seconds"}``;
        ``methods[aggregation]`` holds the columns of :data:`TABLE_COLUMNS` (the slides'
        ``best_f1`` looks only above the model's threshold, where the map was thresholded),
        ``oracle_threshold``, ``map_offset`` (the model's estimated offset, undone before
        points are taken), ``peak_offset`` (what remains: :func:`peak_offsets`) and training.

    Raises:
        MitokitError: Bad settings, or a non-empty ``out``.
    """
    a = _checked(arguments(locals(), train="n_train_tiles", test="n_test_tiles", minimum=(4, 2)))
    with Study.of("wss-aggregations", out, a, progress) as study:
        split = study.tile_split(n_train=a.n_train, n_test=a.n_test, size=a.size, scene=a.scene)
        ev = _Evaluation(study, split, a)
        ev.slides = study.heldout_slides(a.n_slides, slide_size)
        methods = study.run_arms(_arms(a, split.train_dir), ev)
        result = _summary(ev, methods)
        return study.finish(result, {"table.csv": result["table"]})


def _checked(a: SimpleNamespace) -> SimpleNamespace:
    """Validate this study's own arguments; add the derived settings (``aggs``, ``scene`` ...)."""
    from mitokit.data.synthetic.scene import SceneParams
    from mitokit.metrics.detection import radius_to_px
    from mitokit.models.wss import (
        AGGREGATIONS,
        OFFSET_RULES,
        POINT_RULES,
        THRESHOLD_RULES,
        TTA_VIEWS,
        WeakLocaliserTask,
    )

    for name in ("threshold", "offset", "tta", "points", "peak_distance_um", "attention"):
        if getattr(a, name) is None:
            setattr(a, name, WeakLocaliserTask.model_defaults[name])
    a.aggs = list(AGGREGATIONS if a.aggregations is None else a.aggregations)
    unknown = [agg for agg in a.aggs if agg not in AGGREGATIONS]
    if not a.aggs or unknown or len(set(a.aggs)) != len(a.aggs):
        raise MitokitError(
            f"aggregations must be distinct names among {', '.join(AGGREGATIONS)}, got {a.aggs!r}"
        )
    for name, rules in (
        ("threshold", THRESHOLD_RULES),
        ("offset", OFFSET_RULES),
        ("tta", TTA_VIEWS),
        ("points", POINT_RULES),
    ):
        if getattr(a, name) not in rules:
            raise MitokitError(f"{name} must be one of {', '.join(rules)}")
    if not (isinstance(a.peak_distance_um, int | float) and a.peak_distance_um > 0):
        raise MitokitError(f"peak_distance_um must be positive, got {a.peak_distance_um!r}")
    a.size = positive_int(a.tile_size, "tile_size")
    if a.size < 64:
        raise MitokitError(f"tile_size must be at least 64, got {a.size}")
    try:
        a.scene = SceneParams(mitotic_fraction=float(a.mitotic_fraction))
    except MitokitError as exc:
        raise MitokitError(f"mitotic_fraction: {exc}") from None
    a.mpp = a.scene.mpp
    a.radius = radius_to_px(radius_um=7.5, mpp=a.mpp)
    a.spacing = float(a.peak_distance_um) / a.mpp if a.points == "peaks" else None
    return a


def _settings(a: SimpleNamespace) -> dict[str, Any]:
    """The aggregation study's own settings, as its result records them
    (:meth:`Study.settings` adds the seeds, the data counts, the device and the threads)."""
    return {
        "tile_size": a.size,
        "mpp": a.mpp,
        "mitotic_fraction": float(a.mitotic_fraction),
        "aggregations": a.aggs,
        "attention": a.attention,
        "epochs": a.epochs,
        "batch_size": int(a.batch_size),
        "optimizer": f"adam lr {a.lr:g}, weight decay 1e-4, random init",
        "validation": f"{a.val_fraction:g} of the training tiles, best epoch by val loss",
        "threshold": a.threshold,
        "offset": a.offset,
        "tta": a.tta,
        "points": a.points,
        "peak_distance_um": float(a.peak_distance_um) if a.points == "peaks" else None,
        "slides": a.n_slides,
        "slide_size": int(a.slide_size) if a.n_slides else None,
        "labels": "image-level only (image_labels.csv: a consensus mitosis in the tile)",
        "truth": "consensus mitosis centroids of the test tiles (centroids.csv)",
        "radius_px": a.radius,
        "augment": "HED jitter, flips, 90-degree rotations",
    }


def _arms(a: SimpleNamespace, train_dir: Path) -> list[Arm]:
    """One weak localiser per aggregation: everything else the same."""
    from mitokit.models.wss import WEAK_LOCALISER

    engine = arm_engine(a)
    arms = []
    for agg in a.aggs:
        cfg = {
            "task": WEAK_LOCALISER,
            "model": {
                "aggregation": agg,
                "attention": a.attention,
                "threshold": a.threshold,
                "offset": a.offset,
                "tta": a.tta,
                "points": a.points,
                "peak_distance_um": float(a.peak_distance_um),
            },
            "data": {
                "labels": str(train_dir),
                "mpp": a.mpp,
                "val_fraction": float(a.val_fraction),
                "split_seed": int(a.seed),
            },
            **engine,
        }
        arms.append(Arm(agg, cfg, f"training the {agg} localiser"))
    return arms


def _summary(ev: _Evaluation, methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The study's result (without ``seconds``)."""
    from mitokit.models.wss import IMAGE_LABELS, TRUTH_POINTS, read_image_labels

    a, study = ev.a, ev.study
    train_labels = read_image_labels(ev.split.train_dir / IMAGE_LABELS)
    return study.result(
        "wss_aggregations",
        "How does the aggregation of the instance map (max, mean, embedding mean / max, "
        "attention) change image classification and point localisation of a weak "
        "localiser trained on image-level labels only?",
        _settings(a),
        data={
            "n_train_tiles": len(train_labels),
            "n_train_positive": int(sum(train_labels.values())),
            "n_test_tiles": int(len(ev.y)),
            "n_test_positive": int(ev.y.sum()),
            "n_test_mitoses": int(sum(len(t) for t in ev.truths)),
            "truth_file": f"data/test/{TRUTH_POINTS}",
        },
        methods=methods,
        table=table_rows(methods, "aggregation", TABLE_COLUMNS),
    )


class _Evaluation:
    """Scores each trained localiser on the test tiles (and the held-out slides)."""

    def __init__(self, study: Study, split: TileSplit, a: SimpleNamespace) -> None:
        from mitokit.models.wss import read_weak_source

        self.study, self.split, self.a = study, split, a
        test = read_weak_source(split.test_dir)
        names = test.image_ids
        self.paths = [test.paths[i] for i in names]
        self.y = np.asarray([test.labels[i] for i in names], dtype=np.int64)
        self.truths = [test.points[i] for i in names]
        self.sizes = [test.sizes[i] for i in names]
        self.slides: list[Path] = []

    def __call__(self, arm: Arm, trained: Trained) -> dict[str, Any]:
        from mitokit.metrics.classification import balanced_accuracy

        a, result = self.a, trained.result
        t0 = time.perf_counter()
        probs, found, maps, thr, map_offset = predict_localiser(
            result.model_dir, self.paths, device=a.dev
        )
        predict_seconds = time.perf_counter() - t0
        on_slides = self.study.score_slides(arm.name, trained, self.slides, device=a.dev)
        scores, oracle, oracle_thr = self._points(maps, thr)
        chance = chance_point_scores(
            [len(p) for p in found], self.truths, self.sizes, radius_px=a.radius, seed=int(a.seed)
        )
        m = {
            "image_auc": auc_or_none(self.y, probs),
            "image_balanced_accuracy": balanced_accuracy(self.y, (probs >= thr).astype(float)),
            "threshold": thr,
            **{k: scores[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")},
            "n_points": int(sum(len(p) for p in found)),
            "chance_f1": chance["f1"],
            "oracle_f1": oracle,
            "oracle_threshold": oracle_thr,
            "map_offset": {"dx": map_offset[0], "dy": map_offset[1]},
            "peak_offset": peak_offsets(maps, self.truths, margin_px=a.size / 8),
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "epochs_run": result.epochs_run,
            "train_seconds": round(trained.seconds, 1),
            "predict_seconds": round(predict_seconds, 2),
            "model": trained.model,
            "slides": on_slides,
        }
        self.study.say(
            f"{arm.name}: image AUC {fmt(m['image_auc'])}, point P/R/F1 "
            f"{m['precision']:.3f}/{m['recall']:.3f}/{m['f1']:.3f} at {thr:.3f} "
            f"(chance F1 {m['chance_f1']:.3f}; {trained.seconds:.0f} s)"
            + (f"; slides F1 {on_slides['f1']:.3f}" if on_slides else "")
        )
        return m

    def _points(self, maps: list[np.ndarray], thr: float) -> tuple[dict[str, Any], float, float]:
        """Point scores at the model's threshold; the oracle F1 over thresholds, and where."""
        from mitokit.models.wss import F1_GRID, pooled_point_scores

        def at(t: float) -> dict[str, Any]:
            return pooled_point_scores(
                maps,
                self.truths,
                threshold=t,
                radius_px=self.a.radius,
                min_distance_px=self.a.spacing,
            )

        grid = sorted({*F1_GRID, thr})
        oracle = [at(t)["f1"] for t in grid]
        return at(thr), float(max(oracle)), float(grid[int(np.argmax(oracle))])


__all__ = [
    "CHANCE_DRAWS",
    "WSS_QUICK",
    "aggregation_ablation",
    "chance_point_scores",
    "peak_offsets",
]
