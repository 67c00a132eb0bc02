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
@click.option("--quick", is_flag=True, help="Smaller data and shorter training: a few minutes.")
@click.option("--seed", default=0, show_default=True, help="Seed of everything generated.")
@click.option(
    "--real-dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="AMi-Br patches/ folder of real mitoses for the montage "
    "(default: ../shared/data/amibr/patches when present).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="PyTorch CPU threads (default: one per core; 1 is faster where other work keeps "
    "the cores busy).",
)
def demo(out, quick, seed, real_dir, threads) -> None:
    """Generate data, train small versions of every model, run them, and write OUT/report.html.

    Stages: labels and agreement, synthetic cells, tiles and a slide; a patch-classifier
    ensemble; Reg / Reg-NS / BC; Det-NS-WL and the weak localiser over the slide (heatmap,
    hotspot, F1); a conditional diffusion model (transitions, counterfactuals, likeness index).
    """
    from mitokit.demo import run_demo

    run_demo(out, quick=quick, seed=seed, real_dir=real_dir, threads=threads)
