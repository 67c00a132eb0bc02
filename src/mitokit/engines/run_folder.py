"""A training run's folder (:mod:`mitokit.engines.train`): checkpoints, logs, resuming it.

What the engine saves after an epoch (``best/``, ``last/``, ``state/``, ``log.json``,
``log.csv``), how a saved state is put back into a resumed run, what it clears that an
interrupted run left half-written, which settings a resumed run may change, and the one line
per epoch it prints.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mitokit.engines import state as st
from mitokit.engines.distributed import DistContext
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

#: What a run writes atomically into its folder (see _remove_stale_temporaries).
_RUN_FILES = ("state", "log.json", "log.csv", "info.json", "config.resolved.json")


def _restore(
    loaded: st.LoadedState,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    ctx: DistContext,
    folder: Path,
) -> st.Progress:
    """Put a saved state into a resumed run's model, optimizer and scheduler; its progress."""
    try:
        model.load_state_dict(loaded.model)
        st.load_optimizer(optimizer, loaded.optimizer_tensors, loaded.optimizer_meta)
        if scheduler is not None and loaded.scheduler is not None:
            scheduler.load_state_dict(loaded.scheduler)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise input_error(folder, f"does not fit this run: {first}") from None
    # Every epoch reseeds its random streams (_seed_epoch), so the saved RNG states are not
    # needed to continue exactly; they are restored all the same where the ranks match.
    if len(loaded.rng) == ctx.world_size:
        st.restore_rng(loaded.rng[ctx.rank], generator)
    else:
        warnings.warn(
            f"the state was saved by {len(loaded.rng)} processes, this run has "
            f"{ctx.world_size}: the data and the random streams are split otherwise, "
            "so the result will differ from an uninterrupted run",
            stacklevel=2,
        )
    return loaded.progress


def _gather_rng(ctx: DistContext, generator: torch.Generator) -> list[st.RngSnapshot]:
    """Every rank's RNG states on rank 0 (empty elsewhere); a collective, run on all ranks."""
    snap = st.rng_snapshot(generator)
    if ctx.enabled:
        blobs = ctx.all_gather_bytes(st.pack_rng(snap))
        return [st.unpack_rng(b) for b in blobs] if ctx.is_main else []
    return [snap]


def _save_checkpoint(
    module: torch.nn.Module,
    out: Path,
    *,
    kw: dict[str, Any],
    best: bool,
    full: bool,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: st.Progress,
    rng: list[st.RngSnapshot],
    config: Mapping[str, Any],
) -> None:
    """Save best/ (when ``best``), last/ and state/ (when ``full``) and the logs (rank 0)."""
    from mitokit.models.checkpoint import save_model

    if best:
        save_model(module, out / "best", **kw)
    if full:
        save_model(module, out / "last", **kw)
        st.save_state(
            out / "state",
            model=module,
            optimizer=optimizer,
            scheduler=scheduler,
            progress=progress,
            rng=rng,
            config=config,
        )
    _write_logs(out, progress.history)


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


def _val_of(row: Mapping[str, Any]) -> dict[str, float]:
    return {k[4:]: v for k, v in row.items() if k.startswith("val_")}


def _remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove what runs killed while writing left in the run folder: temporaries of its own
    outputs only (state/ is as large as the model and its optimizer), none still being written.
    """
    from mitokit.io.atomic import remove_stale_temporaries
    from mitokit.models.checkpoint import CONFIG, WEIGHTS

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


__all__ = ["RESUMABLE_CHANGES"]
