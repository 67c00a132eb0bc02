"""The studies' small runtime and file helpers: threads, the study folder, JSON, CSV, scores.

Part of the experiments' harness (:mod:`mitokit.experiments.harness`, which re-exports them).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError, input_error

#: A progress callback (None: silent).
Say = Callable[[str], None] | None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` PyTorch intra-op threads (None: leave the setting alone)."""
    if n is None:
        yield
        return
    import torch

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MitokitError(f"threads must be a positive integer, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def study_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Create ``out_dir`` (new or empty); remove what the block wrote if it fails.

    The folder is filled in place rather than renamed into place, so that the paths the runs
    record (their configs name the data) stay valid; a failed study leaves nothing behind.
    """
    import shutil

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise input_error(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise input_error(out, "folder exists and is not empty; choose another output folder")
    existed = out.is_dir()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        if existed:
            for child in out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        else:
            shutil.rmtree(out, ignore_errors=True)
        raise


@contextlib.contextmanager
def figure(path: str | os.PathLike, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """A matplotlib figure and its axes (``plt.subplots(*args, **kwargs)``, Agg backend).

    When the block succeeds the figure is laid out and written to ``path`` atomically; it is
    closed in any case.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mitokit.io.atomic import atomic_path

    fig, axes = plt.subplots(*args, **kwargs)
    try:
        yield fig, axes
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)


def sha1(path: Path) -> str:
    """SHA-1 of a file's bytes (a fingerprint, not security)."""
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON (numpy numbers and paths converted), written atomically."""
    from mitokit.io.atomic import write_text_atomic
    from mitokit.io.json_values import json_default

    write_text_atomic(path, json.dumps(data, indent=2, default=json_default) + "\n")


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows of equal keys as CSV (the first row's keys are the header), written atomically."""
    from mitokit.io.atomic import write_text_atomic

    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def say(callback: Say, text: str) -> None:
    """Call ``callback`` with ``text`` unless it is None."""
    if callback is not None:
        callback(text)


def fmt(value: float | None) -> str:
    """A score to three decimals, ``n/a`` for None or NaN."""
    return "n/a" if value is None or value != value else f"{value:.3f}"


def auc_or_none(y: np.ndarray, s: np.ndarray) -> float | None:
    """ROC AUC of scores ``s`` against binary ``y``; None when ``y`` has one class only."""
    from mitokit.metrics.classification import roc_auc

    return roc_auc(y, s) if y.min() != y.max() else None


__all__ = [
    "Say",
    "auc_or_none",
    "figure",
    "fmt",
    "say",
    "sha1",
    "study_dir",
    "torch_threads",
    "write_csv",
    "write_json",
]
