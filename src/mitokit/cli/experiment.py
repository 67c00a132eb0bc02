"""``mitokit experiment``: the source papers' comparisons, re-run end to end."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from mitokit.cli.options import (
    choice_option,
    device_option,
    echo_json,
    int_option,
    json_option,
    out_option,
    seed_option,
    threads_option,
)

_out = out_option(
    help="Folder for the data, runs, result.json, tables and figures (must be new or empty)."
)
_seed = seed_option("Seed of everything.")
_quick = click.option("--quick", is_flag=True, help="The demo's small settings (a minute or two).")
_scale = click.option(
    "--scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Multiply the amount of generated data.",
)
_slides = int_option(
    "--slides",
    minimum=0,
    default=0,
    help="Also score every model on this many held-out generated slides, read by the slide "
    "engine as `mitokit detect` reads them.",
)
_slide_size = int_option(
    "--slide-size",
    minimum=256,
    default=4000,
    help="Side of the held-out slides in pixels (at 0.25 um/px).",
)
_threads = threads_option(
    "PyTorch CPU threads (1 is much faster on a machine whose cores are busy)."
)
_device = device_option


def _epochs(help: str) -> Callable:  # noqa: A002
    """``--epochs``: training epochs of the study's models (default: the study's)."""
    return int_option("--epochs", help=help)


def _study_options(func):
    """--out, --seed, --quick and --scale: the options every study starts with."""
    for option in (_scale, _quick, _seed, _out):
        func = option(func)
    return func


def _slide_study_options(func):
    """--slides, --slide-size, --threads and --device of the studies that can score held-out
    slides; the command gets them as one dict ``settings`` of the study function's keywords."""

    @functools.wraps(func)
    def wrapper(*, slides, slide_size, threads, device, **kwargs: Any) -> Any:
        settings = {"slides": slides, "slide_size": slide_size, "threads": threads}
        return func(settings={**settings, "device": device}, **kwargs)

    for option in (_device, _threads, _slide_size, _slides):
        wrapper = option(wrapper)
    return wrapper


def _study_settings(quick_settings: dict, quick: bool, epochs: int | None) -> dict:
    """The study's small settings under --quick, with --epochs over them when given."""
    extra = dict(quick_settings) if quick else {}
    if epochs is not None:
        extra["epochs"] = epochs
    return extra


def _say(text: str) -> None:
    click.echo(text, err=True)


@click.group()
def experiment() -> None:
    """Re-run the source papers' comparisons (on synthetic data with known truth)."""


@experiment.group()
def synthetic() -> None:
    """Studies on generated data: Reg vs Reg-NS, soft vs majority labels, WSS aggregations."""


@synthetic.command("reg-vs-regns")
@_study_options
@_threads
@_device
@json_option
def reg_vs_regns(out, seed, quick, scale, threads, device, as_json) -> None:
    """Tile regression with and without negative sampling, and tile classification.

    Trains Reg, Reg-NS (negative ratios 1, 2, 4, 10; 1 and 4 with --quick) and BC on synthetic
    tiles labelled with crowd boxes, and compares them on held-out tiles: AUC, TPR / FPR at
    the thresholds 0.1 ... 0.9, and FPR at equal TPR.
    """
    from mitokit.experiments.synthetic_studies import REG_QUICK
    from mitokit.experiments.synthetic_studies import reg_vs_regns as run

    extra = dict(REG_QUICK) if quick else {}
    result = run(out, seed=seed, scale=scale, threads=threads, device=device, say=_say, **extra)
    _report(result, out, as_json, _echo_reg_vs_regns)


@synthetic.command("soft-vs-majority")
@_study_options
@_threads
@_device
@json_option
def soft_vs_majority(out, seed, quick, scale, threads, device, as_json) -> None:
    """Patch classifier trained on soft (mean-vote) vs majority labels: AUC and calibration.

    Trains both on patches rated by a noisy simulated panel (same seed, same split) and
    evaluates them on held-out patches against the true latent mitosis score.
    """
    from mitokit.experiments.synthetic_studies import SOFT_QUICK
    from mitokit.experiments.synthetic_studies import soft_vs_majority as run

    extra = dict(SOFT_QUICK) if quick else {}
    result = run(out, seed=seed, scale=scale, threads=threads, device=device, say=_say, **extra)
    _report(result, out, as_json, _echo_soft_vs_majority)


