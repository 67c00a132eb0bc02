"""``mitokit export``: a model's ONNX graph (and its int8 version) for the CPU backend."""

from __future__ import annotations

from pathlib import Path

import click

from mitokit.cli.options import echo_json, json_option


@click.command("export")
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option(
    "--int8",
    is_flag=True,
    help="Also write model.int8.onnx: static int8, calibrated on tiles of --calibration.",
)
@click.option(
    "--calibration",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Images, slides or folders of them to calibrate int8 on (tiles of the training "
    "data); repeatable.",
)
@click.option(
    "--tiles",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Calibration tiles, cut at seeded random places.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Where the tiles are cut.")
@json_option
def export(
    model_path: Path,
    int8: bool,
    calibration: tuple[Path, ...],
    tiles: int,
    seed: int,
    as_json: bool,
) -> None:
    """Export MODEL's graph for `--backend onnx` (and `onnx-int8` with --int8).

    MODEL is a saved model folder, or a training run folder, whose best/ is used. The graph is
    written beside the weights (model.onnx) and made again when they change; detect, predict
    and evaluate also make it on first use. Every model that reads tiles has one, except the
    Faster R-CNN detector.
    """
    from mitokit.errors import MitokitError
    from mitokit.models.backend import GRAPH, cached_graph, quantize_model
    from mitokit.models.backend.graph import require_onnxruntime
    from mitokit.models.backend.runtime import example_input
    from mitokit.models.checkpoint import load_model, model_folder, read_model_config

    if int8 and not calibration:
        raise MitokitError("--int8 needs --calibration IMAGES (tiles of the training data)")
    if calibration and not int8:
        raise MitokitError("--calibration is for --int8")
    require_onnxruntime()
    folder = model_folder(model_path) or model_path
    if int8:  # makes (or reuses) the float graph first, then quantises it
        int8_path = quantize_model(folder, calibration, tiles=tiles, seed=seed)
        written = {"graph": str(int8_path.parent / GRAPH), "int8_graph": str(int8_path)}
    else:
        model, cfg = load_model(folder, fold_bn=True)
        graph = cached_graph(model, folder, cfg["task"], example_input(model, cfg))
        written = {"graph": str(graph)}
    task = read_model_config(folder)["task"]
    if as_json:
        echo_json({"model": str(folder), "task": task, **written})
    else:
        for path in written.values():
            click.echo(path)
