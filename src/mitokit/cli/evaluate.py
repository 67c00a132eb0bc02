"""``mitokit evaluate``: score predictions against ground truth."""

from __future__ import annotations

import click

from mitokit.cli.options import (
    choice_option,
    echo_json,
    format_option,
    json_option,
    mpp_option,
    path_option,
    strict_option,
    threshold_option,
)


@click.group()
def evaluate() -> None:
    """Score predictions against ground truth."""


@evaluate.command("points")
@path_option(
    "--pred",
    "pred_path",
    required=True,
    help="Predictions (points or boxes, optionally with scores), any supported format.",
)
@path_option("--truth", "truth_path", required=True, help="Ground truth, any supported format.")
@format_option("pred")
@format_option("truth")
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
@threshold_option(
    "Keep predictions with score >= this (predictions without a score are always kept)."
)
@click.option("--sweep", is_flag=True, help="Also report F1 over score thresholds.")
@click.option("--label", default="mitosis", show_default=True, help="The class evaluated.")
@choice_option(
    "--matching",
    choices=["optimal", "midog"],
    default="optimal",
    help="optimal: the one-to-one assignment with the most pairs; midog: the official MIDOG "
    "scorer's greedy rule (evalutils score_detection), which can find fewer.",
)
@path_option(
    "--overlay",
    "overlay_dir",
    kind="folder",
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
    from mitokit.metrics.evaluate import evaluate_point_files

    report = evaluate_point_files(
        pred_path,
        truth_path,
        pred_format=pred_format,
        truth_format=truth_format,
        radius_um=radius_um,
        radius_px=radius_px,
        mpp=mpp,
        threshold=threshold,
        sweep=sweep,
        label=label,
        matching=matching,
        overlay_dir=overlay_dir,
    )
    if as_json:
        echo_json(report.to_dict(overlays=overlay_dir is not None))
        return
    _print_table(report.result, report.sweep, report.at_best, report.ranking)
    if overlay_dir is not None:
        click.echo(f"{len(report.overlays)} overlay(s) written to {overlay_dir}")


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
