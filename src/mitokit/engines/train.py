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
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

from mitokit.engines import state as st
from mitokit.engines.config import load_config, save_resolved
from mitokit.engines.distributed import (
    DistContext,
    ShardedSampler,
    init_distributed,
    unwrap,
    wrap_model,
)
from mitokit.engines.task import Task, TaskData, get_task
from mitokit.errors import input_error
from mitokit.io.atomic import write_text_atomic

#: Settings that may differ between a run and its resumption (they do not change the result,
#: except ``num_workers`` for augmentations drawn in the workers and ``device`` for numerics).
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.patience",
    "train.min_delta",
    "train.num_workers",
    "train.log_every",
    "train.out",
    "train.device",
    "train.max_minutes",
    "train.save_every",
)


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

    device_type = _device_type(cfg["train"]["device"])
    ctx = init_distributed(device_type)
    run = None
    ok = False
    try:
        with _torch_flags(cfg["train"]["deterministic"], device_type == "cuda"):
            run = _Run(cfg, out_dir, ctx, device_type, loaded, progress)
            result = run.run()
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


class _Run:
    """One training run: the objects it builds and its epoch loop."""

    def __init__(
        self,
        cfg: dict[str, Any],
        out_dir: Path,
        ctx: DistContext,
        device_type: str,
        loaded: st.LoadedState | None,
        progress: bool,
    ) -> None:
        self.cfg = cfg
        self.tc = cfg["train"]
        self.out_dir = out_dir
        self.ctx = ctx
        self.show = progress and ctx.is_main
        self.device = (
            torch.device("cuda", ctx.local_rank if ctx.enabled else torch.cuda.current_device())
            if device_type == "cuda"
            else torch.device("cpu")
        )
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
        self.train_loader, self.epoch_sampler, self.counter = self._train_loader()
        self.val_loader = self._val_loader()

        self.progress = st.Progress()
        if loaded is not None:
            self._restore(model, loaded)
        self.model = wrap_model(model, ctx, self.device)

    # ----------------------------------------------------------------------------- building

    def _train_loader(self) -> tuple[Any, Any, _Counting]:
        data, ctx, bs = self.data, self.ctx, int(self.tc["batch_size"])
        common = self._loader_kwargs()
        if data.train_sampler is None:
            if data.batch_sampler:
                raise ValueError("TaskData.batch_sampler is set but train_sampler is None")
            if ctx.enabled:
                sampler: Any = DistributedSampler(
                    data.train,
                    num_replicas=ctx.world_size,
                    rank=ctx.rank,
                    shuffle=True,
                    seed=self.seed,
                )
            else:
                sampler = RandomSampler(data.train, generator=self.generator)
        else:
            sampler = data.train_sampler
            if ctx.enabled:
                sampler = ShardedSampler(sampler, num_replicas=ctx.world_size, rank=ctx.rank)
        counter = _Counting(sampler, batches=data.batch_sampler)
        if data.batch_sampler:
            loader = DataLoader(data.train, batch_sampler=counter, **common)
        else:
            # A last batch of one item cannot train batch normalisation: drop it (only then).
            loader = DataLoader(
                data.train,
                batch_size=bs,
                sampler=counter,
                drop_last=len(counter) % bs == 1 and len(counter) > 1,
                **common,
            )
        return self._on_device(loader), sampler, counter

    def _val_loader(self) -> Any:
        if self.data.val is None:
            return None
        self.val_generator = torch.Generator()
        loader = DataLoader(
            self.data.val,
            batch_size=int(self.tc["batch_size"]),
            shuffle=False,
            **self._loader_kwargs(generator=self.val_generator),
        )
        return self._on_device(loader)

    def _loader_kwargs(self, generator: torch.Generator | None = None) -> dict[str, Any]:
        return {
            "num_workers": int(self.tc["num_workers"]),
            "collate_fn": self.data.collate,
            "pin_memory": self.device.type == "cuda",
            "worker_init_fn": partial(_seed_worker, rank=self.ctx.rank),
            "generator": generator if generator is not None else self.generator,
        }

    def _on_device(self, loader: DataLoader) -> Any:
        if self.device.type == "cuda" or self.channels_last:
            return _DeviceLoader(loader, self.device, self.channels_last)
        return loader

    def _restore(self, model: torch.nn.Module, loaded: st.LoadedState) -> None:
        try:
            model.load_state_dict(loaded.model)
            st.load_optimizer(self.optimizer, loaded.optimizer_tensors, loaded.optimizer_meta)
            if self.scheduler is not None and loaded.scheduler is not None:
                self.scheduler.load_state_dict(loaded.scheduler)
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise input_error(self.out_dir / "state", f"does not fit this run: {first}") from None
        self.progress = loaded.progress
        # Every epoch reseeds its random streams (_seed_epoch), so the saved RNG states are not
        # needed to continue exactly; they are restored all the same where the ranks match.
        if len(loaded.rng) == self.ctx.world_size:
            st.restore_rng(loaded.rng[self.ctx.rank], self.generator)
        else:
            warnings.warn(
                f"the state was saved by {len(loaded.rng)} processes, this run has "
                f"{self.ctx.world_size}: the data and the random streams are split otherwise, "
                "so the result will differ from an uninterrupted run",
                stacklevel=2,
            )

    # ----------------------------------------------------------------------------- running

    def run(self) -> TrainResult:
        """The epoch loop; returns the result (on every rank)."""
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
            if budget > 0:  # would the next epoch, as long as this one, end past the budget?
                # rank 0's clock decides, so that every rank stops after the same epoch
                elapsed, last = self.ctx.broadcast_floats(
                    [time.perf_counter() - t_start, float(row["seconds"])]
                )
                out_of_time = epoch < epochs and elapsed + last > budget
            final = p.stopped_early or out_of_time or epoch >= epochs
            self._checkpoint(improved, row, full=final or epoch % save_every == 0)
            if self.show:
                _say(_summary(row, epochs, stopped=p.stopped_early))
                if out_of_time:
                    _say(
                        f"stopping after epoch {epoch}: the next would end past "
                        f"train.max_minutes={self.tc['max_minutes']:g}; --resume continues"
                    )
        return _result(p, out, out_of_time=out_of_time)

    def _epoch(self, epoch: int, epochs: int) -> dict[str, Any]:
        from tqdm import tqdm

        t0 = time.perf_counter()
        self._seed_epoch(epoch)
        if hasattr(self.epoch_sampler, "set_epoch"):
            self.epoch_sampler.set_epoch(epoch - 1)
        model, task, device = self.model, self.task, self.device
        model.train()
        lr = float(self.optimizer.param_groups[0]["lr"])
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        n_batches = 0
        figures: dict[str, float] = {}
        self.counter.count = 0
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
        from mitokit.models.io import save_model

        snaps: list[st.RngSnapshot] = []
        if full:  # every rank's RNG goes into the state (a collective: all ranks agree on full)
            snap = st.rng_snapshot(self.generator)
            if self.ctx.enabled:
                blobs = self.ctx.all_gather_bytes(st.pack_rng(snap))
                snaps = [st.unpack_rng(b) for b in blobs] if self.ctx.is_main else []
            else:
                snaps = [snap]
        if self.ctx.is_main:
            module, out = unwrap(self.model), self.out_dir
            kw = self._save_kw(row)
            if improved and (full or self.val_loader is not None):
                save_model(module, out / "best", **kw)
            if full:
                save_model(module, out / "last", **kw)
                st.save_state(
                    out / "state",
                    model=module,
                    optimizer=self.optimizer,
                    scheduler=self.scheduler,
                    progress=self.progress,
                    rng=snaps,
                    config=self.cfg,
                )
            _write_logs(out, self.progress.history)
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