@synthetic.command("wss-aggregations")
@_study_options
@_epochs("Training epochs of every model.")
@choice_option(
    "--offset",
    choices=["rot180", "none"],
    default="rot180",
    help="Map-offset rule: estimate each model's learned displacement of its map from the "
    "mitosis on the validation tiles (image labels only) and undo it; none keeps the raw map.",
)
@choice_option(
    "--tta",
    choices=["none", "rot180", "dihedral"],
    default="none",
    help="Test-time views averaged for the threshold and the test maps (dihedral: 8 turns and "
    "flips).",
)
@choice_option(
    "--aggregation",
    "aggregations",
    choices=["max", "mean", "embedding_mean", "embedding_max", "attention"],
    multiple=True,
    help="Train only these aggregations (repeat the option; default: all five).",
)
@choice_option(
    "--points",
    choices=["components", "peaks"],
    default="components",
    help="Map to points: one per thresholded component (the paper's), or one per local peak "
    "at least 4 um apart (neighbouring mitoses whose responses merge count twice).",
)
@_slide_study_options
@json_option
def wss_aggregations(
    out, seed, quick, scale, epochs, offset, tta, aggregations, points, settings, as_json
) -> None:
    """The weak localiser's aggregation ablation (second paper) on generated tiles.

    Trains one localiser per aggregation (max, mean, embedding_mean, embedding_max, attention)
    from image-level labels only and scores each on held-out tiles: image AUC and point
    precision / recall / F1 at 7.5 um against the mitosis centroids.
    """
    from mitokit.experiments.wss_study import WSS_QUICK, aggregation_ablation

    extra = _study_settings(WSS_QUICK, quick, epochs)
    if aggregations:
        extra["aggregations"] = list(aggregations)
    result = aggregation_ablation(
        out,
        seed=seed,
        scale=scale,
        offset=offset,
        tta=tta,
        points=points,
        progress=_say,
        **settings,
        **extra,
    )
    _report(result, out, as_json, _echo_wss_aggregations)


@synthetic.command("det-variants")
@_study_options
@_epochs("Training epochs (default 4).")
@_slide_study_options
@json_option
def det_variants(out, seed, quick, scale, epochs, settings, as_json) -> None:
    """Faster R-CNN with and without negative sampling and agreement-weighted loss.

    Trains Det, Det-NS, Det-WL and Det-NS-WL on synthetic tiles labelled with crowd boxes and
    their agreement, and scores each on held-out tiles: point precision, recall and F1 at
    7.5 um (threshold chosen on validation) and the best F1 over thresholds.
    """
    from mitokit.experiments.detection_study import DET_QUICK
    from mitokit.experiments.detection_study import det_variants as run

    extra = _study_settings(DET_QUICK, quick, epochs)
    result = run(out, seed=seed, scale=scale, progress=_say, **settings, **extra)
    _report(result, out, as_json, _echo_det_variants)


def _report(result: dict, out: str, as_json: bool, echo_table: Callable[[dict, str], None]):
    """Print a study's result: as JSON, or as its table and where the files went."""
    if as_json:
        echo_json(result)
    else:
        echo_table(result, out)


def _echo_reg_vs_regns(result: dict, out: str) -> None:
    """Reg, Reg-NS and BC: AUC, TPR / FPR at 0.5 and FPR at equal TPR."""
    click.echo(
        f"held-out sub-tiles: {result['data']['n_test_subtiles']} "
        f"({result['data']['n_test_positive']} with s_t > 0)"
    )
    targets = result["equal_tpr"]["targets"]
    click.echo(f"FPR at equal TPR: at Reg's TPR at 0.5 ({targets['reg@0.5']:.3f}) and fixed TPRs")
    labels = {k: ("FPR@RegTPR" if k == "reg@0.5" else f"FPR@TPR{k}") for k in targets}
    head = "  ".join(f"{labels[k]:>10}" for k in targets)
    click.echo(f"{'method':<10} {'AUC':>6}  {'TPR@0.5':>7} {'FPR@0.5':>7}  {head}")
    for name, m in result["methods"].items():
        fprs = "  ".join(f"{_num(m['fpr_at_tpr'][k]):>10}" for k in targets)
        click.echo(f"{name:<10} {_num(m['auc']):>6}  {m['tpr']:>7.3f} {m['fpr']:>7.3f}  {fprs}")
    click.echo(f"written to {out} (result.json, sweep.csv, figures/)")


