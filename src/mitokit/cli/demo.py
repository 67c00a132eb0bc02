"""``mitokit demo``: every capability on generated data, with a report."""

from __future__ import annotations

import click

from mitokit.cli.options import path_option, seed_option, threads_option


@click.command()
@path_option(
    "--out",
    kind="folder",
    default="demo_out",
    show_default=True,
    help="Folder for the report and everything it shows (replaced).",
)
@click.option("--quick", is_flag=True, help="Smaller data and shorter training: a few minutes.")
@seed_option("Seed of everything generated.")
@path_option(
    "--real-dir",
    kind="folder",
    exists=True,
    help="AMi-Br patches/ folder of real mitoses for the montage "
    "(default: ../shared/data/amibr/patches when present).",
)
@threads_option(
    "PyTorch CPU threads (default: one per core; 1 is faster where other work keeps "
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
