"""``mitokit demo``: every capability on generated data, with a report."""

from __future__ import annotations

import click


@click.command()
@click.option(
    "--out",
    default="demo_out",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the report and everything it shows (replaced).",
)
@click.option("--quick", is_flag=True, help="Smaller data: a minute or two.")
@click.option("--seed", default=0, show_default=True, help="Seed of everything generated.")
@click.option(
    "--real-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="AMi-Br patches/ folder of real mitoses for the montage "
    "(default: ../shared/data/amibr/patches when present).",
)
def demo(out, quick, seed, real_dir) -> None:
    """Generate data, label it every way, and write OUT/report.html."""
    from mitokit.demo import run_demo

    run_demo(out, quick=quick, seed=seed, real_dir=real_dir)
