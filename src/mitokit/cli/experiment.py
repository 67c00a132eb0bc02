"""``mitokit experiment``: the source papers' comparisons, re-run end to end."""

from __future__ import annotations

import click

from mitokit.cli.options import echo_json, json_option

_out = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for the data, runs, result.json, tables and figures (must be new or empty).",
)
_seed = click.option("--seed", default=0, show_default=True, help="Seed of everything.")
_quick = click.option("--quick", is_flag=True, help="The demo's small settings (a minute or two).")
_scale = click.option(
    "--scale",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Multiply the amount of generated data.",
)
_threads = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="PyTorch CPU threads (1 is much faster on a machine whose cores are busy).",
)
_device = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to train and predict.",
)


def _say(text: str) -> None:
    click.echo(text, err=True)


@click.group()
def experiment() -> None:
    """Re-run the source papers' comparisons (on synthetic data with known truth)."""


@experiment.group()
def synthetic() -> None:
    """Studies on generated data: Reg vs Reg-NS on tiles, soft vs majority labels on patches."""


@synthetic.command("reg-vs-regns")
@_out
@_seed
@_quick
@_scale
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
    if as_json:
        echo_json(result)
        return
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


@synthetic.command("soft-vs-majority")
@_out
@_seed
@_quick
@_scale
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
    if as_json:
        echo_json(result)
        return
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


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
