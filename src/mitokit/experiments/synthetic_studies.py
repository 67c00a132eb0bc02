"""Two of the source papers' comparisons, re-run on generated data whose truth is known.

:func:`reg_vs_regns` (third paper, Tables 4-7): does regressing the crowd tile score with
negative sampling (Reg-NS) give a lower false-positive rate than regressing it on positive tiles
only (Reg) at the same true-positive rate? Tile classification (BC) runs beside them.

:func:`soft_vs_majority` (first paper): does a patch classifier trained on the pathologists'
mean vote (soft labels) have a lower calibration error than one trained on their majority vote?

Each study generates its data (training set and a held-out test set from a different seed),
trains every model through :func:`mitokit.engines.train`, predicts on the held-out images only,
and returns a JSON-friendly dict; ``out_dir`` receives the data, the runs, ``result.json``, the
tables as CSV and the figures. Nothing is tuned towards an expected answer: the settings are the
arguments, recorded in the result.

Speed: the defaults are a small but meaningful run (a few minutes each on one CPU core);
:data:`REG_QUICK` and :data:`SOFT_QUICK` are the ``--quick`` settings (under two minutes each;
``mitokit demo --quick`` runs :data:`REG_QUICK`, the full demo the defaults); ``scale``
multiplies the amount of generated data for bigger runs. On a machine whose cores are already
busy, PyTorch's default of one thread per core can slow training down many times over; pass
``threads=1`` there.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError, input_error

#: Offset between a study's seed and the seed of its held-out test data.
HELDOUT_SEED_OFFSET = 1_000_003

#: The third paper's thresholds (Tables 4-7).
THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))

#: Fixed sensitivities at which the tile methods' false-positive rates are compared.
FIXED_TPRS = (0.8, 0.9)

#: Settings of :func:`reg_vs_regns` for ``--quick`` and ``mitokit demo --quick``.
REG_QUICK: dict[str, Any] = {
    "n_train_tiles": 6,
    "n_test_tiles": 3,
    "ratios": (0, 1, 4),
    "epochs": 6,
}

#: Settings of :func:`soft_vs_majority` for ``--quick``.
SOFT_QUICK: dict[str, Any] = {"n_patches": 400, "n_test_patches": 300, "epochs": 2}

Say = Callable[[str], None] | None


# --------------------------------------------------------------------------------------------
# Shared helpers


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
def _study_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
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


def _scaled(n: int, scale: float, name: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise MitokitError(f"{name} must be an integer >= {minimum}, got {n!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise MitokitError(f"scale must be a positive number, got {scale!r}")
    return max(minimum, round(int(n) * float(scale)))


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise MitokitError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise MitokitError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()


def _write_json(path: Path, data: Any) -> None:
    from mitokit.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, default=_plain) + "\n")


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    from mitokit.io.atomic import write_text_atomic

    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _params(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else obj


def _say(say: Say, text: str) -> None:
    if say is not None:
        say(text)


def _train_run(cfg: Mapping[str, Any], out: Path) -> tuple[Any, float]:
    from mitokit.engines import train

    t0 = time.perf_counter()
    result = train(cfg, out=out, progress=False)
    return result, time.perf_counter() - t0


def prune_run(run_dir: str | os.PathLike, *, keep_best: bool = True) -> None:
    """Delete the weights a finished run no longer needs: ``state/``, ``last/`` (and ``best/``).

    A ResNet-18 run folder holds the weights four times over (best, last, and the resumable
    state with Adam's two moments), about 225 MB; its logs and configs stay.
    """
    import shutil

    run = Path(run_dir)
    for name in ("state", "last") if keep_best else ("state", "last", "best"):
        shutil.rmtree(run / name, ignore_errors=True)


def _engine_settings(
    *, epochs: int, batch_size: int, seed: int, device: str, lr: float
) -> dict[str, Any]:
    return {
        "optim": {"name": "adam", "lr": float(lr), "weight_decay": 1e-4},
        "train": {
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "device": device,
            "num_workers": 0,
            "log_every": 0,
        },
    }


# --------------------------------------------------------------------------------------------
# Reg vs Reg-NS vs BC on tiles


def method_name(task: str, ratio: int) -> str:
    """Display name of a tile method: ``Reg``, ``Reg-NS<ratio>`` or ``BC``."""
    if task == "tile_classifier":
        return "BC"
    return "Reg" if ratio == 0 else f"Reg-NS{ratio}"


def _write_tiles(out: Path, *, n: int, seed: int, size: int, scene: Any) -> dict[str, Any]:
    from mitokit.data.synthetic.export import write_tile_dataset
    from mitokit.data.synthetic.generate import generate_tiles

    tiles = ((t.image, t.cells) for t in generate_tiles(n, seed=seed, size=size, params=scene))
    return write_tile_dataset(out, tiles, seed=seed, parameters={"size": size, "scene": scene})


def _write_split(
    root: Path, *, n_train: int, n_test: int, seed: int, test_seed: int, size: int, scene: Any
) -> tuple[Path, Path, dict[str, Any], list[str]]:
    """Generated training and held-out test tiles under ``root/data/{train,test}``.

    Returns:
        ``(train_dir, test_dir, test_manifest, test_names)``: the test images' file names sorted.
    """
    train_dir, test_dir = root / "data" / "train", root / "data" / "test"
    _write_tiles(train_dir, n=n_train, seed=seed, size=size, scene=scene)
    manifest = _write_tiles(test_dir, n=n_test, seed=test_seed, size=size, scene=scene)
    names = sorted(p.name for p in (test_dir / "images").glob("*.png"))
    return train_dir, test_dir, manifest, names


def _latent_labels(
    objects: Sequence[Mapping[str, Any]], images: Sequence[str], boxes: np.ndarray
) -> np.ndarray:
    """1 where a cell with ``m > 0.5`` has its centre inside the sub-tile."""
    centres: dict[str, list[tuple[float, float]]] = {}
    for o in objects:
        if float(o["m"]) > 0.5:
            centres.setdefault(str(o["image"]), []).append((float(o["x"]), float(o["y"])))
    out = np.zeros(len(images), dtype=np.int64)
    for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
        pts = np.asarray(centres.get(image, []), dtype=np.float64).reshape(-1, 2)
        inside = (
            (pts[:, 0] >= box[0])
            & (pts[:, 0] < box[2])
            & (pts[:, 1] >= box[1])
            & (pts[:, 1] < box[3])
        )
        out[i] = int(inside.any())
    return out


def _predict_test_tiles(
    model_dir: Path,
    test_dir: Path,
    image_names: Sequence[str],
    *,
    sub_tile: int,
    stride: int,
    device: str,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    from mitokit.models.classifier import TILE_TASKS, predict_tiles
    from mitokit.models.io import load_model

    model, _ = load_model(model_dir, expect_task=TILE_TASKS, map_location=device, fold_bn=True)
    images: list[str] = []
    boxes: list[list[int]] = []
    scores: list[float] = []
    for name in image_names:
        rows = predict_tiles(
            model,
            test_dir / "images" / name,
            tile_size=sub_tile,
            stride=stride,
            batch_size=64,
            device=device,
        )
        for r in rows:
            images.append(name)
            boxes.append([r["x1"], r["y1"], r["x2"], r["y2"]])
            scores.append(r["score"])
    return images, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores)


def _fpr_at(y: np.ndarray, s: np.ndarray, tpr: float) -> float | None:
    from mitokit.metrics.classification import fpr_at_tpr

    if y.min() == y.max():
        return None
    return fpr_at_tpr(y, s, tpr)


def reg_vs_regns(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    n_train_tiles: int = 12,
    n_test_tiles: int = 6,
    tile_size: int = 1000,
    ratios: Sequence[int] = (0, 1, 2, 4, 10),
    include_bc: bool = True,
    epochs: int = 4,
    input_size: int = 64,
    sub_tile: int = 250,
    stride: int = 125,
    batch_size: int = 16,
    lr: float = 1e-3,
    epoch_length: int | None = None,
    scale: float = 1.0,
    scene: Any = None,
    device: str = "auto",
    threads: int | None = None,
    figures: bool = True,
    keep_models: bool = False,
    say: Say = None,
) -> dict[str, Any]:
    """Reg (``negative_ratio`` 0) vs Reg-NS (ratios > 0) vs BC on synthetic crowd-labelled tiles.

    Training tiles (seed ``seed``) and held-out test tiles (seed ``seed +``
    :data:`HELDOUT_SEED_OFFSET`) are written with every label kind under ``out_dir/data/train``
    and ``out_dir/data/test``. Each method is a ResNet-18 trained through the engine on
    ``sub_tile``-pixel sub-tiles (stride ``stride``) resampled to ``input_size`` inside the
    model, with the crowd boxes and their agreement as labels (``crowd.json``), the same seed
    and no validation split (the last epoch is kept). Each epoch draws ``events x (1 + ratio)``
    tiles (the task's default; ``epoch_length`` fixes it for every method instead).

    The models score every sub-tile of the test images. The truth of a sub-tile is the third
    paper's: ``s_t > 0`` with ``s_t = sum_i r_i a_i`` over the test set's crowd boxes. A second
    truth, a cell with latent ``m > 0.5`` centred in the sub-tile, gives ``auc_latent``.

    Reported per method: AUC; TPR, FPR, precision and balanced accuracy at the thresholds 0.1
    ... 0.9 (``rows``; Reg's scores are tile-score estimates, BC's probabilities); ECE of the
    clipped scores; and the FPR at equal TPR (:func:`~mitokit.metrics.classification.fpr_at_tpr`,
    linear interpolation on the ROC curve) at two kinds of reference: the TPR Reg reaches at
    threshold 0.5 (``"reg@0.5"``), and the fixed TPRs in :data:`FIXED_TPRS`.

    Args:
        out_dir: Folder for data, runs, ``result.json``, ``sweep.csv`` and ``figures/roc.png``;
            created, and must be empty if it exists.
        seed: Seed of the data, the model initialisation and the tile draws.
        n_train_tiles: Training images (before ``scale``).
        n_test_tiles: Held-out test images (before ``scale``).
        tile_size: Side of each generated image in pixels.
        ratios: Negative ratios of the regressor: 0 is Reg, every other value a Reg-NS run.
        include_bc: Also train BC (the tile classifier, ratio 1).
        epochs: Training epochs of every method.
        input_size: Side the sub-tiles are resampled to inside the model.
        sub_tile: Sub-tile side in pixels (250 in the paper).
        stride: Sub-tile stride in pixels.
        batch_size: Tiles per step.
        lr: Adam learning rate (random initial weights).
        epoch_length: Draws per epoch for every method; None for the task default.
        scale: Multiplies the numbers of training and test images.
        scene: :class:`~mitokit.data.synthetic.scene.SceneParams` of the generated tiles (e.g.
            a lower ``mitotic_fraction``); None for the generator's defaults.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: PyTorch CPU threads during the study (None: unchanged).
        figures: Write the ROC figure.
        keep_models: Keep each run's ``best/`` model (about 45 MB each); otherwise only its
            logs and configs stay.
        say: Progress messages.

    Returns:
        ``{"study", "question", "settings", "data", "split", "methods", "equal_tpr",
        "answer", "table", "figures", "seconds"}``; ``methods[name]`` holds ``task``,
        ``negative_ratio``, ``auc``, ``auc_latent``, ``balanced_accuracy``, ``tpr``, ``fpr``
        (at 0.5), ``ece``, ``rows`` (one per threshold), ``fpr_at_tpr`` and training facts.

    Raises:
        MitokitError: Bad settings, or a non-empty ``out_dir``.
    """
    from mitokit.io.annotations import read_annotations
    from mitokit.models.tile_eval import TilePredictions, evaluate_tile_scores, truth_tile_scores

    t_start = time.perf_counter()
    ratio_list = sorted({int(r) for r in ratios})
    if not ratio_list or any(r < 0 for r in ratio_list):
        raise MitokitError(f"ratios must be non-negative integers, got {list(ratios)!r}")
    if 0 not in ratio_list:
        raise MitokitError("ratios must include 0 (Reg), the reference of the comparison")
    n_train = _scaled(n_train_tiles, scale, "n_train_tiles")
    n_test = _scaled(n_test_tiles, scale, "n_test_tiles")
    epochs = _positive_int(epochs, "epochs")
    if tile_size < sub_tile:
        raise MitokitError(f"tile_size {tile_size} is smaller than the sub-tile {sub_tile}")
    dev = _device(device)
    test_seed = int(seed) + HELDOUT_SEED_OFFSET
    settings = {
        "seed": int(seed),
        "test_seed": test_seed,
        "n_train_tiles": n_train,
        "n_test_tiles": n_test,
        "tile_size": int(tile_size),
        "ratios": ratio_list,
        "include_bc": bool(include_bc),
        "epochs": epochs,
        "arch": "resnet18",
        "input_size": int(input_size),
        "sub_tile": int(sub_tile),
        "stride": int(stride),
        "batch_size": int(batch_size),
        "optimizer": f"adam lr {lr:g}, weight decay 1e-4, random init",
        "epoch_length": epoch_length if epoch_length is not None else "events x (1 + ratio)",
        "augment": "HED jitter, flips, 90-degree rotations",
        "validation": "none (last epoch kept)",
        "labels": "crowd boxes with agreement (crowd.json)",
        "truth": "s_t > 0 from the test set's crowd boxes and agreements",
        "equal_tpr": (
            "fpr_at_tpr (linear interpolation on the ROC curve) at the TPR Reg reaches at "
            f"threshold 0.5, and at the fixed TPRs {list(FIXED_TPRS)}"
        ),
        "scene": "generator defaults" if scene is None else _params(scene),
        "device": dev,
        "threads": threads,
    }

    with _study_dir(out_dir) as out, torch_threads(threads):
        _say(say, f"reg-vs-regns: generating {n_train} training and {n_test} test tiles")
        train_dir, test_dir, test_manifest, test_names = _write_split(
            out,
            n_train=n_train,
            n_test=n_test,
            seed=int(seed),
            test_seed=test_seed,
            size=int(tile_size),
            scene=scene,
        )
        truth = read_annotations(test_dir / "crowd.json")

        runs = [("tile_regressor", r) for r in ratio_list]
        if include_bc:
            runs.append(("tile_classifier", 1))
        methods: dict[str, dict[str, Any]] = {}
        curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        train_images: list[str] = []
        y = y_latent = None
        for task, ratio in runs:
            name = method_name(task, ratio)
            _say(say, f"reg-vs-regns: training {name} ({task}, negative_ratio {ratio})")
            cfg = {
                "task": task,
                "model": {"arch": "resnet18", "input_size": int(input_size)},
                "data": {
                    "labels": str(train_dir),
                    "tile_size": int(sub_tile),
                    "stride": int(stride),
                    "negative_ratio": int(ratio),
                    "val_fraction": 0.0,
                    "split_seed": int(seed),
                    "epoch_length": epoch_length,
                },
                **_engine_settings(
                    epochs=epochs, batch_size=int(batch_size), seed=int(seed), device=dev, lr=lr
                ),
            }
            result, seconds = _train_run(cfg, out / "runs" / name)
            info = json.loads((result.out_dir / "info.json").read_text(encoding="utf-8"))
            data_info = info.get("data", {})
            train_images = list(data_info.get("train_images", train_images))
            images, boxes, scores = _predict_test_tiles(
                result.model_dir, test_dir, test_names, sub_tile=sub_tile, stride=stride, device=dev
            )
            prune_run(result.out_dir, keep_best=keep_models)
            if y is None:
                pred = TilePredictions(test_dir / "crowd.json", images, boxes, scores)
                s_t = truth_tile_scores(pred, truth)
                y = (s_t > 0).astype(np.int64)
                y_latent = _latent_labels(test_manifest["objects"], images, boxes)
            evaluation = evaluate_tile_scores(y, scores, thresholds=THRESHOLDS)
            curves[name] = (y, scores)
            methods[name] = {
                "task": task,
                "negative_ratio": int(ratio),
                "auc": evaluation["auc"],
                "auc_latent": _auc_or_none(y_latent, scores),
                "balanced_accuracy": evaluation["balanced_accuracy"],
                "tpr": evaluation["tpr"],
                "fpr": evaluation["fpr"],
                "ece": evaluation["ece"],
                "score_range": [float(scores.min()), float(scores.max())],
                "rows": [
                    {k: r[k] for k in ("threshold", "tpr", "fpr", "precision", "balanced_accuracy")}
                    for r in evaluation["rows"]
                ],
                "epochs_run": result.epochs_run,
                "epoch_length": data_info.get("epoch_length"),
                "n_events": data_info.get("n_events"),
                "train_seconds": round(seconds, 1),
                "model": os.path.relpath(result.model_dir, out) if keep_models else None,
            }
            _say(
                say,
                f"reg-vs-regns: {name}: AUC {_fmt(evaluation['auc'])}, TPR {evaluation['tpr']:.3f}"
                f" / FPR {evaluation['fpr']:.3f} at 0.5 ({seconds:.0f} s)",
            )

        if y is None or y_latent is None:  # cannot happen: Reg always runs
            raise RuntimeError("no method was trained")
        equal = _equal_tpr(methods, curves)
        table = _sweep(methods)
        _write_csv(out / "sweep.csv", table)
        figs: dict[str, str] = {}
        if figures and y.min() != y.max():
            from mitokit.models.tile_eval import plot_roc

            plot_roc(curves, out / "figures" / "roc.png")
            figs["roc"] = "figures/roc.png"
        result_dict = {
            "study": "reg_vs_regns",
            "question": (
                "Does Reg-NS (tile-score regression with negative sampling) have a lower FPR than "
                "Reg (positive tiles only) at equal TPR, as the third paper found?"
            ),
            "settings": settings,
            "data": {
                "n_test_subtiles": int(len(y)),
                "n_test_positive": int(y.sum()),
                "n_test_negative": int(len(y) - y.sum()),
                "n_test_positive_latent": int(y_latent.sum()),
                "n_train_events": methods["Reg"]["n_events"],
            },
            "split": {
                "train_seed": int(seed),
                "test_seed": test_seed,
                "train_images": sorted(train_images),
                "test_images": test_names,
                "train_sha1": sorted(_sha1(train_dir / "images" / n) for n in sorted(train_images)),
                "test_sha1": sorted(_sha1(test_dir / "images" / n) for n in test_names),
            },
            "methods": methods,
            "equal_tpr": equal,
            "answer": _answer(equal),
            "table": table,
            "figures": figs,
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        _write_json(out / "result.json", result_dict)
        return result_dict


def _auc_or_none(y: np.ndarray, s: np.ndarray) -> float | None:
    from mitokit.metrics.classification import roc_auc

    return roc_auc(y, s) if y.min() != y.max() else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _equal_tpr(
    methods: dict[str, dict[str, Any]], curves: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, Any]:
    """FPR of every method at Reg's TPR at 0.5 and at the fixed TPRs; stored per method too."""
    reference = float(methods["Reg"]["tpr"])
    targets = {"reg@0.5": reference, **{f"{t:g}": float(t) for t in FIXED_TPRS}}
    table: dict[str, dict[str, float | None]] = {}
    for key, tpr in targets.items():
        table[key] = {name: _fpr_at(*curves[name], tpr) for name in methods}
    for name, m in methods.items():
        m["fpr_at_tpr"] = {key: table[key][name] for key in targets}
    return {
        "definition": (
            "lowest FPR at which the ROC curve (linear between operating points) reaches the "
            "target TPR"
        ),
        "targets": targets,
        "reference": "Reg's TPR at threshold 0.5",
        "fpr": table,
    }


def _answer(equal: Mapping[str, Any]) -> dict[str, Any]:
    """For every other method and target TPR: is its FPR lower than Reg's (None: undefined)?"""
    out: dict[str, dict[str, bool | None]] = {}
    for key, row in equal["fpr"].items():
        reg = row["Reg"]
        # At TPR 0 every method has FPR 0: no comparison (Reg called nothing positive at 0.5).
        degenerate = equal["targets"][key] <= 0.0
        for name, value in row.items():
            if name == "Reg":
                continue
            lower = None if value is None or reg is None or degenerate else bool(value < reg)
            out.setdefault(name, {})[key] = lower
    ns = [n for n in out if n.startswith("Reg-NS")]
    return {
        "lower_fpr_than_reg": out,
        "reg_ns_lower_everywhere": bool(ns) and all(v is True for n in ns for v in out[n].values()),
    }


def _sweep(methods: Mapping[str, Mapping[str, Any]]) -> list[dict[str, float]]:
    from mitokit.models.tile_eval import sweep_table

    return sweep_table(methods)


# --------------------------------------------------------------------------------------------
# Soft vs majority labels for the patch classifier


def _write_patches(
    out: Path, *, n: int, seed: int, panel: Any
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    from mitokit.data.synthetic.export import write_patch_dataset
    from mitokit.data.synthetic.generate import generate_patches

    batch = generate_patches(n, seed=seed)
    manifest = write_patch_dataset(out, batch.images, batch.cells, seed=seed, panel=panel)
    return batch.images, np.asarray(batch.cells.m, dtype=np.float64), manifest


def _split_ids(cfg: Mapping[str, Any], seed: int) -> tuple[list[str], list[str]]:
    """The training and validation ids the engine's run used (rebuilt from its config)."""
    from mitokit.engines.task import get_task

    data = get_task(cfg["task"]).build_data(cfg["data"], seed=seed)
    val = list(data.val.ids) if data.val is not None else []
    return list(data.train.ids), val


def soft_vs_majority(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    n_patches: int = 1500,
    n_test_patches: int = 600,
    epochs: int = 4,
    input_size: int = 64,
    rater_noise: float = 0.15,
    n_raters: int = 3,
    repeat_fraction: float = 0.5,
    folds: int = 5,
    balanced: bool = True,
    batch_size: int = 32,
    lr: float = 1e-3,
    n_bins: int = 10,
    scale: float = 1.0,
    device: str = "auto",
    threads: int | None = None,
    figures: bool = True,
    keep_models: bool = False,
    say: Say = None,
) -> dict[str, Any]:
    """Patch classifier trained on majority vs soft (mean-vote) labels: AUC and calibration.

    Training patches (seed ``seed``) and held-out test patches (seed ``seed +``
    :data:`HELDOUT_SEED_OFFSET`) are rated by the same noisy panel
    (:class:`~mitokit.data.synthetic.labelling.RaterPanel` with ``rater_noise``,
    ``repeat_fraction`` of the cells rated again) and written under ``out_dir/data``. Both runs
    train a ResNet-18 through the engine with the same seed, the same training / validation
    split (fold 0 of ``folds``, grouped and stratified as the task does; the best epoch by
    validation loss is kept) and the same batches; only ``data.target`` differs.

    Evaluation on the test patches, against the truth:

    - ``auc``, ``balanced_accuracy`` (at 0.5): against ``m > 0.5``;
    - ``ece_truth``: ECE against ``m > 0.5``; ``ece_m``: against the latent ``m`` itself;
      ``ece_votes``: against the test panel's mean vote (the probabilistic label);
    - ``auc_majority_votes``: AUC against the test panel's majority (what a study without
      truth would report).

    Args:
        out_dir: Folder for data, runs, ``result.json``, ``calibration.csv`` and
            ``figures/reliability.png``; created, and must be empty if it exists.
        seed: Seed of the data, the raters, the split and the training.
        n_patches: Training patches (train + validation; before ``scale``).
        n_test_patches: Held-out test patches (before ``scale``).
        epochs: Training epochs.
        input_size: Side the 64-pixel patches are resampled to inside the model.
        rater_noise: SD of each pathologist's view of ``m``.
        n_raters: Pathologists in the panel.
        repeat_fraction: Share of cells each pathologist rates again.
        folds: Validation folds (fold 0 validates); 0 trains on every patch, keeping the last
            epoch.
        balanced: Class-balanced batches (the first paper's setting).
        batch_size: Patches per step.
        lr: Adam learning rate (random initial weights).
        n_bins: Equal-width bins of the calibration error and the reliability diagram.
        scale: Multiplies the numbers of training and test patches.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: PyTorch CPU threads during the study (None: unchanged).
        figures: Write the reliability diagram.
        keep_models: Keep each run's ``best/`` model (about 45 MB each); otherwise only its
            logs and configs stay.
        say: Progress messages.

    Returns:
        ``{"study", "question", "settings", "data", "split", "methods", "answer",
        "calibration", "figures", "seconds"}``; ``methods`` has ``majority`` and ``soft``.

    Raises:
        MitokitError: Bad settings, or a non-empty ``out_dir``.
    """
    from mitokit.data.synthetic.labelling import RaterPanel
    from mitokit.metrics.classification import (
        balanced_accuracy,
        calibration_table,
        expected_calibration_error,
        roc_auc,
    )
    from mitokit.models.classifier import PATCH_CLASSIFIER, predict_images
    from mitokit.models.io import load_model
    from mitokit.models.tasks_patch import read_patch_table

    t_start = time.perf_counter()
    n_train = _scaled(n_patches, scale, "n_patches", minimum=4)
    n_test = _scaled(n_test_patches, scale, "n_test_patches", minimum=2)
    epochs = _positive_int(epochs, "epochs")
    n_bins = _positive_int(n_bins, "n_bins")
    try:
        panel = RaterPanel(n_raters=n_raters, noise=rater_noise, repeat_fraction=repeat_fraction)
    except ValueError as exc:
        raise MitokitError(f"rater settings: {exc}") from None
    dev = _device(device)
    test_seed = int(seed) + HELDOUT_SEED_OFFSET
    settings = {
        "seed": int(seed),
        "test_seed": test_seed,
        "n_patches": n_train,
        "n_test_patches": n_test,
        "epochs": epochs,
        "arch": "resnet18",
        "input_size": int(input_size),
        "panel": {
            "n_raters": int(n_raters),
            "noise": float(rater_noise),
            "repeat_fraction": float(repeat_fraction),
            "scale": "0 / 0.5 / 1",
        },
        "folds": int(folds),
        "validation": f"fold 0 of {folds}, best epoch by val loss" if folds >= 2 else "none",
        "balanced": bool(balanced),
        "batch_size": int(batch_size),
        "optimizer": f"adam lr {lr:g}, weight decay 1e-4, random init",
        "augment": "HED jitter, flips, 90-degree rotations",
        "n_bins": n_bins,
        "device": dev,
        "threads": threads,
    }

    with _study_dir(out_dir) as out, torch_threads(threads):
        _say(say, f"soft-vs-majority: generating {n_train} training and {n_test} test patches")
        train_dir, test_dir = out / "data" / "train", out / "data" / "test"
        _write_patches(train_dir, n=n_train, seed=int(seed), panel=panel)
        test_images, m, _ = _write_patches(test_dir, n=n_test, seed=test_seed, panel=panel)
        votes = read_patch_table(test_dir / "labels.csv").score
        y = (m > 0.5).astype(np.int64)
        y_votes = (votes > 0.5).astype(np.int64)

        methods: dict[str, dict[str, Any]] = {}
        probs: dict[str, np.ndarray] = {}
        splits: dict[str, tuple[list[str], list[str]]] = {}
        for target in ("majority", "soft"):
            _say(say, f"soft-vs-majority: training on {target} labels")
            cfg = {
                "task": PATCH_CLASSIFIER,
                "model": {"arch": "resnet18", "input_size": int(input_size)},
                "data": {
                    "labels": str(train_dir / "labels.csv"),
                    "target": target,
                    "split_seed": int(seed),
                    "folds": int(folds),
                    "fold": 0,
                    "balanced": bool(balanced),
                    "batch_size": int(batch_size),
                },
                **_engine_settings(
                    epochs=epochs, batch_size=int(batch_size), seed=int(seed), device=dev, lr=lr
                ),
            }
            result, seconds = _train_run(cfg, out / "runs" / target)
            resolved = json.loads(
                (result.out_dir / "config.resolved.json").read_text(encoding="utf-8")
            )
            splits[target] = _split_ids(resolved, int(seed))
            model, _ = load_model(
                result.model_dir, expect_task=PATCH_CLASSIFIER, map_location=dev, fold_bn=True
            )
            p = predict_images(model, list(test_images), batch_size=128, device=dev)
            prune_run(result.out_dir, keep_best=keep_models)
            probs[target] = p
            methods[target] = {
                "auc": _auc_or_none(y, p),
                "balanced_accuracy": balanced_accuracy(y, (p >= 0.5).astype(np.float64)),
                "ece_truth": expected_calibration_error(y, p, n_bins=n_bins),
                "ece_m": expected_calibration_error(m, p, n_bins=n_bins),
                "ece_votes": expected_calibration_error(votes, p, n_bins=n_bins),
                "brier_truth": float(np.mean((p - y) ** 2)),
                "auc_majority_votes": (
                    roc_auc(y_votes, p) if y_votes.min() != y_votes.max() else None
                ),
                "mean_prob": float(p.mean()),
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "train_seconds": round(seconds, 1),
                "model": os.path.relpath(result.model_dir, out) if keep_models else None,
            }
            _say(
                say,
                f"soft-vs-majority: {target}: AUC {_fmt(methods[target]['auc'])}, ECE "
                f"{methods[target]['ece_truth']:.3f} vs truth ({seconds:.0f} s)",
            )

        calibration = {
            target: {
                "truth": calibration_table(y, probs[target], n_bins=n_bins),
                "votes": calibration_table(votes, probs[target], n_bins=n_bins),
            }
            for target in probs
        }
        _write_csv(
            out / "calibration.csv",
            [
                {"target": t, "against": a, **row}
                for t, by in calibration.items()
                for a, rows in by.items()
                for row in rows
            ],
        )
        figs: dict[str, str] = {}
        if figures:
            _plot_reliability(calibration, out / "figures" / "reliability.png", methods)
            figs["reliability"] = "figures/reliability.png"
        same = splits["majority"] == splits["soft"]
        soft, major = methods["soft"], methods["majority"]
        result_dict = {
            "study": "soft_vs_majority",
            "question": (
                "Does training the patch classifier on soft (mean-vote) labels give a lower "
                "calibration error than training it on majority labels?"
            ),
            "settings": settings,
            "data": {
                "n_test": int(len(y)),
                "n_test_positive": int(y.sum()),
                "test_vote_majority_agrees_with_truth": float(np.mean(y_votes == y)),
                "n_train_patches": len(splits["soft"][0]),
                "n_val_patches": len(splits["soft"][1]),
            },
            "split": {
                "train_seed": int(seed),
                "test_seed": test_seed,
                "same_split": bool(same),
                "majority": {"train": splits["majority"][0], "val": splits["majority"][1]},
                "soft": {"train": splits["soft"][0], "val": splits["soft"][1]},
            },
            "methods": methods,
            "answer": {
                f"soft_lower_{key}": bool(soft[key] < major[key])
                for key in ("ece_truth", "ece_m", "ece_votes")
            },
            "calibration": calibration,
            "figures": figs,
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        _write_json(out / "result.json", result_dict)
        return result_dict


def _plot_reliability(
    calibration: Mapping[str, Mapping[str, list[dict[str, float]]]],
    path: Path,
    methods: Mapping[str, Mapping[str, Any]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mitokit.io.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    titles = {"truth": "against the truth m > 0.5", "votes": "against the test panel's mean vote"}
    ece_key = {"truth": "ece_truth", "votes": "ece_votes"}
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.6), dpi=110)
    try:
        for ax, against in zip(axes, ("truth", "votes"), strict=True):
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
            for target, by in calibration.items():
                rows = by[against]
                xs = [r["mean_prob"] for r in rows]
                ys = [r["mean_true"] for r in rows]
                total = sum(r["count"] for r in rows)
                sizes = [10 + 400 * r["count"] / total for r in rows]
                ece = methods[target][ece_key[against]]
                ax.plot(xs, ys, marker="o", ms=3, label=f"{target} labels (ECE {ece:.3f})")
                ax.scatter(xs, ys, s=sizes, alpha=0.25)
            ax.set(
                xlabel="predicted probability (bin mean)",
                ylabel="observed frequency (bin mean)",
                xlim=(0, 1),
                ylim=(0, 1),
                title=titles[against],
            )
            ax.legend(loc="upper left", fontsize="small")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)


__all__ = [
    "FIXED_TPRS",
    "HELDOUT_SEED_OFFSET",
    "REG_QUICK",
    "SOFT_QUICK",
    "THRESHOLDS",
    "method_name",
    "prune_run",
    "reg_vs_regns",
    "soft_vs_majority",
    "torch_threads",
]
