"""``mitokit evaluate``: score predictions against ground truth."""

from __future__ import annotations

import math

import click

from mitokit.cli.options import echo_json, json_option, mpp_option
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
@json_option
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
    as_json: bool,
) -> None:
    """Detection F1 by one-to-one point matching within a radius (MIDOG).

    A prediction within the radius (inclusive) of a true object of class --label is a true
    positive; matching is one-to-one and optimal. Counts are summed over images before precision,
    recall and F1 are computed (micro, as MIDOG); the mean per-image F1 is shown as macro F1.
    The radius defaults to 7.5 um, converted with --mpp or the mpp the truth file gives for all of
    its images.
    """
    from mitokit.io.annotations import read_annotations
    from mitokit.metrics.detection import evaluate_points, radius_to_px, sweep_thresholds

    if radius_um is not None and radius_px is not None:
        raise MitokitError("--radius-um and --radius-px are mutually exclusive; pass one")
    if threshold is not None and not math.isfinite(threshold):
        raise MitokitError(f"--threshold must be finite, got {threshold}")
    truth = read_annotations(truth_path, format=truth_format)
    pred = read_annotations(pred_path, format=pred_format)
    if radius_px is None:
        if mpp is None:
            mpp = _common_mpp(truth, truth_path)
        if mpp is None:
            raise MitokitError(
                f"{truth_path}: not every image has an mpp; pass --mpp or --radius-px to set the "
                "matching radius"
            )
    radius = radius_to_px(radius_um=radius_um, radius_px=radius_px, mpp=mpp)
    result = evaluate_points(pred, truth, radius_px=radius, threshold=threshold, label=label)
    swept = sweep_thresholds(pred, truth, radius_px=radius, label=label) if sweep else None

    if as_json:
        out = result.to_dict()
        out["pred"] = str(pred_path)
        out["truth"] = str(truth_path)
        if swept is not None:
            out["sweep"] = swept.to_dict()
        echo_json(out)
        return
    _print_table(result, swept)


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


def _print_table(result, swept) -> None:
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
    threshold = "none" if result.threshold is None else f"{result.threshold:g}"
    click.echo(
        f"macro F1 {result.macro_f1:.3f}  radius {result.radius_px:.2f} px  "
        f"label {result.label}  threshold {threshold}"
    )
    if swept is not None:
        click.echo(
            f"sweep: best F1 {swept.best_f1:.3f} at threshold {swept.best_threshold:g} "
            f"({len(swept.rows)} thresholds)"
        )
