"""Option decorators shared by the commands."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

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


backend_option = click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    default="torch",
    show_default=True,
    help="torch: PyTorch. onnx: the model's ONNX graph in ONNX Runtime on the CPU (made once "
    "beside the weights). onnx-int8: its int8 graph (`mitokit export --int8`). Not for the "
    "detector.",
)


def int_option(
    *decls: str,
    help: str,  # noqa: A002
    minimum: int = 1,
    default: int | None = None,
) -> Callable:
    """An option taking a whole number of at least ``minimum``; a default, where there is one,
    is shown in --help (else the command chooses, as its help says)."""
    return click.option(
        *decls,
        type=click.IntRange(min=minimum),
        default=default,
        show_default=default is not None,
        help=help,
    )


def batch_size_option(default: int, help: str | None = None) -> Callable:  # noqa: A002
    """``--batch-size``: images (tiles, patches) per network call."""
    return int_option("--batch-size", default=default, help=help or "Images per network call.")


workers_option = int_option(
    "--workers", help="Reader threads (default: up to 4, one per CPU core)."
)


def path_option(
    *decls: str,
    help: str,  # noqa: A002
    kind: Literal["file", "folder"] | None = None,
    exists: bool = False,
    **kwargs: Any,
) -> Callable:
    """An option naming a path; ``kind`` refuses a folder (``"file"``) or a file (``"folder"``)
    there, ``kwargs`` (``required``, ``multiple``, ``default``...) go to click as they are."""
    path = click.Path(file_okay=kind != "folder", dir_okay=kind != "file", exists=exists)
    return click.option(*decls, type=path, help=help, **kwargs)


def choice_option(
    *decls: str,
    choices: Sequence[str],
    help: str,  # noqa: A002
    **kwargs: Any,
) -> Callable:
    """An option taking one of ``choices``; a default, where there is one, is shown in --help."""
    if kwargs.get("default") is not None:
        kwargs.setdefault("show_default", True)
    return click.option(*decls, type=click.Choice(choices), help=help, **kwargs)


def format_option(of: str) -> Callable:
    """``--<of>-format``: the annotation format of the file option ``--<of>``."""
    return click.option(
        f"--{of}-format", default=None, help=f"Format of --{of} (default: detected)."
    )


def seed_option(help: str) -> Callable:  # noqa: A002
    """``--seed``: the seed of what the command draws (0 by default)."""
    return click.option("--seed", default=0, show_default=True, help=help)


def tta_option(help: str) -> Callable:  # noqa: A002
    """``--tta``: average a model's scores over flipped views (test-time augmentation)."""
    return click.option("--tta", is_flag=True, help=help)


def threads_option(help: str) -> Callable:  # noqa: A002
    """``--threads``: PyTorch CPU threads (by default the command's choice, as its help says)."""
    return int_option("--threads", help=help)


def no_progress_option(help: str) -> Callable:  # noqa: A002
    """``--no-progress``: no progress bar (and, per command, no progress lines)."""
    return click.option("--no-progress", is_flag=True, help=help)


def tile_size_option(help: str) -> Callable:  # noqa: A002
    """``--tile-size``: the side of the tiles a model reads, in pixels (default per command)."""
    return int_option("--tile-size", minimum=16, help=help)


def out_option(
    *,
    folder: bool = True,
    required: bool = True,
    dest: str = "out",
    help: str | None = None,  # noqa: A002
) -> Callable:
    """``--out``: the folder (or, with ``folder=False``, the file) a command writes."""
    return path_option(
        "--out",
        dest,
        required=required,
        default=None,
        kind="folder" if folder else "file",
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
