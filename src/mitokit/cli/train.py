"""``mitokit train``: train any model from a YAML config, in one process or under torchrun."""

from __future__ import annotations

import click

from mitokit.cli.options import (
    echo_json,
    int_option,
    json_option,
    no_progress_option,
    out_option,
    strict_option,
)


@click.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set optim.lr=1e-4 --set train.epochs=5 (repeatable).",
)
@out_option(required=False, help="Run folder (default: the config's train.out, else runs/<task>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@int_option(
    "--seeds",
    default=1,
    help="Train an ensemble: this many runs with seeds train.seed + i into <out>/seed<i>.",
)
@no_progress_option("No progress bar or per-epoch lines.")
@json_option
@strict_option
def train(config, overrides, out, resume, seeds, no_progress, as_json) -> None:
    """Train the model CONFIG describes; keep the best epoch by validation loss.

    Several GPUs or machines: launch through torchrun, e.g.
    ``torchrun --nproc_per_node 8 -m mitokit train CONFIG``; only rank 0 writes and prints.
    """
    from mitokit.engines.distributed import env_world
    from mitokit.engines.train import train as run_training

    if seeds > 1:
        from mitokit.engines.config import load_config
        from mitokit.models.classifier import ensemble_configs

        cfg = load_config(config, overrides)
        if out is not None:
            cfg["train"]["out"] = str(out)
        results = []
        for i, member in enumerate(ensemble_configs(cfg, seeds)):
            if not no_progress and env_world()[1] == 0:
                click.echo(
                    f"ensemble member {i + 1}/{seeds} (seed {member['train']['seed']})", err=True
                )
            results.append(run_training(member, resume=resume, progress=not no_progress))
        if env_world()[1] != 0:
            return
        summaries = [_summary(r) for r in results]
        if as_json:
            echo_json({"members": summaries, "ensemble": cfg["train"]["out"]})
            return
        for r in results:
            _print(r)
        click.echo(f"ensemble of {seeds}: {cfg['train']['out']}")
        return
    result = run_training(
        config, overrides=overrides, out=out, resume=resume, progress=not no_progress
    )
    if env_world()[1] != 0:
        return
    if as_json:
        echo_json(_summary(result))
        return
    _print(result)


def _summary(result) -> dict:
    return {
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "model": str(result.model_dir),
        "out": str(result.out_dir),
    }


def _print(result) -> None:
    loss = "n/a" if result.best_val_loss is None else f"{result.best_val_loss:.6g}"
    stop = ", stopped early" if result.stopped_early else ""
    click.echo(
        f"best epoch {result.best_epoch} of {result.epochs_run} (val loss {loss}{stop}); "
        f"model: {result.model_dir}"
    )
