"""Reg vs Reg-NS vs BC (third paper, Tables 4-7), re-run on generated tiles whose truth is known.

:func:`reg_vs_regns` asks: does regressing the crowd tile score with negative sampling (Reg-NS)
give a lower false-positive rate than regressing it on positive tiles only (Reg) at the same
true-positive rate? Tile classification (BC) runs beside them.

Training tiles (seed ``seed``) and held-out test tiles (seed ``seed +``
:data:`~mitokit.experiments.harness.HELDOUT_SEED_OFFSET`) are written with every label kind under
``out_dir/data/train`` and ``out_dir/data/test``. Each method is a ResNet-18 trained through the
engine on ``sub_tile``-pixel sub-tiles (stride ``stride``) resampled to ``input_size`` inside the
model, with the crowd boxes and their agreement as labels (``crowd.json``), the same seed and no
validation split (the last epoch is kept). Each epoch draws ``events x (1 + ratio)`` tiles (the
task's default; ``epoch_length`` fixes it for every method instead).

The models score every sub-tile of the test images. The truth of a sub-tile is the third
paper's: ``s_t > 0`` with ``s_t = sum_i r_i a_i`` over the test set's crowd boxes. A second
truth, a cell with latent ``m > 0.5`` centred in the sub-tile, gives ``auc_latent``.

Reported per method: AUC; TPR, FPR, precision and balanced accuracy at the thresholds 0.1 ...
0.9 (``rows``; Reg's scores are tile-score estimates, BC's probabilities); ECE of the clipped
scores; and the FPR at equal TPR (:func:`~mitokit.metrics.classification.fpr_at_tpr`, linear
interpolation on the ROC curve) at two kinds of reference: the TPR Reg reaches at threshold 0.5
(``"reg@0.5"``), and the fixed TPRs in :data:`FIXED_TPRS`.

Speed: the defaults are a small but meaningful run (a few minutes on one CPU core);
:data:`REG_QUICK` is the ``--quick`` setting (``mitokit demo --quick`` runs it, the full demo the
defaults).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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
    params,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mitokit.experiments.harness import RunSettings, Say, TileSplit, Trained


#: The third paper's thresholds (Tables 4-7).
THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))

#: Fixed sensitivities at which the tile methods' false-positive rates are compared.
FIXED_TPRS = (0.8, 0.9)

#: Settings of :func:`reg_vs_regns` for ``--quick`` and ``mitokit demo --quick``.
REG_QUICK: dict[str, Any] = {
    "n_train_tiles": 6,
    "n_test_tiles": 3,
    "ratios": (0, 1, 4),
    "epochs": 6,
}


def method_name(task: str, ratio: int) -> str:
    """Display name of a tile method: ``Reg``, ``Reg-NS<ratio>`` or ``BC``."""
    if task == "tile_classifier":
        return "BC"
    return "Reg" if ratio == 0 else f"Reg-NS{ratio}"


def reg_vs_regns(
    out_dir: str | os.PathLike,
    *,
    n_train_tiles: int = 12,
    n_test_tiles: int = 6,
    tile_size: int = 1000,
    ratios: Sequence[int] = (0, 1, 2, 4, 10),
    include_bc: bool = True,
    epochs: int = 4,
    input_size: int = 64,
    sub_tile: int = 250,
    stride: int = 125,
    batch_size: int = 16,
    lr: float = 1e-3,
    epoch_length: int | None = None,
    scene: Any = None,
    figures: bool = True,
    say: Say = None,
    **run: Unpack[RunSettings],
) -> dict[str, Any]:
    """Reg (``negative_ratio`` 0) vs Reg-NS (ratios > 0) vs BC on synthetic crowd-labelled tiles.

    The design and what is reported: the module's description.

    Args:
        out_dir: Folder for data, runs, ``result.json``, ``sweep.csv`` and ``figures/roc.png``;
            created, and must be empty if it exists.
        n_train_tiles: Training images (before ``scale``).
        n_test_tiles: Held-out test images (before ``scale``).
        tile_size: Side of each generated image in pixels.
        ratios: Negative ratios of the regressor: 0 is Reg, every other value a Reg-NS run.
        include_bc: Also train BC (the tile classifier, ratio 1).
        epochs: Training epochs of every method.
        input_size: Side the sub-tiles are resampled to inside the model.
        sub_tile: Sub-tile side in pixels (250 in the paper).
        stride: Sub-tile stride in pixels.
        batch_size: Tiles per step.
        lr: Adam learning rate (random initial weights).
        epoch_length: Draws per epoch for every method; None for the task default.
        scene: :class:`~mitokit.data.synthetic.scene.SceneParams` of the generated tiles (e.g.
            a lower ``mitotic_fraction``); None for the generator's defaults.
        figures: Write the ROC figure.
        say: Progress messages.
        **run: The :class:`~mitokit.experiments.harness.RunSettings` (``seed``, ``scale``,
            ``device``, ``threads``, ``keep_models``).

    Returns:
        ``{"study", "question", "settings", "data", "split", "methods", "equal_tpr",
        "answer", "table", "figures", "seconds"}``; ``methods[name]`` holds ``task``,
        ``negative_ratio``, ``auc``, ``auc_latent``, ``balanced_accuracy``, ``tpr``, ``fpr``
        (at 0.5), ``ece``, ``rows`` (one per threshold), ``fpr_at_tpr`` and training facts.

    Raises:
        MitokitError: Bad settings, or a non-empty ``out_dir``.
    """
    a = _checked(arguments(locals(), train="n_train_tiles", test="n_test_tiles"))
    with Study.of("reg-vs-regns", out_dir, a, say) as study:
        split = study.tile_split(n_train=a.n_train, n_test=a.n_test, size=a.tile_size, scene=scene)
        evaluation = _Evaluation(study, split, a)
        methods = study.run_arms(_arms(a, split), evaluation)
        result = _summary(evaluation, methods)
        return study.finish(result, {"sweep.csv": result["table"]})


def _checked(a: SimpleNamespace) -> SimpleNamespace:
    """Validate this study's own arguments; add ``ratio_list``."""
    a.ratio_list = sorted({int(r) for r in a.ratios})
    if not a.ratio_list or any(r < 0 for r in a.ratio_list):
        raise MitokitError(f"ratios must be non-negative integers, got {list(a.ratios)!r}")
    if 0 not in a.ratio_list:
        raise MitokitError("ratios must include 0 (Reg), the reference of the comparison")
    if a.tile_size < a.sub_tile:
        raise MitokitError(f"tile_size {a.tile_size} is smaller than the sub-tile {a.sub_tile}")
    a.tile_size = int(a.tile_size)
    return a


