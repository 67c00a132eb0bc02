"""``mitokit evaluate``: score predictions against ground truth."""

from __future__ import annotations

import math

import click

from mitokit.cli.options import echo_json, json_option, mpp_option, strict_option
from mitokit.errors import MitokitError


@click.group()
def evaluate() -> None:
    """Score predictions against ground truth."""


@evaluate.command("points")
@click.option(
    "--pred",
    "pred_path",
    required=True,
    type=click.Path(dir_okay=True),
    help="Predictions (points or boxes, optionally with scores), any supported format.",
)
@click.option(
    "--truth",
    "truth_path",
    required=True,
    type=click.Path(dir_okay=True),
    help="Ground truth, any supported format.",
)
@click.option("--pred-format", default=None, help="Format of --pred (default: detected).")
@click.option("--truth-format", default=None, help="Format of --truth (default: detected).")
@click.option(
    "--radius-um",
    type=float,
    default=None,
    help="Matching radius in micrometres (default 7.5, needs an mpp).",
)
@click.option(
    "--radius-px",
    type=float,
    default=None,
    help="Matching radius in pixels (instead of --radius-um).",
)
@mpp_option
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Keep predictions with score >= this (predictions without a score are always kept).",
)
@click.option("--sweep", is_flag=True, help="Also report F1 over score thresholds.")
@click.option("--label", default="mitosis", show_default=True, help="The class evaluated.")
@click.option(
    "--matching",
    type=click.Choice(["optimal", "midog"]),
    default="optimal",
    show_default=True,
    help="optimal: the one-to-one assignment with the most pairs; midog: the official MIDOG "
    "scorer's greedy rule (evalutils score_detection), which can find fewer.",
)
@click.option(
    "--overlay",
    "overlay_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write one PNG per image found beside the truth: predictions (hits / false alarms) "
    "against true objects and imposters, at --threshold (or the best one with --sweep).",
)
@json_option
@strict_option
def points(
    pred_path: str,
    truth_path: str,
    pred_format: str | None,
    truth_format: str | None,
    radius_um: float | None,
    radius_px: float | None,
    mpp: float | None,
    threshold: float | None,
    sweep: bool,
    label: str,
    matching: str,
    overlay_dir: str | None,
    as_json: bool,
) -> None:
    """Detection F1 by one-to-one point matching within a radius (MIDOG).

    A prediction within the radius (inclusive) of a true object of class --label is a true
    positive; matching is one-to-one, optimal by default or the MIDOG scorer's rule with
    --matching midog. Counts are summed over images before precision, recall and F1 are computed
    (micro, as MIDOG); macro F1 is the mean per-image F1 over the images holding a true object or
    a prediction. The radius defaults to 7.5 um, converted with --mpp or the mpp the truth file
    gives for all of its images. --sweep adds pooled F1 over score thresholds and the per-image
    results at the best one. A --label that no object carries is an error listing the classes.

    When every prediction has a score, AP (COCO AP at IoU 0.5 on boxes of half-side 1.5 x the
    radius, as MIDOG 2025), the FROC score (mean sensitivity at 1/8 to 8 false positives per
    image) and MIDOG 2025's FROC AUC (0 to 8) are shown too; they run over all thresholds.

    --pred may also be the output folder of `mitokit detect` (or one slide's folder in it): the
    detections.geojson of every slide are read. A predicted image id that the truth lacks is
    matched to the truth image of the same file stem (slide.svs <-> slide), when that is unique,
    and a single predicted image to a single truth image; each rename, and every image only one
    side names, is noted on stderr. When no predicted image matches a truth image it is an error.
    """
    from mitokit.io.annotations import read_annotations
    from mitokit.metrics.alignment import align_images
    from mitokit.metrics.detection import evaluate_points, radius_to_px, sweep_thresholds

    if radius_um is not None and radius_px is not None:
        raise MitokitError("--radius-um and --radius-px are mutually exclusive; pass one")
    if threshold is not None and not math.isfinite(threshold):
        raise MitokitError(f"--threshold must be finite, got {threshold}")
    truth = read_annotations(truth_path, format=truth_format, hints={"mpp": mpp})
    aligned = align_images(_read_predictions(pred_path, pred_format, mpp), truth)
    pred = aligned.pred
    if radius_px is None:
        if mpp is None:
            mpp = _common_mpp(truth, truth_path)
        if mpp is None:
            raise MitokitError(
                f"{truth_path}: not every image has an mpp; pass --mpp or --radius-px to set the "
                "matching radius"
            )
    radius = radius_to_px(radius_um=radius_um, radius_px=radius_px, mpp=mpp)
    kw = {"radius_px": radius, "label": label, "matching": matching}
    result = evaluate_points(pred, truth, threshold=threshold, **kw)
    swept = best = None
    if sweep:
        swept = sweep_thresholds(pred, truth, **kw)
        best = evaluate_points(pred, truth, threshold=swept.best_threshold, **kw)
    ranking, why_not = _ranking_scores(pred, truth, kw)
    for note in (*aligned.notes, *([why_not] if why_not else [])):
        click.echo(f"mitokit: note: {note}", err=True)  # as the library's notes

    overlays = []
    if overlay_dir is not None:
        at = swept.best_threshold if swept is not None else threshold
        overlays = _write_overlays(
            overlay_dir, pred, truth, truth_path, radius, label, at, matching
        )
    if as_json:
        out = result.to_dict()
        if overlay_dir is not None:
            out["overlays"] = overlays
        out["pred"] = str(pred_path)
        out["truth"] = str(truth_path)
        out.update(ranking)
        out["ranking_skipped"] = why_not
        out["alignment"] = {
            "renamed": aligned.renamed,
            "only_in_pred": list(aligned.only_in_pred),
            "only_in_truth": list(aligned.only_in_truth),
            "notes": list(aligned.notes),
        }
        if swept is not None:
            out["sweep"] = {**swept.to_dict(), "at_best": best.to_dict()}
        echo_json(out)
        return
    _print_table(result, swept, best, ranking)
    if overlay_dir is not None:
        click.echo(f"{len(overlays)} overlay(s) written to {overlay_dir}")


