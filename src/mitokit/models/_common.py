"""Helpers shared by the classifier and regressor tasks: config sections, flips, metrics."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from mitokit.errors import MitokitError


def merge_section(
    defaults: Mapping[str, Any], given: Mapping[str, Any] | None, *, section: str, task: str
) -> dict[str, Any]:
    """``given`` over ``defaults``; an unknown key is an error listing the valid ones."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise MitokitError(
            f"unknown {section} key(s) {', '.join(map(repr, unknown))} for task {task!r}; "
            f"valid keys: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **given}


def check_int(value: Any, name: str, *, minimum: int, allow_none: bool = False) -> int | None:
    """``value`` as an int >= ``minimum`` (or None where allowed); an error naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise MitokitError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(value: Any, name: str, *, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MitokitError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and low <= v <= high):
        raise MitokitError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return v


def draw_dihedral(rng: np.random.Generator) -> tuple[int, bool]:
    """One of the 8 symmetries of a square, drawn uniformly: ``(quarter turns, mirror)``."""
    k = int(rng.integers(0, 4))
    return k, bool(rng.random() < 0.5)


def apply_dihedral(image: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``k`` counter-clockwise quarter turns (``np.rot90``) of an ``HxWxC`` array, then a
    left-right mirror when ``flip``."""
    out = np.rot90(image, k) if k % 4 else image
    if flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def dihedral_boxes(
    boxes: np.ndarray, k: int, flip: bool, *, width: float, height: float
) -> np.ndarray:
    """Boxes ``[x1, y1, x2, y2]`` (pixel edges) moved as :func:`apply_dihedral` moves the pixels
    of a ``width x height`` image."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    w, h = float(width), float(height)
    for _ in range(k % 4):  # a quarter turn: (x, y) -> (y, w - x); the size becomes (h, w)
        x1, y1, x2, y2 = y1, w - x2, y2, w - x1
        w, h = h, w
    if flip:
        x1, x2 = w - x2, w - x1
    return np.stack([x1, y1, x2, y2], axis=1)


def random_dihedral(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random flip / 90-degree rotation of an ``HxWxC`` array (one of the 8 symmetries)."""
    return apply_dihedral(image, *draw_dihedral(rng))


def flip_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The four flips of a ``Bx3xHxW`` batch (none, horizontal, vertical, both) for TTA."""
    return [x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)]


def binary_metrics(
    y_true: np.ndarray, scores: np.ndarray, *, soft: np.ndarray | None = None, threshold: float
) -> dict[str, float]:
    """AUC, balanced accuracy, TPR and FPR at ``threshold``, and ECE of clipped scores.

    ``y_true`` are 0/1 labels; ``soft`` optional soft labels for the calibration error. AUC is
    NaN when one class is absent.
    """
    from mitokit.metrics.classification import (
        balanced_accuracy,
        expected_calibration_error,
        roc_auc,
        tpr_fpr,
    )

    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    if y.size == 0:
        return {"auc": math.nan, "balanced_accuracy": math.nan, "ece": math.nan}
    rates = tpr_fpr(y, s, threshold)
    both = y.min() != y.max()
    return {
        "auc": roc_auc(y, s) if both else math.nan,
        "balanced_accuracy": balanced_accuracy(y, (s >= threshold).astype(float)),
        "tpr": rates["tpr"],
        "fpr": rates["fpr"],
        "ece": expected_calibration_error(y if soft is None else soft, np.clip(s, 0.0, 1.0)),
    }


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside the block; the previous mode is restored after."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


class WorkerDraws:
    """A seeded numpy Generator whose stream follows the process's torch seed.

    DataLoader workers receive copies of the dataset, so a generator held by a transform would
    give every worker (and, as workers restart each epoch, every epoch) the same draws; and in
    the main process (``num_workers=0``) a generator seeded once would carry its position from
    epoch to epoch, a state no checkpoint holds, so a resumed run would draw otherwise. Call
    :meth:`get` before drawing: it reseeds the same generator object (so others holding it,
    e.g. a :class:`~mitokit.data.stain.HEDJitter`, follow) from ``(seed, torch seed)`` whenever
    that torch seed has changed since the last draw. The torch seed is, in a worker, torch's
    worker seed (derived from the loader's generator: distinct per worker and per epoch), and in
    the main process :func:`torch.initial_seed`, which the training engine sets from the run's
    seed and the epoch at the start of each epoch. Either way an epoch's draws are a function
    of the seeds and the epoch alone, and a resumed run makes the same ones.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self._key: tuple[int, int] | None = None

    def get(self) -> np.random.Generator:
        """The generator, reseeded first when the worker or the torch seed is new."""
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        key = (info.id, int(info.seed)) if info is not None else (-1, torch.initial_seed())
        if key != self._key:
            self._key = key
            fresh = np.random.default_rng([self.seed, key[1] % 2**63])
            self.rng.bit_generator.state = fresh.bit_generator.state
        return self.rng


def collect_outputs(
    model: torch.nn.Module, loader: Any, *, device: torch.device, label_key: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Raw outputs, targets and binary labels of a whole loader (None when it is empty)."""
    outs, targets, labels = [], [], []
    with evaluating(model):
        for batch in loader:
            outs.append(model(batch["image"].to(device)).float().cpu())
            targets.append(batch["target"].float().cpu())
            labels.append(batch[label_key].cpu())
    if not outs:
        return None
    return torch.cat(outs), torch.cat(targets), torch.cat(labels)


def scorer_figures(
    collected: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    *,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    scores_of: Callable[[torch.Tensor], torch.Tensor],
    soft: bool = False,
) -> dict[str, float]:
    """Mean loss, :func:`binary_metrics` at 0.5 and ``n`` of a one-output model's validation.

    ``collected`` is what :func:`collect_outputs` returns (NaN figures when None); ``loss_of``
    gives the loss of (outputs, targets), ``scores_of`` the scores of the outputs; with ``soft``
    the targets are the soft labels of the calibration error.
    """
    if collected is None:
        return {"loss": math.nan, "auc": math.nan, "balanced_accuracy": math.nan}
    z, t, y = collected
    scores = scores_of(z).numpy().astype(np.float64)
    figures = binary_metrics(y.numpy(), scores, soft=t.numpy() if soft else None, threshold=0.5)
    return {"loss": float(loss_of(z, t)), **figures, "n": int(len(y))}