def _settings(a: SimpleNamespace) -> dict[str, Any]:
    """Reg vs Reg-NS's own settings, as its result records them (:meth:`Study.settings`
    adds the seeds, the data counts, the device and the threads)."""
    return {
        "tile_size": a.tile_size,
        "ratios": a.ratio_list,
        "include_bc": bool(a.include_bc),
        "epochs": a.epochs,
        "arch": "resnet18",
        "input_size": int(a.input_size),
        "sub_tile": int(a.sub_tile),
        "stride": int(a.stride),
        "batch_size": int(a.batch_size),
        "optimizer": f"adam lr {a.lr:g}, weight decay 1e-4, random init",
        "epoch_length": a.epoch_length if a.epoch_length is not None else "events x (1 + ratio)",
        "augment": "HED jitter, flips, 90-degree rotations",
        "validation": "none (last epoch kept)",
        "labels": "crowd boxes with agreement (crowd.json)",
        "truth": "s_t > 0 from the test set's crowd boxes and agreements",
        "equal_tpr": (
            "fpr_at_tpr (linear interpolation on the ROC curve) at the TPR Reg reaches at "
            f"threshold 0.5, and at the fixed TPRs {list(FIXED_TPRS)}"
        ),
        "scene": "generator defaults" if a.scene is None else params(a.scene),
    }


def _arms(a: SimpleNamespace, split: TileSplit) -> list[Arm]:
    """Reg and Reg-NS at each ratio, then BC: same data, seed and engine settings."""
    runs = [("tile_regressor", r) for r in a.ratio_list]
    if a.include_bc:
        runs.append(("tile_classifier", 1))
    engine = arm_engine(a)
    arms = []
    for task, ratio in runs:
        name = method_name(task, ratio)
        cfg = {
            "task": task,
            "model": {"arch": "resnet18", "input_size": int(a.input_size)},
            "data": {
                "labels": str(split.train_dir),
                "tile_size": int(a.sub_tile),
                "stride": int(a.stride),
                "negative_ratio": int(ratio),
                "val_fraction": 0.0,
                "split_seed": int(a.seed),
                "epoch_length": a.epoch_length,
            },
            **engine,
        }
        announce = f"training {name} ({task}, negative_ratio {ratio})"
        arms.append(Arm(name, cfg, announce, {"task": task, "ratio": int(ratio)}))
    return arms


