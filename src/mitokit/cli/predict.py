"""``mitokit predict``: score patches or the sub-tiles of images with trained models."""

from __future__ import annotations

import csv
import functools
import io

import click

from mitokit.cli.options import (
    backend_option,
    batch_size_option,
    echo_json,
    int_option,
    json_option,
    model_option,
    out_option,
    path_option,
    tile_size_option,
    tta_option,
)


def _model_options(func):
    func = model_option(multiple=True)(func)
    func = tta_option("Average the scores over four flips (test-time augmentation).")(func)
    func = batch_size_option(32)(func)
    func = backend_option(func)
    func = out_option(
        folder=False,
        required=False,
        dest="out_path",
        help="Write the rows as CSV here (default: CSV on stdout).",
    )(func)
    return json_option(func)


def _emit(rows: list[dict], columns: list[str], out_path: str | None, as_json: bool, meta: dict):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    if out_path is not None:
        from mitokit.io.atomic import write_text_atomic

        write_text_atomic(out_path, buf.getvalue())
    if as_json:
        echo_json({**meta, "rows": rows, **({"out": str(out_path)} if out_path else {})})
    elif out_path is not None:
        click.echo(f"wrote {len(rows)} rows to {out_path}")
    else:
        click.echo(buf.getvalue(), nl=False)


@click.group()
def predict() -> None:
    """Score patches or the sub-tiles of images with trained models."""


def _scoring_command(name: str, columns: list[str]):
    """A ``predict`` sub-command: INPUT..., the model options and the rows' output (CSV or
    JSON). The decorated function gets its own options and ``scoring`` (INPUT, the models,
    --tta, --batch-size and --backend, keywords of the engine), and returns the engine's (rows,
    meta);
    the rows are written as ``columns``."""

    def decorate(func):
        @functools.wraps(func)
        def command(*, out_path: str | None, as_json: bool, **kwargs):
            keys = ("inputs", "models", "tta", "batch_size", "backend")
            scoring = {name: kwargs.pop(name) for name in keys}
            rows, meta = func(scoring=scoring, **kwargs)
            _emit(rows, columns, out_path, as_json, meta)

        command = _model_options(command)
        command = click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")(command)
        return predict.command(name)(command)

    return decorate


@_scoring_command("patches", ["image", "id", "score"])
@path_option(
    "--images",
    kind="folder",
    help="Patch folder of label-file inputs (default: searched beside the label file).",
)
@int_option(
    "--crop",
    help="Centre crop in pixels before scoring (default: the training setting, else none).",
)
def patches(scoring: dict, images: str | None, crop: int | None) -> tuple[list[dict], dict]:
    """Score cell patches with a patch classifier (or the mean of several).

    INPUT is an image file, a folder (its PNG, JPEG and TIFF files; for a folder of class
    sub-folders such as Atypical/ and Normal/, theirs), or a patch label file (CSV / JSON)
    whose patches are found as in training. One row per patch: image (the file), id (the
    label's object id, the path under a class-folder root, or the file stem) and score (the
    probability, averaged over the models).
    """
    from mitokit.engines.predict import predict_patch_files

    return predict_patch_files(**scoring, images=images, crop=crop)


@_scoring_command("tiles", ["image", "x1", "y1", "x2", "y2", "score"])
@tile_size_option("Sub-tile side in pixels (default: the training setting, else 250).")
@int_option(
    "--stride",
    help="Step between sub-tiles (default: the training setting, else 125).",
)
def tiles(scoring: dict, tile_size: int | None, stride: int | None) -> tuple[list[dict], dict]:
    """Score the sub-tiles of images with a tile classifier (BC) or regressor (Reg, Reg-NS).

    INPUT is an image file or a folder of them. Each image is covered exactly by full sub-tiles
    (the last row and column moved back to the edge). One row per sub-tile: image, x1, y1, x2,
    y2 (pixels) and score (a probability for BC, the predicted tile score s_t for Reg), ready
    for `mitokit evaluate tiles`.
    """
    from mitokit.engines.predict import predict_tile_files

    return predict_tile_files(**scoring, tile_size=tile_size, stride=stride)
