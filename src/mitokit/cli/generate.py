"""``mitokit generate``: transitions and counterfactuals with a trained diffusion model."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import click

from mitokit.cli.options import (
    batch_size_option,
    choice_option,
    device_option,
    echo_json,
    int_option,
    json_option,
    model_option,
    no_progress_option,
    out_option,
    overwrite_option,
    path_option,
    seed_option,
    tta_option,
)
from mitokit.errors import input_error


@dataclass(frozen=True)
class _Run:
    """What both commands take alike: the model, the output and the sampling settings."""

    model_path: str
    out: str
    as_json: bool
    classifiers: tuple[str, ...]
    tta: bool
    guidance: float | None
    seed: int
    batch_size: int
    device: str
    precision: str
    compile_net: bool
    overwrite: bool
    no_progress: bool
    scheduler: str | None
    steps: int | None

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of ``run_transitions`` and ``run_counterfactuals``."""
        kwargs = asdict(self)
        for name in ("model_path", "out", "as_json", "no_progress"):
            del kwargs[name]
        return {**kwargs, "progress": not self.no_progress}

    def report(self, summary: dict, line: str) -> None:
        """Print the summary as JSON, or ``line`` and where the output went."""
        if self.as_json:
            echo_json(summary)
        else:
            click.echo(f"{line}; wrote {self.out}")


