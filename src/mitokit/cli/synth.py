"""``mitokit synth``: synthetic H&E data with known mitosis truth, in real formats."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from mitokit.cli.options import echo_json, out_option, overwrite_option, seed_option

_seed = seed_option("Seed: same seed, same bytes.")
_out = out_option()
_overwrite = overwrite_option()
_raters = click.option(
    "--raters", default=3, show_default=True, help="Pathologists rating each cell."
)
_noise = click.option(
    "--rater-noise",
    default=0.12,
    show_default=True,
    help="SD of each pathologist's view of the latent mitosis score m.",
)
_repeats = click.option(
    "--repeat-fraction",
    default=0.2,
    show_default=True,
    help="Share of cells each pathologist rates again (2-3 times).",
)


def _panel_options(fn):
    """The pathologist-panel options shared by every synth command; the command gets the
    panel they describe as ``panel``."""

    @functools.wraps(fn)
    def command(*args, raters: int, rater_noise: float, repeat_fraction: float, **kwargs):
        return fn(*args, panel=_panel(raters, rater_noise, repeat_fraction), **kwargs)

    return _raters(_noise(_repeats(command)))


def _checked(n: int, size: int, *, low: int) -> tuple[int, int]:
    """--n and --size, checked (a side from ``low`` to the largest tile side)."""
    from mitokit.data.synthetic.limits import MAX_TILE_SIDE, check_count, check_side

    return check_count(n, name="--n"), check_side(size, name="--size", low=low, high=MAX_TILE_SIDE)


def _panel(raters: int, noise: float, repeat_fraction: float):
    from mitokit.data.synthetic.labelling import RaterPanel

    try:
        return RaterPanel(n_raters=raters, noise=noise, repeat_fraction=repeat_fraction)
    except ValueError as exc:
        from mitokit.errors import input_error

        raise input_error(None, f"rater settings: {exc}") from None


def _bar(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="", leave=False, disable=None)


@click.group()
def synth() -> None:
    """Synthetic H&E patches, tiles and whole slides with every label kind."""


def _dataset_command(name: str, item: str, *, n: int, size: int, low: int, bar: str):
    """``synth <name>``: --n generated patches or tiles (``item`` names one) of side --size, from
    ``low`` to the largest tile side, written into the new folder --out with the pathologist
    panel's labels.

    The decorated function gets the checked ``n``, ``size``, ``seed`` and ``out``, refuses what
    cannot be held or written before anything is, and returns ``write(folder, **labelling)``,
    which generates the items and writes them with the labelling keywords of the exporters
    (seed, panel, parameters, progress) while the progress bar ``bar`` runs.
    """

    def decorate(func: Callable[..., Callable[..., None]]) -> click.Command:
        @functools.wraps(func)
        def command(*, out: str, n: int, size: int, seed: int, panel, overwrite: bool) -> None:
            from mitokit.io.atomic import atomic_dir

            n, size = _checked(n, size, low=low)
            write = func(n=n, size=size, seed=seed, out=out)
            with atomic_dir(out, overwrite=overwrite) as tmp, _bar(n, bar) as shown:
                write(
                    tmp,
                    seed=seed,
                    panel=panel,
                    parameters={"size": size, "n": n},
                    progress=lambda k: shown.update(k - shown.n),
                )
            click.echo(f"wrote {n} {name} to {out}", err=True)

        options = [
            _out,
            click.option("--n", "n", default=n, show_default=True, help=f"Number of {name}."),
            click.option(
                "--size",
                default=size,
                show_default=True,
                help=f"{item} side in pixels ({low} to 8192).",
            ),
            _seed,
            _panel_options,
            _overwrite,
        ]
        for option in reversed(options):
            command = option(command)
        return synth.command(name)(command)

    return decorate


@_dataset_command("patches", "Patch", n=1000, size=64, low=8, bar="writing patches")
def patches(*, n: int, size: int, seed: int, out: str) -> Callable[..., None]:
    """Cell-centred patches with per-rater votes (labels.csv) and manifest.json."""
    from mitokit.data.synthetic.export import write_patch_dataset
    from mitokit.data.synthetic.generate import generate_patches
    from mitokit.data.synthetic.limits import check_patches

    check_patches(n, size)

    def write(folder: str, **labelling: Any) -> None:
        batch = generate_patches(n, seed=seed, size=size)
        write_patch_dataset(folder, batch.images, batch.cells, **labelling)

    return write


@_dataset_command("tiles", "Tile", n=8, size=1000, low=64, bar="rendering tiles")
def tiles(*, n: int, size: int, seed: int, out: str) -> Callable[..., None]:
    """Tiles with pathologist votes, consensus, centroids, crowd boxes and image labels."""
    from mitokit.data.synthetic.export import write_tile_dataset
    from mitokit.data.synthetic.generate import generate_tiles
    from mitokit.data.synthetic.limits import check_tiles

    check_tiles(n, size, out)

    def write(folder: str, **labelling: Any) -> None:
        cells = ((t.image, t.cells) for t in generate_tiles(n, seed=seed, size=size))
        write_tile_dataset(folder, cells, **labelling)

    return write


@synth.command("slide")
@_out
@click.option(
    "--width", default=20000, show_default=True, help="Level-0 width in pixels (256 to 200,000)."
)
@click.option(
    "--height", default=20000, show_default=True, help="Level-0 height in pixels (256 to 200,000)."
)
@click.option("--mpp", default=0.25, show_default=True, help="Microns per pixel at level 0.")
@_seed
@_panel_options
@click.option(
    "--labels/--no-labels",
    default=True,
    show_default=True,
    help="Also write the label files of the slide's cells.",
)
@_overwrite
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def slide(out, width, height, mpp, seed, panel, labels, overwrite, as_json) -> None:
    """A pyramidal tiled TIFF whole slide with mpp, written tile by tile, and its labels."""
    from pathlib import Path

    from mitokit.data.synthetic.export import write_slide_labels
    from mitokit.data.synthetic.generate import write_synthetic_slide
    from mitokit.data.synthetic.limits import MAX_SLIDE_SIDE, check_side, check_slide
    from mitokit.data.synthetic.scene import SceneParams
    from mitokit.io.atomic import atomic_dir

    width = check_side(width, name="--width", low=256, high=MAX_SLIDE_SIDE)
    height = check_side(height, name="--height", low=256, high=MAX_SLIDE_SIDE)
    params = SceneParams(mpp=mpp)
    check_slide(width, height, mpp=params.mpp, labels=labels, out=out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with _bar(100, "rendering slide") as bar:
            cells = write_synthetic_slide(
                Path(tmp) / "slide.tiff",
                size=(width, height),
                seed=seed,
                mpp=mpp,
                params=params,
                progress=lambda done, total: bar.update(round(100 * done / total) - bar.n),
            )
        if labels:
            write_slide_labels(
                tmp,
                cells,
                slide_name="slide.tiff",
                size=(width, height),
                seed=seed,
                panel=panel,
                parameters={"mpp": mpp, "scene": params},
            )
    summary = {
        "slide": str(Path(out) / "slide.tiff"),
        "width": width,
        "height": height,
        "mpp": mpp,
        "cells": len(cells),
        "mitotic_cells": int((cells.m > 0.5).sum()),
    }
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"wrote {summary['slide']} ({width} x {height} px, {len(cells)} cells)", err=True
        )