class _Evaluation:
    """Scores each trained method on every sub-tile of the test images.

    The truths (``y``: ``s_t > 0``; ``y_latent``: a cell with ``m > 0.5`` centred in the
    sub-tile) are computed from the first method's sub-tiles, which every method shares.
    """

    def __init__(self, study: Study, split: TileSplit, a: SimpleNamespace) -> None:
        from mitokit.io.annotations import read_annotations

        self.study, self.split, self.a = study, split, a
        self.truth = read_annotations(split.test_dir / "crowd.json")
        self.y: np.ndarray | None = None
        self.y_latent: np.ndarray | None = None
        self.curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.train_images: list[str] = []

    def __call__(self, arm: Arm, trained: Trained) -> dict[str, Any]:
        from mitokit.models.tile_eval import evaluate_tile_scores

        a, result = self.a, trained.result
        data_info = trained.info().get("data", {})
        self.train_images = list(data_info.get("train_images", self.train_images))
        images, boxes, scores = _predict_test_tiles(
            result.model_dir, self.split, sub_tile=a.sub_tile, stride=a.stride, device=a.dev
        )
        y, y_latent = self._truth(images, boxes, scores)
        evaluation = evaluate_tile_scores(y, scores, thresholds=THRESHOLDS)
        self.curves[arm.name] = (y, scores)
        row_keys = ("threshold", "tpr", "fpr", "precision", "balanced_accuracy")
        self.study.say(
            f"{arm.name}: AUC {fmt(evaluation['auc'])}, TPR {evaluation['tpr']:.3f}"
            f" / FPR {evaluation['fpr']:.3f} at 0.5 ({trained.seconds:.0f} s)"
        )
        return {
            "task": arm.facts["task"],
            "negative_ratio": arm.facts["ratio"],
            "auc": evaluation["auc"],
            "auc_latent": auc_or_none(y_latent, scores),
            **{k: evaluation[k] for k in ("balanced_accuracy", "tpr", "fpr", "ece")},
            "score_range": [float(scores.min()), float(scores.max())],
            "rows": [{k: r[k] for k in row_keys} for r in evaluation["rows"]],
            "epochs_run": result.epochs_run,
            "epoch_length": data_info.get("epoch_length"),
            "n_events": data_info.get("n_events"),
            "train_seconds": round(trained.seconds, 1),
            "model": trained.model,
        }

    def _truth(self, images: list[str], boxes: np.ndarray, scores: np.ndarray):
        """``(y, y_latent)`` of the sub-tiles (computed once, from the first method's)."""
        from mitokit.models.tile_eval import TilePredictions, truth_tile_scores

        if self.y is None or self.y_latent is None:
            pred = TilePredictions(self.split.test_dir / "crowd.json", images, boxes, scores)
            self.y = (truth_tile_scores(pred, self.truth) > 0).astype(np.int64)
            self.y_latent = _latent_labels(self.split.manifest["objects"], images, boxes)
        return self.y, self.y_latent