def _echo_soft_vs_majority(result: dict, out: str) -> None:
    """Soft vs majority labels: AUC, balanced accuracy and calibration."""
    click.echo(
        f"held-out patches: {result['data']['n_test']} ({result['data']['n_test_positive']} "
        "with m > 0.5)"
    )
    click.echo(
        f"{'labels':<9} {'AUC':>6} {'bal.acc':>7} {'ECE truth':>9} {'ECE m':>7} {'ECE votes':>9}"
    )
    for name, m in result["methods"].items():
        click.echo(
            f"{name:<9} {_num(m['auc']):>6} {m['balanced_accuracy']:>7.3f} "
            f"{m['ece_truth']:>9.3f} {m['ece_m']:>7.3f} {m['ece_votes']:>9.3f}"
        )
    click.echo(f"written to {out} (result.json, calibration.csv, figures/)")


def _echo_wss_aggregations(result: dict, out: str) -> None:
    """One row per aggregation: image AUC, threshold and point scores."""
    data = result["data"]
    click.echo(
        f"held-out tiles: {data['n_test_tiles']} ({data['n_test_positive']} positive, "
        f"{data['n_test_mitoses']} mitoses); points matched within 7.5 um"
    )
    click.echo(
        f"{'aggregation':<15} {'AUC':>6} {'bal.acc':>7} {'thr':>6} {'P':>6} {'R':>6} {'F1':>6} "
        f"{'chance':>6} {'oracle':>6}"
    )
    for name, m in result["methods"].items():
        click.echo(
            f"{name:<15} {_num(m['image_auc']):>6} {m['image_balanced_accuracy']:>7.3f} "
            f"{m['threshold']:>6.3f} {m['precision']:>6.3f} {m['recall']:>6.3f} "
            f"{m['f1']:>6.3f} {m['chance_f1']:>6.3f} {m['oracle_f1']:>6.3f}"
        )
    _echo_slides(result["methods"])
    click.echo(f"written to {out} (result.json, table.csv)")


def _echo_det_variants(result: dict, out: str) -> None:
    """One row per detector variant: point scores and training speed."""
    click.echo(
        f"held-out mitoses: {result['data']['n_test_truth']} (consensus); chance F1 "
        f"{result['chance_f1']:.3f}"
    )
    click.echo(
        f"{'variant':<10} {'thresh':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'bestF1':>6} "
        f"{'s/epoch':>7}"
    )
    for name, m in result["variants"].items():
        click.echo(
            f"{name:<10} {m['threshold']:>6.2f} {m['precision']:>6.3f} {m['recall']:>6.3f} "
            f"{m['f1']:>6.3f} {m['best_f1']:>6.3f} {m['seconds_per_epoch']:>7.1f}"
        )
    _echo_slides(result["variants"])
    click.echo(f"written to {out} (result.json, table.csv)")


def _echo_slides(models: dict) -> None:
    """The held-out slide scores of each model, when the study read slides."""
    scored = {name: m["slides"] for name, m in models.items() if m.get("slides")}
    if not scored:
        return
    first = next(iter(scored.values()))
    click.echo(
        f"held-out slides: {first['n_slides']} ({first['n_truth']} consensus mitoses), read "
        "by the slide engine"
    )
    click.echo(
        f"{'model':<15} {'thresh':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'bestF1':>6} "
        f"{'F1 m>.5':>7}"
    )
    for name, sl in scored.items():
        click.echo(
            f"{name:<15} {sl['threshold']:>6.3f} {sl['precision']:>6.3f} {sl['recall']:>6.3f} "
            f"{sl['f1']:>6.3f} {sl['best_f1']:>6.3f} {sl['latent']['f1']:>7.3f}"
        )
    click.echo(
        f"ceiling: an observer knowing every cell's latent score scores F1 "
        f"{first['ceiling']['best_f1']:.3f} against the consensus (rater noise)"
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
