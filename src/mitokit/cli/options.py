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
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