def _summary(ev: _Evaluation, methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The study's result (without ``seconds``); writes the ROC figure."""
    from mitokit.models.tile_eval import sweep_table

    a, study, split = ev.a, ev.study, ev.split
    y, y_latent = ev.y, ev.y_latent
    if y is None or y_latent is None:  # cannot happen: Reg always runs
        raise RuntimeError("no method was trained")
    equal = _equal_tpr(methods, ev.curves)
    figs: dict[str, str] = {}
    if a.figures and y.min() != y.max():
        from mitokit.models.tile_eval import plot_roc

        plot_roc(ev.curves, study.out / "figures" / "roc.png")
        figs["roc"] = "figures/roc.png"
    train_images = sorted(ev.train_images)
    return study.result(
        "reg_vs_regns",
        "Does Reg-NS (tile-score regression with negative sampling) have a lower FPR than "
        "Reg (positive tiles only) at equal TPR, as the third paper found?",
        _settings(a),
        data={
            "n_test_subtiles": int(len(y)),
            "n_test_positive": int(y.sum()),
            "n_test_negative": int(len(y) - y.sum()),
            "n_test_positive_latent": int(y_latent.sum()),
            "n_train_events": methods["Reg"]["n_events"],
        },
        split=study.split(
            train_images=train_images,
            test_images=split.test_names,
            train_sha1=split.sha1s(split.train_dir, train_images),
            test_sha1=split.sha1s(split.test_dir, split.test_names),
        ),
        methods=methods,
        equal_tpr=equal,
        answer=_answer(equal),
        table=sweep_table(methods),
        figures=figs,
    )


def _latent_labels(
    objects: Sequence[Mapping[str, Any]], images: Sequence[str], boxes: np.ndarray
) -> np.ndarray:
    """1 where a cell with ``m > 0.5`` has its centre inside the sub-tile."""
    centres: dict[str, list[tuple[float, float]]] = {}
    for o in objects:
        if float(o["m"]) > 0.5:
            centres.setdefault(str(o["image"]), []).append((float(o["x"]), float(o["y"])))
    out = np.zeros(len(images), dtype=np.int64)
    for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
        pts = np.asarray(centres.get(image, []), dtype=np.float64).reshape(-1, 2)
        inside = (
            (pts[:, 0] >= box[0])
            & (pts[:, 0] < box[2])
            & (pts[:, 1] >= box[1])
            & (pts[:, 1] < box[3])
        )
        out[i] = int(inside.any())
    return out


def _predict_test_tiles(
    model_dir: Path,
    split: TileSplit,
    *,
    sub_tile: int,
    stride: int,
    device: str,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image name, box and score of every sub-tile of the test images."""
    from mitokit.models.classifier import TILE_TASKS, predict_tiles
    from mitokit.models.io import load_model

    model, _ = load_model(model_dir, expect_task=TILE_TASKS, map_location=device, fold_bn=True)
    images: list[str] = []
    boxes: list[list[int]] = []
    scores: list[float] = []
    for name in split.test_names:
        rows = predict_tiles(
            model,
            split.test_dir / "images" / name,
            tile_size=sub_tile,
            stride=stride,
            batch_size=64,
            device=device,
        )
        for r in rows:
            images.append(name)
            boxes.append([r["x1"], r["y1"], r["x2"], r["y2"]])
            scores.append(r["score"])
    return images, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores)


def _fpr_at(y: np.ndarray, s: np.ndarray, tpr: float) -> float | None:
    from mitokit.metrics.classification import fpr_at_tpr

    if y.min() == y.max():
        return None
    return fpr_at_tpr(y, s, tpr)


def _equal_tpr(
    methods: dict[str, dict[str, Any]], curves: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, Any]:
    """FPR of every method at Reg's TPR at 0.5 and at the fixed TPRs; stored per method too."""
    reference = float(methods["Reg"]["tpr"])
    targets = {"reg@0.5": reference, **{f"{t:g}": float(t) for t in FIXED_TPRS}}
    table: dict[str, dict[str, float | None]] = {}
    for key, tpr in targets.items():
        table[key] = {name: _fpr_at(*curves[name], tpr) for name in methods}
    for name, m in methods.items():
        m["fpr_at_tpr"] = {key: table[key][name] for key in targets}
    return {
        "definition": (
            "lowest FPR at which the ROC curve (linear between operating points) reaches the "
            "target TPR"
        ),
        "targets": targets,
        "reference": "Reg's TPR at threshold 0.5",
        "fpr": table,
    }


def _answer(equal: Mapping[str, Any]) -> dict[str, Any]:
    """For every other method and target TPR: is its FPR lower than Reg's (None: undefined)?"""
    out: dict[str, dict[str, bool | None]] = {}
    for key, row in equal["fpr"].items():
        reg = row["Reg"]
        # At TPR 0 every method has FPR 0: no comparison (Reg called nothing positive at 0.5).
        degenerate = equal["targets"][key] <= 0.0
        for name, value in row.items():
            if name == "Reg":
                continue
            lower = None if value is None or reg is None or degenerate else bool(value < reg)
            out.setdefault(name, {})[key] = lower
    ns = [n for n in out if n.startswith("Reg-NS")]
    return {
        "lower_fpr_than_reg": out,
        "reg_ns_lower_everywhere": bool(ns) and all(v is True for n in ns for v in out[n].values()),
    }


__all__ = ["FIXED_TPRS", "REG_QUICK", "THRESHOLDS", "method_name", "reg_vs_regns"]
