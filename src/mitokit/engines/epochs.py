"""One training run of :func:`mitokit.engines.train.train`: the objects it builds, its epoch loop.

:class:`_Run` builds the task's model and data, the optimizer, the step LR schedule and the
DataLoaders (or restores them from a resumed state), then runs the epochs: the training steps
(bf16 autocast and channels-last where asked, gradient clipping, the task's ``after_step`` hook),
the evaluation, the selection of the best model by validation loss, early stopping, the time
budget and the checkpoints. Every epoch's randomness is seeded from (seed, epoch, rank) alone
(see :mod:`mitokit.engines.train`).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mitokit.engines import state as st
from mitokit.engines.config import save_resolved
from mitokit.engines.distributed import DistContext, unwrap, wrap_model
from mitokit.engines.loaders import _check_data, _Loaders, _size
from mitokit.engines.run_folder import (
    _gather_rng,
    _remove_stale_temporaries,
    _restore,
    _save_checkpoint,
    _say,
    _summary,
    _val_of,
)
from mitokit.engines.seeding import _GLOBAL_STREAM, _LOADER_STREAM, _mix, _seed_all
from mitokit.engines.task import Task, get_task
from mitokit.errors import input_error
from mitokit.io.atomic import write_text_atomic


class _Run:
    """One training run: the objects it builds and its epoch loop."""

    def __init__(
        self,
        cfg: dict[str, Any],
        out_dir: Path,
        ctx: DistContext,
        device: torch.device,
        loaded: st.LoadedState | None,
        progress: bool,
    ) -> None:
        self.cfg = cfg
        self.tc = cfg["train"]
        self.out_dir = out_dir
        self.ctx = ctx
        self.show = progress and ctx.is_main
        self.device = device
        self.amp = _use_amp(self.tc["amp"], self.device)
        cl = self.tc["channels_last"]
        self.channels_last = (self.device.type == "cuda") if cl == "auto" else bool(cl)
        seed = int(self.tc["seed"])
        self.seed = seed

        _seed_all(seed)  # the same model init and data on every rank
        self.task: Task = get_task(cfg["task"])
        self.data = _check_data(self.task, self.task.build_data(cfg["data"], seed=seed))
        model = self.task.build_model(cfg["model"])
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"task {self.task.name!r}: build_model must return a torch.nn.Module")
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if ctx.enabled:  # distinct dropout / augmentation streams per rank from here on
            _seed_all(_mix(seed, ctx.rank))

        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise input_error(None, f"task {self.task.name!r}: the model has no trainable weights")
        self.optimizer = _optimizer(params, cfg["optim"])
        step = int(cfg["optim"]["step_size"])
        self.scheduler = (
            torch.optim.lr_scheduler.StepLR(self.optimizer, step, gamma=cfg["optim"]["gamma"])
            if step > 0
            else None
        )
        self.generator = torch.Generator().manual_seed(seed)
        loaders = _Loaders.build(
            self.data,
            ctx,
            self.device,
            batch_size=self.tc["batch_size"],
            num_workers=self.tc["num_workers"],
            seed=seed,
            generator=self.generator,
            channels_last=self.channels_last,
        )
        self.train_loader, self.val_loader = loaders.train, loaders.val
        self.epoch_sampler, self.counter = loaders.sampler, loaders.counter
        self.val_generator = loaders.val_generator

        self.progress = st.Progress()
        if loaded is not None:
            self.progress = _restore(
                loaded,
                model=model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                generator=self.generator,
                ctx=ctx,
                folder=out_dir / "state",
            )
        self.model = wrap_model(model, ctx, self.device)

    # ----------------------------------------------------------------------------- running

    def run(self) -> bool:
        """The epoch loop (on every rank); whether ``train.max_minutes`` ended it early."""
        self._prepare_folder()
        epochs = int(self.tc["epochs"])
        budget = float(self.tc["max_minutes"]) * 60.0
        save_every = int(self.tc["save_every"])
        t_start = time.perf_counter()
        p = self.progress
        out_of_time = False
        while p.epoch < epochs and not p.stopped_early and not out_of_time:
            epoch = p.epoch + 1
            row = self._epoch(epoch, epochs)
            improved = self._select(row)
            row["best"] = improved
            p.history.append(row)
            p.epoch = epoch
            patience = int(self.tc["patience"])
            has_val = self.val_loader is not None
            p.stopped_early = bool(has_val and patience and p.bad_epochs >= patience)
            out_of_time = self._out_of_time(epoch, epochs, budget, t_start, row)
            final = p.stopped_early or out_of_time or epoch >= epochs
            self._checkpoint(improved, row, full=final or epoch % save_every == 0)
            if self.show:
                self._report(row, epochs, out_of_time=out_of_time)
        return out_of_time

    def _prepare_folder(self) -> None:
        """Rank 0 clears a killed run's temporaries and writes the config and info files."""
        out, ctx = self.out_dir, self.ctx
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            removed = _remove_stale_temporaries(out)
            if removed and self.show:
                _say(f"removed {len(removed)} temporaries an interrupted run left in {out}")
            save_resolved(self.cfg, out / "config.resolved.json")
            write_text_atomic(out / "info.json", json.dumps(self._info(), indent=2) + "\n")
            if self.show:
                _say(f"training {self.task.name} on {self.device} -> {out}")
        ctx.barrier()

    def _out_of_time(
        self, epoch: int, epochs: int, budget: float, t_start: float, row: Mapping[str, Any]
    ) -> bool:
        """Would the next epoch, as long as this one, end past the budget (0: none)?"""
        if budget <= 0:
            return False
        # rank 0's clock decides, so that every rank stops after the same epoch
        elapsed, last = self.ctx.broadcast_floats(
            [time.perf_counter() - t_start, float(row["seconds"])]
        )
        return epoch < epochs and elapsed + last > budget

    def _report(self, row: Mapping[str, Any], epochs: int, *, out_of_time: bool) -> None:
        """The epoch's line on stderr, and why the run stops when it runs out of time."""
        _say(_summary(row, epochs, stopped=self.progress.stopped_early))
        if out_of_time:
            _say(
                f"stopping after epoch {row['epoch']}: the next would end past "
                f"train.max_minutes={self.tc['max_minutes']:g}; --resume continues"
            )

    def _epoch(self, epoch: int, epochs: int) -> dict[str, Any]:
        """Train one epoch and evaluate; the epoch's log row."""
        t0 = time.perf_counter()
        self._seed_epoch(epoch)
        if hasattr(self.epoch_sampler, "set_epoch"):
            self.epoch_sampler.set_epoch(epoch - 1)
        self.model.train()
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.counter.count = 0
        loss_sum, n_batches, figures = self._steps(epoch, epochs)
        task = self.task
        total_loss, total_batches = self.ctx.all_reduce_sum([float(loss_sum), n_batches])
        per_rank = self.ctx.all_gather_int(self.counter.count)
        if total_batches == 0:
            raise input_error(None, f"task {task.name!r}: the training loader yielded no batch")
        train_loss = total_loss / total_batches
        if not math.isfinite(train_loss):
            raise input_error(
                None,
                f"training diverged: train loss is {train_loss} in epoch {epoch}; "
                "try a lower optim.lr or train.grad_clip",
            )
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        row.update({f"train_{k}": v / max(n_batches, 1) for k, v in sorted(figures.items())})
        row.update({f"val_{k}": v for k, v in self._evaluate(epoch).items()})
        row["lr"] = lr
        row["train_items"] = sum(per_rank)
        row["train_items_per_rank"] = per_rank
        if self.scheduler is not None:
            self.scheduler.step()
        row["seconds"] = round(time.perf_counter() - t0, 3)
        return row

    def _steps(self, epoch: int, epochs: int) -> tuple[torch.Tensor, int, dict[str, float]]:
        """One pass over the training loader: (loss sum, batches, sums of the task's figures)."""
        from tqdm import tqdm

        model, task, device = self.model, self.task, self.device
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        n_batches = 0
        figures: dict[str, float] = {}
        log_every = int(self.tc["log_every"])
        clip = float(self.tc["grad_clip"])
        after_step = getattr(task, "after_step", None)  # optional hook, e.g. a weight average
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {epoch}/{epochs}",
            disable=not self.show,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )
        for step, batch in enumerate(bar, 1):
            with self._autocast():
                loss, figs = task.loss(model, batch, device=device)
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise TypeError(f"task {task.name!r}: loss must return a scalar tensor")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            self.optimizer.step()
            if after_step is not None:
                after_step(unwrap(model))
            loss_sum += loss.detach().double()
            n_batches += 1
            for key, value in (figs or {}).items():
                if key != "loss":
                    figures[key] = figures.get(key, 0.0) + float(value)
            if self.show and log_every and step % log_every == 0:
                bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
        bar.close()
        return loss_sum, n_batches, figures

    def _seed_epoch(self, epoch: int) -> None:
        """Make the epoch's randomness a function of (seed, epoch, rank) alone.

        torch (hence dropout, the tasks' noise draws and, through ``torch.initial_seed``, the
        augmentation draws of :class:`~mitokit.models._common.WorkerDraws` in this process),
        numpy and python from ``(seed, epoch, rank)``; the loader's generator (the shuffling and
        the workers' seeds) from ``(seed, epoch)``. A resumed run thus draws in each epoch what
        an uninterrupted one draws, whatever state the previous epochs left behind.
        """
        _seed_all(_mix(_GLOBAL_STREAM, self.seed, epoch, self.ctx.rank))
        self.generator.manual_seed(_mix(_LOADER_STREAM, self.seed, epoch))

    def _evaluate(self, epoch: int) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        self.val_generator.manual_seed(_mix(self.seed, epoch, 1))  # reproducible val workers
        module = unwrap(self.model)
        module.eval()
        with torch.no_grad(), self._autocast():
            metrics = self.task.evaluate(module, self.val_loader, device=self.device)
        if not isinstance(metrics, Mapping) or "loss" not in metrics:
            raise TypeError(f"task {self.task.name!r}: evaluate must return a dict with 'loss'")
        keys = ["loss", *sorted(k for k in metrics if k != "loss")]
        values = self.ctx.broadcast_floats([float(metrics[k]) for k in keys])
        return dict(zip(keys, values, strict=True))

    def _select(self, row: dict[str, Any]) -> bool:
        """Update best/early-stopping counters with this epoch; True if it is the new best."""
        p = self.progress
        if self.val_loader is None:
            p.best_epoch, p.bad_epochs = row["epoch"], 0
            return True
        val = row["val_loss"]
        improved = math.isfinite(val) and (
            p.best_val_loss is None or val < p.best_val_loss - float(self.tc["min_delta"])
        )
        if improved:
            p.best_epoch, p.best_val_loss, p.bad_epochs = row["epoch"], val, 0
        else:
            p.bad_epochs += 1
        return improved

    def _checkpoint(self, improved: bool, row: dict[str, Any], *, full: bool = True) -> None:
        """Save best/ (when improved), last/ and state/ (when ``full``) and the logs.

        Without validation data every epoch "improves" and best/ is last/, so both wait for a
        ``full`` checkpoint; with it, best/ is saved at once (it would be lost otherwise).
        """
        snaps = _gather_rng(self.ctx, self.generator) if full else []
        if self.ctx.is_main:
            _save_checkpoint(
                unwrap(self.model),
                self.out_dir,
                kw=self._save_kw(row),
                best=improved and (full or self.val_loader is not None),
                full=full,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                progress=self.progress,
                rng=snaps,
                config=self.cfg,
            )
        self.ctx.barrier()

    def _save_kw(self, row: Mapping[str, Any]) -> dict[str, Any]:
        extra = {
            "epoch": row["epoch"],
            "val": _val_of(row),
            "train_loss": row["train_loss"],
            "data": self.cfg["data"],  # so prediction reuses crop, tile size, stride ...
        }
        return {"task": self.task.name, "model_cfg": self.cfg["model"], "extra": extra}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _info(self) -> dict[str, Any]:
        from mitokit import __version__

        return {
            "task": self.task.name,
            "data": json.loads(json.dumps(self.data.info, default=str)),
            "train_size": _size(self.data.train),
            "val_size": _size(self.data.val),
            "device": str(self.device),
            "world_size": self.ctx.world_size,
            "bf16_autocast": self.amp,
            "channels_last": self.channels_last,
            "mitokit": __version__,
            "torch": torch.__version__,
        }


def _optimizer(params: list[torch.nn.Parameter], oc: Mapping[str, Any]) -> torch.optim.Optimizer:
    if oc["name"] == "sgd":
        return torch.optim.SGD(
            params, lr=oc["lr"], momentum=oc["momentum"], weight_decay=oc["weight_decay"]
        )
    return torch.optim.Adam(
        params, lr=oc["lr"], betas=tuple(oc["betas"]), weight_decay=oc["weight_decay"]
    )


def _use_amp(choice: str, device: torch.device) -> bool:
    if choice == "off":
        return False
    if device.type != "cuda":
        if choice == "bf16":
            warnings.warn("train.amp bf16 applies on CUDA only; training in float32", stacklevel=3)
        return False
    supported = torch.cuda.is_bf16_supported()
    if choice == "bf16" and not supported:
        warnings.warn("this GPU has no bf16; training in float32", stacklevel=3)
    return supported