# --------------------------------------------------------------------------------------------
# helpers


class _Counting(Sampler):
    """A sampler (or batch sampler) that counts the items it hands out this epoch."""

    def __init__(self, sampler: Any, *, batches: bool) -> None:
        self.sampler = sampler
        self.batches = batches
        self.count = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Any]:
        for item in self.sampler:
            self.count += len(item) if self.batches else 1
            yield item


class _DeviceLoader:
    """A DataLoader whose batches arrive on ``device`` (4D float tensors channels_last)."""

    def __init__(self, loader: DataLoader, device: torch.device, channels_last: bool) -> None:
        self.loader = loader
        self.device = device
        self.channels_last = channels_last

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # dataset, batch_size ... of the loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            yield _to_device(batch, self.device, self.channels_last)


def _to_device(obj: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.to(device, non_blocking=True)
        if channels_last and obj.ndim == 4 and obj.is_floating_point():
            obj = obj.contiguous(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device, channels_last) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_to_device(v, device, channels_last) for v in obj)
    return obj


def _check_data(task: Task, data: Any) -> TaskData:
    if not isinstance(data, TaskData):
        raise TypeError(f"task {task.name!r}: build_data must return TaskData")
    if data.info.get("error"):
        raise input_error(None, f"task {task.name!r}: {data.info['error']}")
    if _size(data.train) == 0:
        raise input_error(
            None, f"task {task.name!r}: the training set is empty; check the data section"
        )
    if data.val is not None and _size(data.val) == 0:
        warnings.warn(
            f"task {task.name!r}: the validation set is empty; the last epoch is kept",
            stacklevel=3,
        )
        data.val = None
    return data


