"""Point evaluation from files, in one call: what ``mitokit evaluate points`` does.

:func:`evaluate_point_files` reads the predictions (a label file, or the output folder of
``mitokit detect``) and the truth, aligns their image ids (:func:`~mitokit.metrics.align_images`),
sets the matching radius from the micrometres and the mpp, scores F1 (optionally over
thresholds), AP and FROC where every prediction has a score, and draws overlays on the images it
finds beside the truth. The pieces are public too: :func:`read_predictions`, :func:`common_mpp`,
:func:`ranking_scores`, :func:`write_point_overlays`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mitokit.errors import MitokitError, input_error
from mitokit.io.annotations import AnnotationSet, canonical_class
from mitokit.types import MITOSIS

if TYPE_CHECKING:
    from mitokit.metrics.sweep import ThresholdSweep

PathLike = str | os.PathLike

DETECT_OUTPUT = "detections.geojson"
"""What ``mitokit detect`` writes per slide; read when the predictions are its output folder."""


@dataclass
class PointReport:
    """Everything :func:`evaluate_point_files` measured.

    Attributes:
        result: Pooled and per-image counts at the threshold given.
        sweep: F1 over score thresholds (with ``sweep=True``), else None.
        at_best: The evaluation at the sweep's best threshold, else None.
        ranking: ``ap``, ``froc`` and ``midog2025_froc_auc`` (None where not computed).
        ranking_skipped: Why the ranking figures were not computed, or None.
        alignment: How prediction images were matched to truth images.
        overlays: The overlay PNGs written.
        pred: The predictions' path; truth: the truth's path.
    """

    result: Any
    sweep: Any
    at_best: Any
    ranking: dict[str, Any]
    ranking_skipped: str | None
    alignment: Any
    overlays: list[str] = field(default_factory=list)
    pred: str = ""
    truth: str = ""

    @property
    def notes(self) -> list[str]:
        """What the reader should know: renamed or one-sided images, skipped figures."""
        return [*self.alignment.notes, *([self.ranking_skipped] if self.ranking_skipped else [])]

    def to_dict(self, *, overlays: bool = False) -> dict[str, Any]:
        """JSON-friendly: the pooled result, the paths, ranking, alignment and sweep."""
        out = self.result.to_dict()
        if overlays:
            out["overlays"] = list(self.overlays)
        out["pred"], out["truth"] = self.pred, self.truth
        out.update(self.ranking)
        out["ranking_skipped"] = self.ranking_skipped
        out["alignment"] = {
            "renamed": self.alignment.renamed,
            "only_in_pred": list(self.alignment.only_in_pred),
            "only_in_truth": list(self.alignment.only_in_truth),
            "notes": list(self.alignment.notes),
        }
        if self.sweep is not None:
            out["sweep"] = {**self.sweep.to_dict(), "at_best": self.at_best.to_dict()}
        return out


def read_predictions(
    path: PathLike,
    *,
    format: str | None = None,
    mpp: float | None = None,  # noqa: A002
) -> AnnotationSet:
    """Predictions from a label file, or from the slide folders of a ``mitokit detect`` output.

    A folder (without ``format``) holding ``detections.geojson`` is one slide's output; one
    whose sub-folders hold it is a run's output, read slide by slide (hidden sub-folders, such
    as a live or killed run's temporaries, are not slides). Anything else is read as a label
    file; ``mpp`` reaches the readers that need it (Grand-Challenge points in millimetres).
    """
    from mitokit.io.annotations import read_annotations

    p = Path(path)
    files: list[Path] = []
    if format is None and p.is_dir():
        own = p / DETECT_OUTPUT
        found = [f for f in p.glob(f"*/{DETECT_OUTPUT}") if not f.parent.name.startswith(".")]
        files = [own] if own.is_file() else sorted(found)
    if not files:
        return read_annotations(path, format=format, hints={"mpp": mpp})
    return AnnotationSet.merge(read_annotations(f, format="geojson") for f in files)


def common_mpp(truth: AnnotationSet, path: PathLike | None = None) -> float | None:
    """The mpp all images of ``truth`` share; None if any lacks it.

    Raises:
        MitokitError: The images' mpp differ (no one radius in pixels fits them all).
    """
    values = [info.mpp for info in truth.images.values()]
    if not values or any(v is None for v in values):
        return None
    lo, hi = min(values), max(values)
    if hi - lo > 1e-6 * hi:
        raise input_error(
            path, f"images have different mpp ({lo:g} to {hi:g}); pass --mpp or --radius-px"
        )
    return float(values[0])


def ranking_scores(
    pred: AnnotationSet,
    truth: AnnotationSet,
    *,
    radius_px: float,
    matching: str = "optimal",
    label: str = MITOSIS,
) -> tuple[dict[str, Any], str | None]:
    """AP, FROC and MIDOG 2025's FROC AUC where every prediction of ``label`` has a score.

    Returns:
        (``{"ap", "froc", "midog2025_froc_auc"}``, None), or all three None and why (None
        where there is nothing to say: no predictions, or a point list without any score).
    """
    ranking, why_not, _ = _scored_figures(
        pred, truth, sweep=False, radius_px=radius_px, label=label, matching=matching
    )
    return ranking, why_not


def _scored_figures(
    pred: AnnotationSet,
    truth: AnnotationSet,
    *,
    sweep: bool,
    radius_px: float,
    label: str,
    matching: str,
) -> tuple[dict[str, Any], str | None, ThresholdSweep | None]:
    """:func:`ranking_scores`, and with ``sweep`` the threshold sweep (else None).

    Where the ranking figures are computed, the sweep reads its counts off the FROC curve's
    (:func:`~mitokit.metrics.ranking._froc_and_sweep`): the predictions are matched once.
    """
    from mitokit.metrics.ranking import (
        FROC_RATES,
        _froc_and_sweep,
        average_precision,
        midog2025_froc_auc,
    )
    from mitokit.metrics.sweep import sweep_thresholds

    name = canonical_class(label)
    ranked, why_not = _rankable(pred, truth, name)
    kw: dict[str, Any] = {"radius_px": radius_px, "matching": matching}
    if not ranked:
        swept = sweep_thresholds(pred, truth, label=label, **kw) if sweep else None
        return dict.fromkeys(("ap", "froc", "midog2025_froc_auc")), why_not, swept
    curve, swept = _froc_and_sweep(pred, truth, label=name, rates=FROC_RATES, sweep=sweep, **kw)
    ranking = {
        "ap": average_precision(pred, truth, radius_px=radius_px, label=name),
        "froc": curve.to_dict(),
        "midog2025_froc_auc": midog2025_froc_auc(pred, truth, radius_px=radius_px, label=name),
    }
    return ranking, None, swept


def _rankable(pred: AnnotationSet, truth: AnnotationSet, label: str) -> tuple[bool, str | None]:
    """Whether AP and FROC are computed for ``label``, and if not, why (None: nothing to say)."""
    counted = [a for a in pred.annotations if canonical_class(a.label) == label]
    unscored = sum(a.score is None for a in counted)
    if not counted or unscored == len(counted):
        return False, None
    if unscored:
        return False, (
            f"AP and FROC not computed: {unscored} of {len(counted)} predictions have no score"
        )
    if not any(canonical_class(a.label) == label for a in truth.annotations):
        return False, f"AP and FROC not computed: the truth holds no {label}"
    return True, None


def write_point_overlays(
    out_dir: PathLike,
    pred: AnnotationSet,
    truth: AnnotationSet,
    truth_path: PathLike,
    *,
    radius_px: float,
    label: str = MITOSIS,
    threshold: float | None = None,
    matching: str = "optimal",
) -> list[str]:
    """One overlay PNG per truth image whose file is found beside ``truth_path``; their paths.

    Each is named ``<image stem>_overlay.png``, the stem made safe; ids whose stems clash are
    numbered apart in sorted order (``a_b``, ``a_b_2``), see
    :func:`~mitokit.io.names.distinct_names`.
    """
    from mitokit.data.arrays import read_rgb
    from mitokit.io.formats.geojson import image_file_stem
    from mitokit.io.names import child_path, distinct_names
    from mitokit.report.overlay import find_image, plot_point_overlay

    pred_by, truth_by = pred.by_image(), truth.by_image()
    names = distinct_names(sorted(truth.images), make=image_file_stem)
    written = []
    for image_id, info in sorted(truth.images.items()):
        found = find_image(info, truth_path)
        if found is None:
            continue
        path = child_path(out_dir, f"{names[image_id]}_overlay.png")
        plot_point_overlay(
            read_rgb(found),
            path,
            pred=pred_by.get(image_id, []),
            truth=truth_by.get(image_id, []),
            radius_px=radius_px,
            label=label,
            threshold=threshold,
            title=str(image_id),
            matching=matching,
        )
        written.append(str(path))
    return written


def evaluate_point_files(
    pred_path: PathLike,
    truth_path: PathLike,
    *,
    pred_format: str | None = None,
    truth_format: str | None = None,
    radius_um: float | None = None,
    radius_px: float | None = None,
    mpp: float | None = None,
    threshold: float | None = None,
    sweep: bool = False,
    label: str = MITOSIS,
    matching: str = "optimal",
    overlay_dir: PathLike | None = None,
) -> PointReport:
    """Score a prediction file (or ``mitokit detect`` output) against a truth file.

    The radius defaults to 7.5 um, converted with ``mpp`` or the mpp every truth image gives;
    see :func:`~mitokit.metrics.evaluate_points` for the counting conventions and
    :func:`~mitokit.metrics.align_images` for how image ids are matched.

    Its notes (renamed or one-sided images, figures not computed) are logged on the
    ``mitokit`` logger, as the readers' adjustments are, and kept in ``PointReport.notes``.

    Raises:
        MitokitError: Both radii given, a non-finite threshold, no mpp where the radius is in
            micrometres, images that cannot be aligned, an unknown label, unreadable files.
    """
    from mitokit.io.annotations import read_annotations
    from mitokit.metrics.alignment import align_images
    from mitokit.metrics.detection import evaluate_points, radius_to_px

    if radius_um is not None and radius_px is not None:
        raise MitokitError("--radius-um and --radius-px are mutually exclusive; pass one")
    if threshold is not None and not math.isfinite(threshold):
        raise MitokitError(f"--threshold must be finite, got {threshold}")
    truth = read_annotations(truth_path, format=truth_format, hints={"mpp": mpp})
    aligned = align_images(read_predictions(pred_path, format=pred_format, mpp=mpp), truth)
    pred = aligned.pred
    if radius_px is None and mpp is None:
        mpp = common_mpp(truth, truth_path)
        if mpp is None:
            raise input_error(
                truth_path,
                "not every image has an mpp; pass --mpp or --radius-px to set the matching radius",
            )
    radius = radius_to_px(radius_um=radius_um, radius_px=radius_px, mpp=mpp)
    kw: dict[str, Any] = {"radius_px": radius, "label": label, "matching": matching}
    result = evaluate_points(pred, truth, threshold=threshold, **kw)
    ranking, why_not, swept = _scored_figures(pred, truth, sweep=sweep, **kw)
    best = None
    if swept is not None:
        best = evaluate_points(pred, truth, threshold=swept.best_threshold, **kw)
    overlays: list[str] = []
    if overlay_dir is not None:
        at = swept.best_threshold if swept is not None else threshold
        overlays = write_point_overlays(overlay_dir, pred, truth, truth_path, threshold=at, **kw)
    report = PointReport(
        result, swept, best, ranking, why_not, aligned, overlays, str(pred_path), str(truth_path)
    )
    for note in report.notes:  # as the readers' notes: the CLI prints them on stderr
        logging.getLogger("mitokit").warning(note)
    return report


__all__ = [
    "DETECT_OUTPUT",
    "PointReport",
    "common_mpp",
    "evaluate_point_files",
    "ranking_scores",
    "read_predictions",
    "write_point_overlays",
]
