"""``mitokit detect``: count mitoses on whole slides with a trained model."""

from __future__ import annotations

from pathlib import Path

import click

from mitokit.cli.options import (
    backend_option,
    batch_size_option,
    device_option,
    echo_json,
    json_option,
    model_option,
    mpp_option,
    out_option,
    overwrite_option,
    threshold_option,
    tile_size_option,
    workers_option,
)


@click.command("detect")
@click.argument(
    "inputs", nargs=-1, required=True, metavar="SLIDE_OR_DIR...", type=click.Path(path_type=Path)
)
@model_option()
@out_option(dest="out_dir", help="Output folder; each slide gets OUT/<slide stem>/.")
@mpp_option
@threshold_option(
    "Keep detections scoring at least this (default: the model's own, else 0.5); a weak "
    "localiser takes its points from its map thresholded here.",
    type=click.FloatRange(0.0, 1.0),
)
@batch_size_option(16)
@workers_option
@device_option
@backend_option
@tile_size_option("Force the tile size (must fit the model; default: the model's).")
@click.option(
    "--overlap-um",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Overlap of neighbouring tiles in um (default: max(1/8 tile, 10 um)).",
)
@click.option(
    "--reader",
    type=click.Choice(["auto", "slide"]),
    default="auto",
    show_default=True,
    help="auto: read tiled TIFFs through tifffile where a probe of the slide's tiles gives "
    "OpenSlide's pixels exactly (quicker); slide: always the backend the slide opens with.",
)
@overwrite_option("Redo slides whose output is already complete.")
@json_option
def detect(
    inputs: tuple[Path, ...],
    model_path: str,
    out_dir: str,
    mpp: float | None,
    threshold: float | None,
    batch_size: int,
    workers: int | None,
    device: str,
    backend: str,
    tile_size: int | None,
    overlap_um: float | None,
    reader: str,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Detect mitotic figures on whole slides and find each slide's hotspot.

    SLIDE_OR_DIR is a slide or image file, or a folder of them. Per slide, OUT/<stem>/ gets
    detections.csv, detections.geojson (QuPath), tiles.csv, heatmap.png and summary.json (count,
    tissue area, count per mm2, and the 10-HPF hotspot of 2.37 mm2). Slides already done are
    skipped; a slide that fails is reported in one line and the others go on (exit code 2 at the
    end). Under torchrun each process takes every WORLD_SIZE-th slide. With --backend onnx or
    onnx-int8 the model runs on the CPU in ONNX Runtime, with one thread per core.
    """
    from mitokit.engines.device import resolve_device
    from mitokit.engines.distributed import env_world
    from mitokit.engines.slide import SlidePredictor
    from mitokit.errors import MitokitError, input_error
    from mitokit.models.predictors import load_predictor

    folder = _model_folder(Path(model_path))
    if backend != "torch" and device == "auto":
        device = "cpu"  # ONNX Runtime's CPU backend
    dev = resolve_device(device, local_rank=env_world()[2])
    predictor = load_predictor(folder, device=dev, backend=backend)
    try:
        engine = SlidePredictor(
            predictor,
            batch_size=batch_size,
            workers=workers,
            threshold=threshold,
            tile_size=tile_size,
            overlap_um=overlap_um,
            reader=reader,
            progress=not as_json,
            log=lambda line: click.echo(line, err=True),
        )
    except MitokitError as exc:
        raise input_error(folder, str(exc)) from None
    summary = engine.run(inputs, Path(out_dir), mpp=mpp, overwrite=overwrite)
    if as_json:
        echo_json(summary.to_dict())
    else:
        for s in summary.done:
            what = _what(engine.kind)
            click.echo(f"{s.slide}: {s.count} {what} in {s.seconds:.1f} s -> {s.folder}")
        click.echo(
            f"{len(summary.done)} done, {len(summary.skipped)} skipped (already done), "
            f"{len(summary.failed)} failed; run summary: {summary.path}"
        )
    if summary.failed:
        raise click.exceptions.Exit(2)


def _what(kind: str) -> str:
    return "mitotic figures" if kind == "points" else "positive tiles"


def _model_folder(path: Path) -> Path:
    """The model folder itself, or the ``best/`` of a training run (else as given, for the
    loader to name what is missing)."""
    from mitokit.models.checkpoint import model_folder

    return model_folder(path) or path