def _write_overlays(
    out_dir, pred, truth, truth_path, radius, label, threshold, matching
) -> list[str]:
    """One overlay PNG per truth image whose file can be found; their paths.

    Each is named ``<image stem>_overlay.png``, the stem made safe; ids whose stems clash are
    numbered apart in sorted order (``a_b``, ``a_b_2``), see :func:`distinct_names`.
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
            radius_px=radius,
            label=label,
            threshold=threshold,
            title=str(image_id),
            matching=matching,
        )
        written.append(str(path))
    return written


DETECT_OUTPUT = "detections.geojson"
"""What `mitokit detect` writes per slide, read when --pred is its output folder."""


def _read_predictions(path: str, fmt: str | None, mpp: float | None = None):
    """Predictions from a file, or from the slide folders of a `mitokit detect` output."""
    from pathlib import Path

    from mitokit.io.annotations import AnnotationSet, read_annotations

    p = Path(path)
    files: list[Path] = []
    if fmt is None and p.is_dir():
        own = p / DETECT_OUTPUT
        # hidden folders are not slides: a live or killed run's temporaries, a system's own
        found = [f for f in p.glob(f"*/{DETECT_OUTPUT}") if not f.parent.name.startswith(".")]
        files = [own] if own.is_file() else sorted(found)
    if not files:
        return read_annotations(path, format=fmt, hints={"mpp": mpp})
    return AnnotationSet.merge(read_annotations(f, format="geojson") for f in files)


def _ranking_scores(pred, truth, kw) -> tuple[dict, str | None]:
    """AP, FROC and MIDOG 2025's FROC AUC when every prediction is scored; else why not."""
    from mitokit.io.annotations import canonical_class
    from mitokit.metrics.ranking import average_precision, froc, midog2025_froc_auc

    label = canonical_class(kw["label"])
    counted = [a for a in pred.annotations if canonical_class(a.label) == label]
    unscored = sum(a.score is None for a in counted)
    none = {"ap": None, "froc": None, "midog2025_froc_auc": None}
    if not counted:
        return none, None
    if unscored == len(counted):
        return none, None  # a point list without scores: nothing to rank, nothing to say
    if unscored:
        return none, (
            f"AP and FROC not computed: {unscored} of {len(counted)} predictions have no score"
        )
    if not any(canonical_class(a.label) == label for a in truth.annotations):
        return none, f"AP and FROC not computed: the truth holds no {label}"
    radius = kw["radius_px"]
    curve = froc(pred, truth, radius_px=radius, label=label, matching=kw["matching"])
    return {
        "ap": average_precision(pred, truth, radius_px=radius, label=label),
        "froc": curve.to_dict(),
        "midog2025_froc_auc": midog2025_froc_auc(pred, truth, radius_px=radius, label=label),
    }, None


