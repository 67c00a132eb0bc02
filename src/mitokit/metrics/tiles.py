"""Evaluation of tile scores against box labels with agreement (the third paper's Tables 4-7).

A prediction file is a CSV with a header and one row per scored tile: ``image, x1, y1, x2, y2,
score`` (what ``mitokit predict tiles`` writes) or ``image, score`` (one score per image, the
whole image being the tile). The truth of a tile is ``s_t > 0``, ``s_t = sum_i r_i a_i`` over the
true objects of class ``mitosis`` on its image (``r_i`` the share of box ``i`` inside the tile,
``a_i`` its agreement; points get a square of ``point_box_size``), computed for exactly the tiles
that were scored, so the tiling is the predictor's. For an image-level row every object of the
image counts fully.

A prediction's image is matched to the truth by image id, then by file name (the basename of the
predicted path against the truth's image ids and file names).

(Formerly ``mitokit.models.tile_eval``, which still re-exports this module.)
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import AnnotationSet
from mitokit.types import MITOSIS

DEFAULT_THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))
_BOX = ("x1", "y1", "x2", "y2")


@dataclass
class TilePredictions:
    """Scored tiles read from a CSV.

    Attributes:
        source: The file.
        images: Image of each row, as written.
        boxes: ``(N, 4)`` boxes, or None for image-level rows.
        scores: ``(N,)`` scores.
    """

    source: Path
    images: list[str]
    boxes: np.ndarray | None
    scores: np.ndarray


def read_tile_predictions(path: str | os.PathLike) -> TilePredictions:
    """Read a tile prediction CSV (see the module docstring).

    Raises:
        MitokitError: Missing file, missing columns, a non-numeric value or no rows; the
            message names the line.
    """
    p = Path(path)
    if not p.is_file():
        raise input_error(p, "prediction file not found")
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise input_error(p, f"not a readable CSV ({exc})") from None
    rows = [r for r in rows if not r[0].lstrip().startswith("#")]
    if not rows:
        raise input_error(p, "empty file: expected a header image,x1,y1,x2,y2,score")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("image", "score") if c not in header]
    if missing:
        raise input_error(p, f"header lacks {', '.join(missing)} (image,[x1,y1,x2,y2,]score)")
    has_box = [c in header for c in _BOX]
    if any(has_box) and not all(has_box):
        raise input_error(p, "header has some of x1,y1,x2,y2 but not all four")
    col = {name: header.index(name) for name in header}
    images, boxes, scores = [], [], []
    for k, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise input_error(p, f"line {k}: {len(row)} fields, the header has {len(header)}")
        images.append(row[col["image"]].strip())
        try:
            scores.append(float(row[col["score"]]))
            if all(has_box):
                boxes.append([float(row[col[c]]) for c in _BOX])
        except ValueError:
            raise input_error(p, f"line {k}: a score or coordinate is not a number") from None
        if not math.isfinite(scores[-1]):
            raise input_error(p, f"line {k}: score is not finite")
    if not images:
        raise input_error(p, "no rows: nothing to evaluate")
    box_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if all(has_box) else None
    return TilePredictions(p, images, box_arr, np.asarray(scores, dtype=np.float64))


def _image_index(truth: AnnotationSet) -> dict[str, str]:
    index: dict[str, str] = {}
    ids = list(truth.images) + [a.image for a in truth]
    for image_id in ids:
        index.setdefault(image_id, image_id)
        index.setdefault(Path(image_id).name, image_id)
        info = truth.images.get(image_id)
        if info is not None and info.file_name:
            index.setdefault(info.file_name, image_id)
            index.setdefault(Path(info.file_name).name, image_id)
    return index


def truth_tile_scores(
    pred: TilePredictions,
    truth: AnnotationSet,
    *,
    point_box_size: float = 50.0,
    default_agreement: float = 1.0,
    label: str = MITOSIS,
    truth_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """``s_t`` of every predicted tile (or image) from the true boxes and agreements.

    Raises:
        MitokitError: A predicted image the truth does not know.
    """
    from mitokit.labels.coarsen import box_fraction_inside

    index = _image_index(truth)
    boxes: dict[str, list] = {}
    agree: dict[str, list] = {}
    for ann in truth:
        if ann.label != label:
            continue
        boxes.setdefault(ann.image, []).append(ann.box_or_square(point_box_size))
        agree.setdefault(ann.image, []).append(
            default_agreement if ann.agreement is None else ann.agreement
        )
    out = np.zeros(len(pred.images), dtype=np.float64)
    for i, image in enumerate(pred.images):
        image_id = index.get(image, index.get(Path(image).name))
        if image_id is None:
            raise input_error(
                truth_path or truth.source,
                f"has no image {image!r} (named in {pred.source})",
            )
        a = np.asarray(agree.get(image_id, []), dtype=np.float64)
        if pred.boxes is None:
            out[i] = float(a.sum())
            continue
        b = np.asarray(boxes.get(image_id, []), dtype=np.float64).reshape(-1, 4)
        out[i] = float(box_fraction_inside(b, pred.boxes[i : i + 1])[0] @ a) if len(a) else 0.0
    return out


def evaluate_tile_scores(
    y_true: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """AUC, balanced accuracy and TPR / FPR at ``threshold``, ECE, and a threshold sweep.

    Scores at or above a threshold are positive. The calibration error uses scores clipped to
    [0, 1] (a regressor's tile scores are not probabilities).

    Returns:
        ``{"n_tiles", "n_positive", "auc", "balanced_accuracy", "tpr", "fpr", "ece",
        "rows": [{"threshold", "tpr", "fpr", "precision", "balanced_accuracy", "tp", "fp",
        "tn", "fn"}, ...]}``; AUC is None when one class is absent.

    Raises:
        MitokitError: Empty or mismatched inputs.
    """
    from mitokit.metrics.classification import (
        balanced_accuracy,
        expected_calibration_error,
        roc_auc,
        threshold_sweep,
        tpr_fpr,
    )

    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    rates = tpr_fpr(y, s, threshold)
    both = bool(len(y)) and y.min() != y.max()
    return {
        "n_tiles": int(len(y)),
        "n_positive": int(y.sum()),
        "auc": roc_auc(y, s) if both else None,
        "balanced_accuracy": balanced_accuracy(y, (s >= threshold).astype(np.float64)),
        "threshold": float(threshold),
        "tpr": rates["tpr"],
        "fpr": rates["fpr"],
        "ece": expected_calibration_error(y, np.clip(s, 0.0, 1.0)),
        "rows": threshold_sweep(y, s, list(thresholds)),
    }


def sweep_table(methods: Mapping[str, Mapping[str, Any]]) -> list[dict[str, float]]:
    """Tables 4-7 layout: one row per threshold, a TPR and an FPR column per method."""
    table: dict[float, dict[str, float]] = {}
    for name, result in methods.items():
        for row in result["rows"]:
            entry = table.setdefault(row["threshold"], {"threshold": row["threshold"]})
            entry[f"{name} TPR"] = row["tpr"]
            entry[f"{name} FPR"] = row["fpr"]
    return [table[t] for t in sorted(table)]


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike) -> Path:
    """ROC curves of several methods (name -> (y_true, scores)) into a PNG, atomically.

    Raises:
        MitokitError: A method whose labels hold one class only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    from mitokit.io.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(4.8, 4.6), dpi=120)
    try:
        for name, (y, s) in curves.items():
            y = np.asarray(y, dtype=int)
            if y.min() == y.max():
                raise MitokitError(f"{name}: only one class among the tiles, no ROC curve")
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        ax.set(xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1))
        ax.set_title("Tile ROC")
        ax.legend(loc="lower right", fontsize="small")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return Path(path)


__all__ = [
    "DEFAULT_THRESHOLDS",
    "TilePredictions",
    "evaluate_tile_scores",
    "plot_roc",
    "read_tile_predictions",
    "sweep_table",
    "truth_tile_scores",
]
