"""``mitokit evaluate tiles``: tile scores against box labels with agreement."""

from __future__ import annotations

import math

import click

from mitokit.cli.options import (
    echo_json,
    format_option,
    json_option,
    path_option,
    strict_option,
    threshold_option,
)
from mitokit.errors import MitokitError


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MitokitError(
            f"--thresholds must be numbers separated by commas, got {text!r}"
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise MitokitError(f"--thresholds must be finite numbers, got {text!r}")
    return values


def _method(spec: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named after the file)."""
    from pathlib import Path

    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        if name.strip() and path.strip():
            return name.strip(), path.strip()
    return Path(spec).stem, spec


@click.command("tiles")
@click.option(
    "--pred",
    "preds",
    multiple=True,
    required=True,
    help="Tile scores, CSV image,x1,y1,x2,y2,score (or image,score); NAME=PATH names the "
    "method. Repeat for several methods.",
)
@path_option(
    "--truth",
    "truth_path",
    required=True,
    help="Box labels with agreement (COCO, GeoJSON, CSV) or a synthetic tiles folder.",
)
@format_option("truth")
@click.option(
    "--point-box-size",
    type=float,
    default=50.0,
    show_default=True,
    help="Side of the square given to point labels, in pixels.",
)
@click.option(
    "--default-agreement",
    type=float,
    default=1.0,
    show_default=True,
    help="Agreement of true objects that carry none.",
)
@click.option(
    "--thresholds",
    default=",".join(f"{0.1 * k:.1f}" for k in range(1, 10)),
    show_default=True,
    help="Thresholds of the sweep table, comma-separated.",
)
@threshold_option(
    "Threshold of the balanced accuracy and of the headline TPR / FPR.",
    default=0.5,
    show_default=True,
)
@path_option("--figure", kind="file", help="ROC figure (PNG).")
@json_option
@strict_option
def tiles(
    preds: tuple[str, ...],
    truth_path: str,
    truth_format: str | None,
    point_box_size: float,
    default_agreement: float,
    thresholds: str,
    threshold: float,
    figure: str | None,
    as_json: bool,
) -> None:
    """Tile-level TPR / FPR over thresholds, AUC, balanced accuracy and calibration error.

    The truth of a scored tile is s_t > 0, with s_t = sum r_i a_i over the true mitoses of its
    image (r_i: share of box i inside the tile, a_i: agreement), computed for the very tiles
    scored. Scores >= a threshold are positive. The sweep table has one row per threshold and a
    TPR and an FPR column per method (the crowd-label paper's Tables 4-7). The calibration error
    uses scores clipped to [0, 1].
    """
    from mitokit.io.annotations import read_annotations
    from mitokit.metrics.tiles import (
        evaluate_tile_scores,
        plot_roc,
        read_tile_predictions,
        sweep_table,
        truth_tile_scores,
    )
    from mitokit.models.tile_source import resolve_labels

    grid = _thresholds(thresholds)
    if not math.isfinite(threshold):
        raise MitokitError(f"--threshold must be finite, got {threshold}")
    truth_file = resolve_labels(truth_path)
    truth = read_annotations(truth_file, format=truth_format)
    methods, curves = {}, {}
    for spec in preds:
        name, path = _method(spec)
        if name in methods:
            raise MitokitError(f"two methods are named {name!r}; use NAME=PATH")
        pred = read_tile_predictions(path)
        s_t = truth_tile_scores(
            pred,
            truth,
            point_box_size=point_box_size,
            default_agreement=default_agreement,
            truth_path=truth_file,
        )
        y = (s_t > 0).astype(float)
        result = evaluate_tile_scores(y, pred.scores, thresholds=grid, threshold=threshold)
        methods[name] = {"name": name, "pred": str(path), **result}
        curves[name] = (y, pred.scores)
    if figure is not None:
        plot_roc(curves, figure)
    table = sweep_table(methods)
    if as_json:
        out = {"truth": str(truth_file), "methods": list(methods.values()), "table": table}
        if len(methods) == 1:
            only = next(iter(methods.values()))
            out.update({k: only[k] for k in ("auc", "balanced_accuracy", "ece", "rows")})
        if figure is not None:
            out["figure"] = str(figure)
        echo_json(out)
        return
    _print(methods, table, figure)


def _print(methods: dict, table: list[dict], figure: str | None) -> None:
    names = list(methods)
    head = f"{'threshold':>9}" + "".join(f"  {n + ' TPR':>14} {n + ' FPR':>14}" for n in names)
    click.echo(head)
    click.echo("-" * len(head))
    for row in table:
        cells = "".join(
            f"  {row.get(f'{n} TPR', math.nan):>14.3f} {row.get(f'{n} FPR', math.nan):>14.3f}"
            for n in names
        )
        click.echo(f"{row['threshold']:>9.2f}{cells}")
    click.echo("-" * len(head))
    for n, m in methods.items():
        auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
        click.echo(
            f"{n}: AUC {auc}  balanced accuracy {m['balanced_accuracy']:.3f} at "
            f"{m['threshold']:g}  ECE {m['ece']:.3f}  tiles {m['n_tiles']} "
            f"({m['n_positive']} positive)"
        )
    if figure is not None:
        click.echo(f"ROC figure: {figure}")
