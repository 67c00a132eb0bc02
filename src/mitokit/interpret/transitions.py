"""Transitions: the same cell generated along a range of conditions, from negative to positive.

A transition set is one starting noise (and, for the stochastic samplers, one sequence of
per-step noise) denoised once per condition ``c`` of a grid (0, 0.1, ..., 1): the images of a set
differ only by the condition, so the set shows how the model changes a cell as its score rises.
Many sets run at once, sets x conditions in one batch (:func:`generate_transitions`). A patch
classifier ensemble then scores every image (:func:`score_transitions`); the score-vs-condition
curve, the good sets (:func:`~mitokit.interpret.selection.good_sets`) and the figures are written
by :func:`write_transitions`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mitokit.errors import MitokitError
from mitokit.interpret import sampling as smp
from mitokit.interpret.selection import condition_trend, curve_stats, good_set_criteria


@dataclass
class Transitions:
    """Generated transition sets.

    Attributes:
        images: ``(n_sets, n_conditions, S, S, 3)`` uint8.
        conditions: ``(n_conditions,)`` the conditions, in column order.
        set_ids: ``(n_sets,)`` the sets' noise keys (set ``j`` is the same images whenever it
            is generated with the same seed, model and sampler).
        scheduler: Sampler name.
        steps: Sampler steps.
        guidance: Classifier-free guidance scale.
        seed: The seed.
        nfe: Network evaluations per image (steps, doubled under guidance).
        seconds: Wall time of the generation.
    """

    images: np.ndarray
    conditions: np.ndarray
    set_ids: np.ndarray
    scheduler: str
    steps: int
    guidance: float
    seed: int
    nfe: int
    seconds: float

    @property
    def n_sets(self) -> int:
        """Number of sets."""
        return int(self.images.shape[0])


def check_conditions(conditions: Sequence[float]) -> np.ndarray:
    """Conditions as a float array, each in [0, 1]."""
    c = np.asarray(conditions, dtype=np.float64).reshape(-1)
    if c.size == 0:
        raise MitokitError("no conditions given")
    if not np.all(np.isfinite(c)) or c.min() < 0 or c.max() > 1:
        raise MitokitError(f"conditions must lie in [0, 1], got {c.tolist()}")
    return c


def generate_transitions(
    model: Any,
    n_sets: int,
    conditions: Sequence[float],
    *,
    scheduler: str = "ddpm",
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    first_set: int = 0,
    precision: str = "fp32",
    compile_net: bool = False,
    progress: bool = False,
) -> Transitions:
    """Generate ``n_sets`` transition sets over ``conditions``.

    Set ``j`` (``first_set <= j < first_set + n_sets``) starts from noise seeded by
    ``(seed, j)`` and, with ``ddpm``, draws its per-step noise from seeds of ``(seed, j)`` too
    (:func:`~mitokit.interpret.sampling.noise_table`); every condition of the set gets the same
    noise, so two equal conditions give equal images, and the result does not depend on
    ``batch_size`` (up to floating-point rounding: CPU kernels may round differently for other
    batch sizes, a +-1 grey level here and there; the same call gives the same bytes).

    Args:
        model: A :class:`~mitokit.models.diffusion.DiffusionModel` (its sampling weights, the
            moving average, are used).
        n_sets: Number of sets.
        conditions: Conditions in [0, 1], one image per set each.
        scheduler: ``ddpm`` (stochastic; default steps T), ``ddim`` (deterministic, eta 0;
            default 50), ``dpm-solver`` (DPM-Solver++ 2M; default 25) or ``dpm-solver-sde``
            (SDE-DPM-Solver++ 2M, stochastic; default 50).
        steps: Sampler steps (stride ``T // steps``, from ``T - 1``).
        guidance: Classifier-free guidance scale; None: the model's setting (1 = none).
        seed: Seed of all noise.
        batch_size: Images per network call (sets per batch: ``batch_size // n_conditions``,
            at least one); guidance doubles the network batch.
        device: ``cpu``, ``cuda`` or ``auto``.
        first_set: Key of the first set (to continue or shard a generation).
        precision: ``fp32`` or ``bf16`` (the network under bf16 autocast; CUDA only).
        compile_net: Run the network through :func:`torch.compile` (see
            :func:`~mitokit.interpret.sampling.compiled`).
        progress: Show a progress bar on stderr.

    Returns:
        The :class:`Transitions`.
    """
    from tqdm import tqdm

    from mitokit.models.diffusion import from_model_scale

    if isinstance(n_sets, bool) or not isinstance(n_sets, (int, np.integer)) or n_sets < 1:
        raise MitokitError(f"n_sets must be a positive integer, got {n_sets!r}")
    cond = check_conditions(conditions)
    name = smp.sampler_name(scheduler)
    T = model.num_train_timesteps
    steps = smp.resolve_steps(name, steps, T)
    g = smp.resolve_guidance(model, guidance)
    dev = smp.resolve_device(device)
    model = model.to(dev).eval()
    net = smp.compiled(smp.with_precision(model.sampling_net(), precision, dev), compile_net)
    timesteps = smp.timestep_sequence(T - 1, steps, T)
    size = model.sample_size
    k = len(cond)
    per_batch = max(1, int(batch_size) // k)
    set_ids = np.arange(int(first_set), int(first_set) + int(n_sets))
    images = np.empty((int(n_sets), k, size, size, 3), dtype=np.uint8)
    sched = smp.make_scheduler(model, name)
    n_batches = math.ceil(n_sets / per_batch)
    t0 = time.perf_counter()
    with tqdm(
        total=n_batches * len(timesteps),
        desc=f"transitions ({name}, {len(timesteps)} steps)",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        for start in range(0, int(n_sets), per_batch):
            ids = set_ids[start : start + per_batch]
            table = np.repeat(smp.noise_table(seed, ids, T), k, axis=0)
            x = smp.start_noise(table, (3, size, size)).to(dev) * sched.init_noise_sigma
            c = torch.as_tensor(np.tile(cond, len(ids)), dtype=torch.float32, device=dev)
            out = smp.denoise(
                net,
                x,
                c,
                scheduler=sched,
                kind=name,
                steps=steps,
                timesteps=timesteps,
                guidance=g,
                noise=table,
                on_step=bar.update,
            )
            images[start : start + len(ids)] = from_model_scale(out).reshape(
                len(ids), k, size, size, 3
            )
    seconds = time.perf_counter() - t0
    nfe = len(timesteps) * (2 if g != 1.0 else 1)
    return Transitions(
        images=images,
        conditions=cond,
        set_ids=set_ids,
        scheduler=name,
        steps=steps,
        guidance=g,
        seed=int(seed),
        nfe=nfe,
        seconds=seconds,
    )


def score_images(
    classifier: torch.nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 64,
    tta: bool = False,
    crop: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Classifier scores of ``(..., S, S, 3)`` uint8 images, in the images' leading shape.

    ``crop``: the classifier's training centre crop, applied when the images are larger.
    """
    from mitokit.models.classifier import predict_images

    arr = np.asarray(images)
    flat = arr.reshape(-1, *arr.shape[-3:])
    use_crop = crop if crop is not None and crop < min(arr.shape[-3:-1]) else None
    scores = predict_images(
        classifier,
        list(flat),
        batch_size=batch_size,
        tta=tta,
        crop=use_crop,
        device=smp.resolve_device(device),
    )
    return scores.reshape(arr.shape[:-3])


def score_transitions(
    transitions: Transitions,
    classifier: torch.nn.Module,
    *,
    batch_size: int = 64,
    tta: bool = False,
    crop: int | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``(n_sets, n_conditions)`` scores of the generated images by a classifier (ensemble)."""
    return score_images(
        classifier, transitions.images, batch_size=batch_size, tta=tta, crop=crop, device=device
    )


def _fmt(c: float) -> str:
    return f"{c:.3f}".rstrip("0").rstrip(".") if c else "0"


def write_transitions(
    out: str | os.PathLike,
    transitions: Transitions,
    *,
    scores: np.ndarray | None = None,
    first_below: float = 0.1,
    last_above: float = 0.9,
    max_step: float = 0.3,
    sets_per_grid: int = 16,
    max_selected: int = 32,
    meta: dict[str, Any] | None = None,
    figure_workers: int | None = None,
) -> dict[str, Any]:
    """Write generated sets (and their scores) into the folder ``out``.

    Files::

        images/set000000_k00.png   one PNG per image (k: the condition's column)
        scores.csv                 set, k, condition, image[, score]
        grids/sets_000000.png      rows = sets, columns = conditions, scores printed
        curve.png                  score vs condition: mean ± SE, median (with scores)
        selected.png               the good sets (with scores)
        summary.json               settings, timing, curve, trend (does the condition move
                                   the score, set by set), good sets and their yield

    The folder should be a fresh one (the CLI writes into a temporary folder renamed at the
    end, :func:`mitokit.io.atomic.atomic_dir`). ``figure_workers``: processes drawing the grids
    (None: :func:`~mitokit.interpret.figures.figure_workers` decides; 0: here).

    Returns:
        The summary (as written to ``summary.json``).
    """
    from PIL import Image

    from mitokit.interpret.figures import curve_figure, grid_figure, write_grid_figures

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    tr = transitions
    cond = tr.conditions
    col_labels = [f"c={_fmt(c)}" for c in cond]
    rows: list[dict[str, Any]] = []
    for i, j in enumerate(tr.set_ids):
        for k, c in enumerate(cond):
            name = f"images/set{int(j):06d}_k{k:02d}.png"
            Image.fromarray(tr.images[i, k]).save(out / name)
            row = {"set": int(j), "k": k, "condition": float(c), "image": name}
            if scores is not None:
                row["score"] = float(scores[i, k])
            rows.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    (out / "scores.csv").write_text(buf.getvalue(), encoding="utf-8")

    good = passes = None
    if scores is not None and len(cond) >= 2:
        passes = good_set_criteria(
            scores, first_below=first_below, last_above=last_above, max_step=max_step
        )
        good = passes["all"]
    per = max(1, int(sets_per_grid))
    grids = []
    for start in range(0, tr.n_sets, per):
        sl = slice(start, start + per)
        kwargs = {
            "images": tr.images[sl],
            "col_labels": col_labels,
            "row_labels": [f"set {int(j)}" for j in tr.set_ids[sl]],
            "scores": None if scores is None else scores[sl],
            "highlight": None if good is None else good[sl],
        }
        grids.append((out / "grids" / f"sets_{int(tr.set_ids[start]):06d}.png", kwargs))
    write_grid_figures(grids, workers=figure_workers)
    summary: dict[str, Any] = {
        **(meta or {}),
        "n_sets": tr.n_sets,
        "conditions": [round(float(c), 10) for c in cond],
        "scheduler": tr.scheduler,
        "steps": tr.steps,
        "guidance": tr.guidance,
        "seed": tr.seed,
        "first_set": int(tr.set_ids[0]),
        "network_evaluations_per_image": tr.nfe,
        "seconds": round(tr.seconds, 3),
        "sets_per_second": round(tr.n_sets / tr.seconds, 4) if tr.seconds > 0 else None,
        "scored": scores is not None,
    }
    if scores is not None:
        stats = curve_stats(scores)
        curve_figure(cond, stats, out / "curve.png", n_sets=tr.n_sets)
        summary["curve"] = {
            "mean": _floats(stats["mean"]),
            "median": _floats(stats["median"]),
            "se": _floats(stats["se"]),
        }
        summary["trend"] = condition_trend(scores, cond)
    if good is not None:
        picked = np.flatnonzero(good)
        summary["selection"] = {
            "first_below": first_below,
            "last_above": last_above,
            "max_step": max_step,
            # sets passing each rule on its own, the first two together, and all three
            "passing": {
                **{k: int(v.sum()) for k, v in passes.items()},
                "first_and_last": int((passes["first_below"] & passes["last_above"]).sum()),
            },
        }
        summary["good_sets"] = [int(tr.set_ids[i]) for i in picked]
        summary["n_good_sets"] = int(len(picked))
        summary["good_set_yield"] = float(len(picked) / tr.n_sets)
        if len(picked):
            shown = picked[: max(1, int(max_selected))]
            grid_figure(
                tr.images[shown],
                out / "selected.png",
                col_labels=col_labels,
                row_labels=[f"set {int(tr.set_ids[i])}" for i in shown],
                scores=scores[shown],
                title=f"{len(picked)} good sets of {tr.n_sets}"
                + (f" (first {len(shown)} shown)" if len(shown) < len(picked) else ""),
            )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _floats(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]


__all__ = [
    "Transitions",
    "check_conditions",
    "generate_transitions",
    "score_images",
    "score_transitions",
    "write_transitions",
]