def _common(func):
    """Options shared by both commands (applied bottom-up, shown top-down); the command gets
    them, with --scheduler and --steps, as one ``run`` (a ``_Run``)."""
    options = [
        model_option(
            help="The diffusion model: a saved model folder or a training run folder (best/)."
        ),
        path_option(
            "--classifier",
            "classifiers",
            multiple=True,
            help="Patch classifier(s) that score the images: a model folder or a folder of "
            "seed folders (an ensemble); repeat to add members. Without it nothing is scored.",
        ),
        tta_option("Score with the four flips averaged."),
        click.option(
            "--guidance",
            type=click.FloatRange(min=0),
            default=None,
            help="Classifier-free guidance scale (1 = none; default: the model's setting).",
        ),
        seed_option("Seed of all noise."),
        batch_size_option(64),
        device_option,
        choice_option(
            "--precision",
            choices=["fp32", "bf16"],
            default="fp32",
            help="Network arithmetic while sampling: fp32, or bf16 autocast (CUDA only, for "
            "speed on a recent GPU); the scheduler stays in float32.",
        ),
        click.option(
            "--compile",
            "compile_net",
            is_flag=True,
            help="torch.compile the network: slower first calls, faster steps; for long runs.",
        ),
        out_option(),
        overwrite_option(),
        no_progress_option("No progress bar."),
        json_option,
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        run = _Run(**{name: kwargs.pop(name) for name in _Run.__dataclass_fields__})
        return func(run, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


_scheduler_option = choice_option(
    "--scheduler",
    choices=["ddpm", "ddim", "dpm-solver", "dpm-solver-sde"],
    help="Sampler: ddpm (stochastic, default), ddim (deterministic), dpm-solver (DPM-Solver++, "
    "deterministic) or dpm-solver-sde (SDE-DPM-Solver++, stochastic like ddpm, the fast choice: "
    "25 steps follow ddpm's full chain).",
)
_steps_option = int_option(
    "--steps",
    help="Sampler steps over the whole schedule (default: all T for ddpm, 50 ddim, 25 dpm-solver, "
    "50 dpm-solver-sde).",
)


@click.group()
def generate() -> None:
    """Generate cells with a trained conditional diffusion model."""


@generate.command("transitions")
@int_option("--n", "n_sets", default=1000, help="Number of transition sets.")
@click.option(
    "--conditions",
    default="0:1:0.1",
    show_default=True,
    help="Conditions: start:stop:step (stop included) or a list a,b,c, each in [0, 1].",
)
@_scheduler_option
@_steps_option
@click.option(
    "--first-below",
    type=float,
    default=0.1,
    show_default=True,
    help="Good set: score at the lowest condition below this.",
)
@click.option(
    "--last-above",
    type=float,
    default=0.9,
    show_default=True,
    help="Good set: score at the highest condition above this.",
)
@click.option(
    "--max-step",
    type=float,
    default=0.3,
    show_default=True,
    help="Good set: every change between neighbouring conditions smaller than this.",
)
@int_option("--sets-per-grid", default=16, help="Rows of each grid figure.")
@_common
def transitions(
    run: _Run,
    n_sets: int,
    conditions: str,
    first_below: float,
    last_above: float,
    max_step: float,
    sets_per_grid: int,
) -> None:
    """Generate transition sets: one noise per set, denoised at every condition.

    Writes OUT/images/, scores.csv, grids/, summary.json and, with --classifier, curve.png
    (score vs condition: mean ± SE, median) and selected.png (the good sets); the summary
    gives the good-set yield. The classifiers score each image after their training centre
    crop, if they had one and the image is larger.
    """
    from mitokit.interpret.pipeline import run_transitions
    from mitokit.interpret.selection import parse_grid

    grid = parse_grid(conditions, what="--conditions")
    summary, result = run_transitions(
        run.model_path,
        run.out,
        grid,
        n_sets=n_sets,
        selection={"first_below": first_below, "last_above": last_above, "max_step": max_step},
        sets_per_grid=sets_per_grid,
        **run.settings(),
    )
    line = f"{result.n_sets} sets x {len(grid)} conditions in {result.seconds:.1f} s"
    if "good_set_yield" in summary:
        sel = summary["selection"]
        n = sel["passing"]
        line += (
            f"; good sets: {summary['n_good_sets']} ({100 * summary['good_set_yield']:.1f}% yield;"
            f" first < {sel['first_below']:g}: {n['first_below']}, last > {sel['last_above']:g}:"
            f" {n['last_above']}, steps < {sel['max_step']:g}: {n['max_step']})"
        )
    run.report(summary, line)


@generate.command("counterfactual")
@path_option(
    "--images",
    multiple=True,
    required=True,
    help="Cells: image files, folders of images, or a patch label file (ids and, for "
    "--source-condition own, scores). Further paths may follow as arguments.",
)
@click.argument("more_images", nargs=-1, type=click.Path())
@click.option(
    "--t-grid",
    default="0:1000:100",
    show_default=True,
    help="Noise levels t (forward steps; 0 = the input): start:stop:step or a,b,c.",
)
@choice_option(
    "--mode",
    choices=["noise", "ddim-inversion"],
    default="noise",
    help="noise: forward noise then the sampler; ddim-inversion: deterministic inversion then "
    "DDIM.",
)
@click.option(
    "--condition",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="Target condition.",
)
@click.option(
    "--source-condition",
    default="null",
    show_default=True,
    help="ddim-inversion: condition of the inversion: null (the unconditional model), own "
    "(each cell's score from the label file) or a number in [0, 1].",
)
@_scheduler_option
@_steps_option
@click.option(
    "--resembles",
    type=float,
    default=0.5,
    show_default=True,
    help="Likeness: score at which the cell resembles a mitosis.",
)
@click.option(
    "--convincing",
    type=float,
    default=0.9,
    show_default=True,
    help="Likeness: score at which the counterfactual is convincing.",
)
@path_option(
    "--labels-images",
    kind="folder",
    help="Patch folder of a label-file input (default: searched beside the label file).",
)
@_common
def counterfactual_cmd(
    run: _Run,
    images: tuple[str, ...],
    more_images: tuple[str, ...],
    t_grid: str,
    mode: str,
    condition: float,
    source_condition: str,
    resembles: float,
    convincing: float,
    labels_images: str | None,
) -> None:
    """Counterfactuals of real cells: noised to each t, denoised with the target condition.

    Writes OUT/images/, strips/ (one strip per cell, columns = t, scores printed),
    summary.json and, with --classifier, likeness.csv: per cell the score at each t and the
    earliest t scoring >= --resembles (t_resembles) and >= --convincing (t_convincing), empty
    when never reached. Cells from a label file also get their label in likeness.csv and, in
    summary.json, Spearman's correlation of each index with it (never reached ranks last).
    """
    from mitokit.interpret.pipeline import parse_source_condition, read_cells, run_counterfactuals
    from mitokit.interpret.selection import parse_grid

    grid = parse_grid(t_grid, what="--t-grid", integer=True)
    cells = read_cells(images + more_images, images=labels_images)
    src: Any = None
    if mode == "ddim-inversion":
        src = parse_source_condition(source_condition, cells)
    elif source_condition != "null":
        raise input_error(None, "--source-condition applies to --mode ddim-inversion only")
    summary, result = run_counterfactuals(
        run.model_path,
        cells,
        run.out,
        grid,
        thresholds=(resembles, convincing),
        condition=condition,
        mode=mode,
        source_condition=src,
        **run.settings(),
    )
    line = f"{len(cells)} cells x {len(grid)} noise levels in {result.seconds:.1f} s"
    if run.classifiers:
        n = len(cells)
        line += (
            f"; resembles: {summary['n_resembles']}/{n}, convincing: {summary['n_convincing']}/{n}"
        )
    run.report(summary, line)
