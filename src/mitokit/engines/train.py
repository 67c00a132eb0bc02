"""The one training engine every mitokit model uses.

The engine runs epochs, steps the optimizer and the step LR schedule, evaluates, keeps the best
model by validation loss, stops early, checkpoints, resumes, logs and distributes; the
:class:`~mitokit.engines.task.Task` a config names supplies the model, the data (split by slide)
and the loss. A run folder ends up as::

    out/
      config.resolved.json   every setting of the run, defaults included
      info.json              the data's facts (split sizes ...), device, world size, versions
      log.csv, log.json      one row per epoch: train loss and figures, val metrics, lr, seconds
      best/                  the model of the lowest val loss (the last epoch without val data),
      last/                    and of the last epoch: mitokit.models.io folders (load_model)
      state/                 the training state of the last epoch, for --resume (engines.state)

Reproducibility: on CPU with ``train.deterministic`` (the default) the same config and seed give
the same weights bit for bit, and a run interrupted at any point and resumed ends with the same
weights and log rows as an uninterrupted one. The state holds the model (an EMA inside it), the
optimizer, the scheduler and the early-stopping counters; every epoch's randomness is a function
of (seed, epoch, rank) alone: at the start of each epoch the engine seeds torch, numpy and python
and the DataLoader's generator (shuffling, the workers' seeds) from them, the samplers draw from
(seed, epoch) and the tasks' augmentations follow torch's seed
(:class:`~mitokit.models._common.WorkerDraws`), with or without loader workers. On CUDA the
run is deterministic as far as the kernels are (``torch.use_deterministic_algorithms`` warns
where not).

The engine's parts: this module starts a run (resuming, device, processes) and returns its
result; :mod:`mitokit.engines.epochs` builds the run's objects and runs the epochs,
:mod:`mitokit.engines.loaders` builds the DataLoaders, :mod:`mitokit.engines.seeding` derives
the seeds and sets the determinism flags,
:mod:`mitokit.engines.run_folder` writes the logs and checks a resumed config,
:mod:`mitokit.engines.state` saves and loads the training state and
:mod:`mitokit.engines.device` resolves ``train.device``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mitokit.engines import state as st
from mitokit.engines.config import load_config
from mitokit.engines.device import resolve_device
from mitokit.engines.distributed import init_distributed
from mitokit.engines.epochs import _Run
from mitokit.engines.run_folder import RESUMABLE_CHANGES, _check_resumable
from mitokit.engines.seeding import _torch_flags
from mitokit.errors import MitokitError, input_error


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        best_epoch: Epoch (1-based) of the kept model: lowest val loss, or the last epoch
            without validation data; None if no epoch had a finite val loss.
        best_val_loss: Its validation loss (None without validation data).
        history: One log row per epoch (as in ``log.json``).
        out_dir: The run folder.
        model_dir: The kept model's folder (``out_dir / "best"``), for
            :func:`mitokit.models.io.load_model`.
        stopped_early: Whether early stopping ended the run.
        epochs_run: Completed epochs (those of an interrupted run included after a resume).
        out_of_time: Whether ``train.max_minutes`` ended this invocation before ``epochs``.
    """

    best_epoch: int | None
    best_val_loss: float | None
    history: list[dict[str, Any]]
    out_dir: Path
    model_dir: Path
    stopped_early: bool = False
    epochs_run: int = 0
    out_of_time: bool = False


def train(
    config: str | os.PathLike | Mapping[str, Any],
    *,
    overrides: Sequence[str] = (),
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the model a config describes.

    Args:
        config: A YAML config file or a config mapping (see :mod:`mitokit.engines.config`).
        overrides: ``"section.key=value"`` settings applied over the config (``--set``).
        out: Run folder; overrides ``train.out`` (default ``runs/<task>``).
        resume: Continue the run in ``out`` from its last completed epoch. Only the settings in
            :data:`RESUMABLE_CHANGES` may differ from the interrupted run's, e.g. more epochs.
        progress: Show a progress bar and one line per epoch on stderr (rank 0 only).

    Returns:
        The best epoch, its val loss, the log rows and where the model is.

    Raises:
        MitokitError: A bad config, an empty training set, a run folder that already holds a
            run (without ``resume``) or none (with it), a diverging loss.

    Under ``torchrun`` every process calls this; see :mod:`mitokit.engines.distributed`. The
    task's ``evaluate`` runs in ``torch.no_grad()`` with the model in eval mode (a task that
    needs gradients there opens ``torch.enable_grad()`` itself).
    """
    cfg = load_config(config, overrides)
    if out is not None:
        cfg["train"]["out"] = os.fspath(out)
    out_dir = Path(cfg["train"]["out"] or Path("runs") / cfg["task"])
    cfg["train"]["out"] = os.fspath(out_dir)

    loaded = None
    if resume:
        loaded = st.load_state(out_dir / "state")
        _check_resumable(loaded.config, cfg, out_dir)
        done = loaded.progress
        if done.stopped_early or done.epoch >= cfg["train"]["epochs"]:
            return _result(done, out_dir)
    elif st.has_state(out_dir):
        raise input_error(
            out_dir,
            "already holds a training run (state/); pass --resume to continue it "
            "or choose another --out",
        )

    device = _train_device(cfg["train"]["device"])
    ctx = init_distributed(device.type)
    run = None
    ok = False
    try:
        with _torch_flags(cfg["train"]["deterministic"], device.type == "cuda"):
            run = _Run(cfg, out_dir, ctx, device, loaded, progress)
            out_of_time = run.run()
            result = _result(run.progress, out_dir, out_of_time=out_of_time)
        ok = True
        return result
    finally:
        # Free the DDP wrapper (it holds the process group) before the group is destroyed: a
        # gloo group outliving destroy_process_group can abort the process at exit.
        del run
        if ctx.enabled:
            import gc

            gc.collect()
        ctx.close(graceful=ok)


def _train_device(choice: str) -> torch.device:
    """``train.device`` resolved (:func:`mitokit.engines.device.resolve_device`)."""
    try:
        return resolve_device(choice)
    except MitokitError as exc:
        raise input_error(None, f"train.{exc}") from None


def _result(p: st.Progress, out_dir: Path, *, out_of_time: bool = False) -> TrainResult:
    return TrainResult(
        best_epoch=p.best_epoch,
        best_val_loss=p.best_val_loss,
        history=list(p.history),
        out_dir=out_dir,
        model_dir=out_dir / "best",
        stopped_early=p.stopped_early,
        epochs_run=p.epoch,
        out_of_time=out_of_time,
    )


__all__ = ["RESUMABLE_CHANGES", "TrainResult", "train"]
