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
@click.option(
    "--overlay",
    "overlay_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write one PNG per image found beside the truth: predictions (hits / false alarms) "
    "against true objects and imposters, at --threshold (or the best one with --sweep).",
)
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
    overlay_dir: str | None,
    as_json: bool,
) -> None:
    """Detection F1 by one-to-one point matching within a radius (MIDOG).

    A prediction within the radius (inclusive) of a true object of class --label is a true
    positive; matching is one-to-one and optimal. Counts are summed over images before precision,
    recall and F1 are computed (micro, as MIDOG); the mean per-image F1 is shown as macro F1.
    The radius defaults to 7.5 um, converted with --mpp or the mpp the truth file gives for all of
    its images. --sweep adds pooled F1 over score thresholds and the per-image results at the
    best one.

    --pred may also be the output folder of `mitokit detect` (or one slide's folder in it): the
    detections.geojson of every slide are read. A predicted image id that the truth lacks is
    matched to the truth image of the same file stem (slide.svs <-> slide), when that is unique.
    """
    from mitokit.io.annotations import read_annotations
    from mitokit.metrics.detection import evaluate_points, radius_to_px, sweep_thresholds

    if radius_um is not None and radius_px is not None:
        raise MitokitError("--radius-um and --radius-px are mutually exclusive; pass one")
    if threshold is not None and not math.isfinite(threshold):
        raise MitokitError(f"--threshold must be finite, got {threshold}")
    truth = read_annotations(truth_path, format=truth_format)
    pred = _align_images(_read_predictions(pred_path, pred_format), truth)
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
    swept = best = None
    if sweep:
        swept = sweep_thresholds(pred, truth, radius_px=radius, label=label)
        best = evaluate_points(
            pred, truth, radius_px=radius, threshold=swept.best_threshold, label=label
        )

    overlays = []
    if overlay_dir is not None:
        at = swept.best_threshold if swept is not None else threshold
        overlays = _write_overlays(overlay_dir, pred, truth, truth_path, radius, label, at)
    if as_json:
        out = result.to_dict()
        if overlay_dir is not None:
            out["overlays"] = overlays
        out["pred"] = str(pred_path)
        out["truth"] = str(truth_path)
        if swept is not None:
            out["sweep"] = {**swept.to_dict(), "at_best": best.to_dict()}
        echo_json(out)
        return
    _print_table(result, swept, best)
    if overlay_dir is not None:
        click.echo(f"{len(overlays)} overlay(s) written to {overlay_dir}")


def _write_overlays(out_dir, pred, truth, truth_path, radius, label, threshold) -> list[str]:
    """One overlay PNG per truth image whose file can be found; their paths."""
    from pathlib import Path

    from mitokit.data.arrays import read_rgb
    from mitokit.io.formats.geojson import image_file_stem
    from mitokit.report.overlay import find_image, plot_point_overlay

    pred_by, truth_by = pred.by_image(), truth.by_image()
    written = []
    for image_id, info in sorted(truth.images.items()):
        found = find_image(info, truth_path)
        if found is None:
            continue
        path = Path(out_dir) / f"{image_file_stem(image_id)}_overlay.png"
        plot_point_overlay(
            read_rgb(found),
            path,
            pred=pred_by.get(image_id, []),
            truth=truth_by.get(image_id, []),
            radius_px=radius,
            label=label,
            threshold=threshold,
            title=str(image_id),
        )
        written.append(str(path))
    return written


DETECT_OUTPUT = "detections.geojson"
"""What `mitokit detect` writes per slide, read when --pred is its output folder."""


def _read_predictions(path: str, fmt: str | None):
    """Predictions from a file, or from the slide folders of a `mitokit detect` output."""
    from pathlib import Path

    from mitokit.io.annotations import AnnotationSet, read_annotations

    p = Path(path)
    files: list[Path] = []
    if fmt is None and p.is_dir():
        own = p / DETECT_OUTPUT
        files = [own] if own.is_file() else sorted(p.glob(f"*/{DETECT_OUTPUT}"))
    if not files:
        return read_annotations(path, format=fmt)
    return AnnotationSet.merge(read_annotations(f, format="geojson") for f in files)


def _align_images(pred, truth):
    """Rename predicted image ids the truth lacks to the truth id of the same file stem."""
    from dataclasses import replace
    from pathlib import PurePath

    from mitokit.io.annotations import AnnotationSet

    truth_ids = set(truth.images) | {a.image for a in truth.annotations}
    by_stem: dict[str, set[str]] = {}
    for t in truth_ids:
        by_stem.setdefault(PurePath(t).stem, set()).add(t)
    rename = {}
    for p in set(pred.images) | {a.image for a in pred.annotations}:
        if p in truth_ids:
            continue
        found = by_stem.get(PurePath(p).stem, set()) | by_stem.get(p, set())
        if len(found) == 1:
            rename[p] = found.pop()
    if not rename:
        return pred
    anns = [a.with_(image=rename.get(a.image, a.image)) for a in pred.annotations]
    images = {}
    for k, info in pred.images.items():
        images[rename.get(k, k)] = replace(info, id=rename.get(k, k))
    return AnnotationSet(anns, images, list(pred.raters), pred.source, pred.format)


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


def _print_table(result, swept, best=None) -> None:
    _print_counts(result)
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