def _size(dataset: Any) -> int | None:
    if dataset is None:
        return None
    try:
        return len(dataset)
    except TypeError:
        return None


def _optimizer(params: list[torch.nn.Parameter], oc: Mapping[str, Any]) -> torch.optim.Optimizer:
    if oc["name"] == "sgd":
        return torch.optim.SGD(
            params, lr=oc["lr"], momentum=oc["momentum"], weight_decay=oc["weight_decay"]
        )
    return torch.optim.Adam(
        params, lr=oc["lr"], betas=tuple(oc["betas"]), weight_decay=oc["weight_decay"]
    )


def _device_type(choice: str) -> str:
    if choice == "cuda" and not torch.cuda.is_available():
        raise input_error(None, "train.device is cuda but no CUDA device is available")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


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


@contextlib.contextmanager
def _torch_flags(deterministic: bool, cuda: bool) -> Iterator[None]:
    """Deterministic algorithms (or cudnn benchmark) for the run; the old flags afterwards."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if deterministic:
        if cuda:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = cuda
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2:]


#: What a run writes atomically into its folder (see _remove_stale_temporaries).
_RUN_FILES = ("state", "log.json", "log.csv", "info.json", "config.resolved.json")

#: Leading tags of the per-epoch seeds (:meth:`_Run._seed_epoch`), so that the global and the
#: loader streams never share a seed (numpy's SeedSequence ignores trailing zeros).
_GLOBAL_STREAM, _LOADER_STREAM = 0x676C6F62, 0x6C6F6164


def _mix(*values: int) -> int:
    """A 63-bit seed derived from several non-negative integers (e.g. seed and rank)."""
    hi, lo = np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint32)
    return (int(hi) << 31) ^ int(lo)


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the legacy global RNG on purpose
    random.seed(seed)


def _seed_worker(worker_id: int, rank: int = 0) -> None:
    """DataLoader worker init: numpy and python RNGs from torch's worker seed, mixed with rank."""
    seed = _mix(torch.initial_seed(), rank)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the legacy global RNG on purpose
    random.seed(seed)


def _check_resumable(saved: Mapping[str, Any], cfg: Mapping[str, Any], out_dir: Path) -> None:
    a, b = _flat(saved), _flat(json.loads(json.dumps(cfg)))
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    changed = [k for k in changed if k not in RESUMABLE_CHANGES]
    if changed:
        diffs = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in changed[:5])
        raise input_error(
            out_dir,
            f"the config differs from the run being resumed in {diffs}; only "
            f"{', '.join(RESUMABLE_CHANGES)} may change",
        )


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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


def _val_of(row: Mapping[str, Any]) -> dict[str, float]:
    return {k[4:]: v for k, v in row.items() if k.startswith("val_")}


def _remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove what runs killed while writing left in the run folder: temporaries of its own
    outputs only (state/ is as large as the model and its optimizer), none still being written.
    """
    from mitokit.io.atomic import remove_stale_temporaries
    from mitokit.models.io import CONFIG, WEIGHTS

    places = [
        (out, _RUN_FILES),
        (out / "best", (WEIGHTS, CONFIG)),
        (out / "last", (WEIGHTS, CONFIG)),
    ]
    return [
        path
        for folder, names in places
        for name in names
        for path in remove_stale_temporaries(folder, name=name)
    ]


def _write_logs(out: Path, history: list[dict[str, Any]]) -> None:
    write_text_atomic(out / "log.json", json.dumps(history, indent=1) + "\n")
    columns: list[str] = []
    for row in history:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    write_text_atomic(out / "log.csv", buf.getvalue())


def _summary(row: Mapping[str, Any], epochs: int, *, stopped: bool) -> str:
    parts = [f"epoch {row['epoch']}/{epochs}", f"train_loss {row['train_loss']:.4g}"]
    if "val_loss" in row:
        parts.append(f"val_loss {row['val_loss']:.4g}")
    parts.append(f"lr {row['lr']:.3g}")
    if row.get("best"):
        parts.append("(best)")
    if stopped:
        parts.append("- early stop")
    return "  ".join(parts)


def _say(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


__all__ = ["RESUMABLE_CHANGES", "TrainResult", "train"]
