"""Option decorators shared by the commands."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."
)

mpp_option = click.option(
    "--mpp",
    type=float,
    default=None,
    help="Microns per pixel at level 0; overrides the file's value, required where it has none.",
)


def model_option(
    *,
    multiple: bool = False,
    dest: str | None = None,
    help: str | None = None,  # noqa: A002 - click's word
) -> Callable:
    """``--model``: a saved model folder (or a training run folder, whose ``best/`` is used);
    with ``multiple``, repeatable for an ensemble (into ``models``, else ``model_path``)."""
    text = help or (
        "A saved model folder, or a folder of seed folders; repeat for an ensemble (the scores "
        "are averaged)."
        if multiple
        else "A saved model folder (or a training run folder, whose best/ is used)."
    )
    name = dest or ("models" if multiple else "model_path")
    return click.option(
        "--model", name, multiple=multiple, required=True, type=click.Path(), help=text
    )


device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="cpu, cuda, cuda:N, mps or auto (CUDA if there is one, under torchrun the GPU of the "
    "local rank; else Apple's MPS; else the CPU).",
)


def batch_size_option(default: int, help: str | None = None) -> Callable:  # noqa: A002
    """``--batch-size``: images (tiles, patches) per network call."""
    return click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=default,
        show_default=True,
        help=help or "Images per network call.",
    )


workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Reader threads (default: up to 4, one per CPU core).",
)


def out_option(
    *,
    folder: bool = True,
    required: bool = True,
    dest: str = "out",
    help: str | None = None,  # noqa: A002
) -> Callable:
    """``--out``: the folder (or, with ``folder=False``, the file) a command writes."""
    return click.option(
        "--out",
        dest,
        required=required,
        default=None,
        type=click.Path(file_okay=not folder, dir_okay=folder),
        help=help or ("Folder to create." if folder else "File to write."),
    )


def overwrite_option(help: str | None = None) -> Callable:  # noqa: A002
    """``--overwrite``: replace what an earlier run wrote."""
    return click.option(
        "--overwrite", is_flag=True, help=help or "Replace a non-empty --out folder."
    )


def threshold_option(help: str, **kwargs: Any) -> Callable:  # noqa: A002
    """``--threshold``: the score a prediction needs (type and default per command)."""
    kwargs.setdefault("type", float)
    kwargs.setdefault("default", None)
    return click.option("--threshold", help=help, **kwargs)


def strict_option(func: Callable) -> Callable:
    """``--strict``: every label file the command reads is refused where it would be adjusted.

    Without it, readers take real files as published (boxes crossing the border clipped, centres
    just outside it kept, MultiPolygons split) and say so in one line on stderr.
    """

    @click.option(
        "--strict",
        is_flag=True,
        help="Refuse label files that need adjusting (boxes crossing the image border, centres "
        "just outside it, multi-part polygons) instead of adjusting them with a note.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, strict: bool, **kwargs: Any) -> Any:
        from mitokit.io.formats import strict_reading

        with strict_reading(strict):
            return func(*args, **kwargs)

    return wrapper


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    from mitokit.io.json_values import json_default

    click.echo(json.dumps(data, indent=2, sort_keys=False, default=json_default))