def _print_ranking(ranking: dict) -> None:
    if ranking["ap"] is None:
        return
    curve = ranking["froc"]
    at = "  ".join(
        f"{_rate(r)}:{s:.3f}"
        for r, s in zip(curve["rates"], curve["sensitivity_at_rates"], strict=True)
    )
    click.echo(
        f"AP {ranking['ap']:.3f} (IoU 0.5, boxes of half-side 1.5 x radius, as MIDOG 2025)  "
        f"MIDOG 2025 FROC AUC {ranking['midog2025_froc_auc']:.3f} (of 8)"
    )
    click.echo(f"FROC {curve['score']:.3f} = mean sensitivity at FP/image {at}")


def _rate(rate: float) -> str:
    return f"1/{round(1 / rate)}" if rate < 1 else f"{rate:g}"


def _common_mpp(truth, path: str) -> float | None:
    """The mpp shared by all images of the truth, None if any lacks it; error if they differ."""
    values = [info.mpp for info in truth.images.values()]
    if not values or any(v is None for v in values):
        return None
    lo, hi = min(values), max(values)
    if hi - lo > 1e-6 * hi:
        raise MitokitError(
            f"{path}: images have different mpp ({lo:g} to {hi:g}); pass --mpp or --radius-px"
        )
    return float(values[0])


def _print_table(result, swept, best=None, ranking=None) -> None:
    _print_counts(result)
    threshold = "none" if result.threshold is None else f"{result.threshold:g}"
    click.echo(
        f"macro F1 {result.macro_f1:.3f} ({len(result.macro_images)} of {len(result.per_image)} "
        f"images)  radius {result.radius_px:.2f} px  label {result.label}  "
        f"threshold {threshold}  matching {result.matching}"
    )
    if ranking is not None:
        _print_ranking(ranking)
    if swept is not None:
        click.echo(
            f"sweep: best F1 {swept.best_f1:.3f} at threshold {swept.best_threshold:g} "
            f"({len(swept.rows)} thresholds)"
        )
    if best is not None:
        click.echo(f"\nper image at the best threshold ({swept.best_threshold:g}):")
        _print_counts(best)


def _print_counts(result) -> None:
    rows = [(r.image, r.tp, r.fp, r.fn, r.precision, r.recall, r.f1) for r in result.per_image]
    width = max([len("image"), len("pooled")] + [len(str(r[0])) for r in rows])
    header = f"{'image':<{width}}  {'tp':>5} {'fp':>5} {'fn':>5}  "
    header += f"{'prec':>6} {'recall':>6} {'f1':>6}"
    click.echo(header)
    click.echo("-" * len(header))
    for image, tp, fp, fn, p, r, f in rows:
        click.echo(f"{image:<{width}}  {tp:>5} {fp:>5} {fn:>5}  {p:>6.3f} {r:>6.3f} {f:>6.3f}")
    click.echo("-" * len(header))
    click.echo(
        f"{'pooled':<{width}}  {result.tp:>5} {result.fp:>5} {result.fn:>5}  "
        f"{result.precision:>6.3f} {result.recall:>6.3f} {result.f1:>6.3f}"
    )
