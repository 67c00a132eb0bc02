"""The detection variants of the crowd-label study (third paper), re-run on generated tiles.

:func:`det_variants` trains Det (positive tiles only), Det-NS (with negative tiles), Det-WL
(the box classification loss weighted by crowd agreement) and Det-NS-WL (both) on the same
synthetic crowd-labelled tiles, and scores them on held-out tiles by point matching at 7.5 um
(:mod:`mitokit.metrics.detection`). The question: do negative sampling and agreement weighting
each raise the detector's F1, as the third paper found?

The data, the split, the seed and every training setting are shared; a variant differs only in
``data.negative_ratio`` and ``model.agreement_weighted`` of the ``detector`` task
(:mod:`mitokit.models.detector`). Nothing is tuned towards an expected answer: the settings are
the arguments, recorded in the result.

Speed (ResNet-18 Faster R-CNN, 250 px sub-tiles, one PyTorch thread on a shared two-core
machine): an epoch of the defaults (48 training tiles, 18 validation tiles) took 70-90 s and the
whole default study about 21 minutes; :data:`DET_QUICK` (``--quick``, a smoke run whose F1 is
not a result: two epochs of 24 tiles) took 2.5-5.5 minutes. ``scale`` multiplies the data.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mitokit.errors import MitokitError
from mitokit.experiments.heldout_slides import (
    slide_columns,
    slide_point_scores,
    write_heldout_slides,
)
from mitokit.experiments.synthetic_studies import (
    HELDOUT_SEED_OFFSET,
    Say,
    _device,
    _params,
    _positive_int,
    _say,
    _scaled,
    _sha1,
    _study_dir,
    _train_run,
    _write_csv,
    _write_json,
    _write_split,
    prune_run,
    torch_threads,
)

#: Variant name -> (negative tiles per positive draw?, agreement-weighted loss?).
VARIANTS: dict[str, tuple[bool, bool]] = {
    "Det": (False, False),
    "Det-NS": (True, False),
    "Det-WL": (False, True),
    "Det-NS-WL": (True, True),
}

#: Settings of :func:`det_variants` for ``--quick``.
DET_QUICK: dict[str, Any] = {
    "n_train_tiles": 4,
    "n_test_tiles": 2,
    "epochs": 2,
    "epoch_length": 24,
}

#: The matching radius of the point F1 (MIDOG), in micrometres.
RADIUS_UM = 7.5

#: Score floor of a detector's pass over held-out slides (its ``box_score_thresh``).
SLIDE_FLOOR = 0.05


def det_variants(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    scale: float = 1.0,
    epochs: int = 4,
    variants: Sequence[str] = tuple(VARIANTS),
    n_train_tiles: int = 8,
    n_test_tiles: int = 4,
    tile_size: int = 500,
    sub_tile: int = 250,
    stride: int = 125,
    negative_ratio: int = 1,
    val_fraction: float = 0.25,
    arch: str = "resnet18",
    batch_size: int = 4,
    lr: float = 0.01,
    lr_step: int | None = None,
    epoch_length: int | None = 48,
    box_batch_size_per_image: int = 128,
    mitotic_fraction: float | None = 0.05,
    slides: int = 0,
    slide_size: int = 4000,
    device: str = "auto",
    threads: int | None = None,
    keep_models: bool = False,
    progress: Say = None,
) -> dict[str, Any]:
    """Det, Det-NS, Det-WL and Det-NS-WL on synthetic crowd-labelled tiles, scored on held-out
    tiles by point precision, recall and F1 at 7.5 um.

    Training images (seed ``seed``) and held-out test images (seed ``seed +``
    :data:`~mitokit.experiments.synthetic_studies.HELDOUT_SEED_OFFSET`) are generated with every
    label kind under ``out/data/train`` and ``out/data/test``. Each variant is a Faster R-CNN
    (``arch`` ResNet-FPN, random initial weights) trained through the engine on
    ``sub_tile``-pixel sub-tiles at ``stride`` with the crowd boxes and their agreement as labels
    (``crowd.json``); ``val_fraction`` of the training images validate (split by image, the
    same for every variant, drawn among the images with at least one consensus mitosis, so
    that a threshold can be chosen): the engine keeps the epoch of lowest validation loss, and the
    score threshold of that epoch's best validation F1 (against the training set's consensus
    mitoses) is the variant's operating point. With ``epoch_length`` fixed every variant sees
    the same number of tiles; None gives the task's default (events x (1 + ratio)).

    Test: every variant detects on the whole test images (the detector keeps the tile size, so
    a larger image is the same computation as its tiles, without seams); box centres are matched
    one-to-one within 7.5 um (30 px at 0.25 um/px) to the test set's consensus mitoses
    (``consensus.json``), and, as a second truth, to the cells whose latent mitosis score
    ``m > 0.5``. ``chance_f1`` is the F1 of as many uniformly random points as there are true
    mitoses per image (seeded), the score of a blind guess.

    Args:
        out: Folder for data, runs, ``result.json`` and ``table.csv``; created, and must be
            empty if it exists.
        seed: Seed of the data, the split, the model initialisation and the tile draws.
        scale: Multiplies the numbers of training and test images.
        epochs: Training epochs of every variant.
        variants: Which of :data:`VARIANTS` to train, in this order.
        n_train_tiles: Training images (train + validation; before ``scale``).
        n_test_tiles: Held-out test images (before ``scale``).
        tile_size: Side of each generated image in pixels.
        sub_tile: Training tile side in pixels (250 in the paper).
        stride: Training tile stride in pixels.
        negative_ratio: Negative tiles per positive draw of the NS variants.
        val_fraction: Share of the training images that validate.
        arch: ``resnet18``, ``resnet34`` or ``resnet50``.
        batch_size: Tiles per step.
        lr: SGD learning rate (momentum 0.9, weight decay 1e-4).
        lr_step: Multiply the learning rate by 0.1 every ``lr_step`` epochs (None: constant).
        epoch_length: Tiles drawn per epoch (None: the task default).
        box_batch_size_per_image: Proposals sampled per tile for the box head's loss.
        mitotic_fraction: Share of tumour cells that are mitotic in the generated scenes (None:
            the generator's default, 1.5 %); the default 5 % gives a few mitoses per sub-tile.
        slides: Also score every variant on this many held-out generated slides of side
            ``slide_size`` through the slide engine, as ``mitokit detect`` reads slides
            (:mod:`mitokit.experiments.heldout_slides`); 0: none.
        slide_size: Side of the held-out slides in pixels.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: PyTorch CPU threads during the study (None: unchanged).
        keep_models: Keep each run's ``best/`` model; otherwise only its logs and configs stay.
        progress: Called with progress messages.

    Returns:
        ``{"study", "question", "settings", "data", "split", "variants", "chance_f1",
        "table", "seconds"}``; ``variants[name]`` holds ``negative_ratio``,
        ``agreement_weighted``, ``threshold`` (chosen on validation), ``precision``, ``recall``,
        ``f1`` at it, ``best_f1`` / ``best_threshold`` over every threshold (an oracle),
        ``f1_at_0.5``, the same against the latent truth (``latent``), validation figures of
        the kept epoch, timings (``train_seconds``, ``seconds_per_epoch``) and, with
        ``slides``, ``slides``: :func:`~mitokit.experiments.heldout_slides.slide_point_scores`
        at the validation threshold (slide pass from :data:`SLIDE_FLOOR`).

    Raises:
        MitokitError: Bad settings, or a non-empty ``out``.
    """
    from mitokit.data.synthetic.scene import SceneParams
    from mitokit.io.annotations import read_annotations
    from mitokit.models.detector import DETECTOR, truth_centres

    t_start = time.perf_counter()
    names = list(dict.fromkeys(variants))
    unknown = [v for v in names if v not in VARIANTS]
    if not names or unknown:
        raise MitokitError(f"variants must be among {', '.join(VARIANTS)}, got {list(variants)!r}")
    n_train = _scaled(n_train_tiles, scale, "n_train_tiles", minimum=2)
    n_test = _scaled(n_test_tiles, scale, "n_test_tiles")
    epochs = _positive_int(epochs, "epochs")
    n_slides = _positive_int(slides, "slides") if slides else 0
    step = 0 if lr_step is None else _positive_int(lr_step, "lr_step")
    ratio = _positive_int(negative_ratio, "negative_ratio")
    if epoch_length is not None:
        epoch_length = _positive_int(epoch_length, "epoch_length")
    if tile_size < sub_tile:
        raise MitokitError(f"tile_size {tile_size} is smaller than the sub-tile {sub_tile}")
    scene = None if mitotic_fraction is None else SceneParams(mitotic_fraction=mitotic_fraction)
    mpp = scene.mpp if scene is not None else SceneParams().mpp
    radius_px = RADIUS_UM / mpp
    dev = _device(device)
    test_seed = int(seed) + HELDOUT_SEED_OFFSET
    settings = {
        "seed": int(seed),
        "test_seed": test_seed,
        "n_train_tiles": n_train,
        "n_test_tiles": n_test,
        "tile_size": int(tile_size),
        "sub_tile": int(sub_tile),
        "stride": int(stride),
        "variants": names,
        "negative_ratio": ratio,
        "val_fraction": float(val_fraction),
        "epochs": epochs,
        "epoch_length": epoch_length if epoch_length is not None else "events x (1 + ratio)",
        "arch": arch,
        "model": "Faster R-CNN ResNet-FPN, random init, trainable batch norm, tiles not resized",
        "batch_size": int(batch_size),
        "optimizer": f"sgd lr {lr:g}, momentum 0.9, weight decay 1e-4"
        + (f", lr x0.1 every {step} epochs" if step else ""),
        "box_batch_size_per_image": int(box_batch_size_per_image),
        "augment": "HED jitter, flips, 90-degree rotations",
        "labels": "crowd boxes with agreement (crowd.json)",
        "validation": "best epoch by val loss; threshold of its best val F1 vs consensus",
        "truth": "test consensus mitoses (consensus.json); latent m > 0.5 as second truth",
        "radius_um": RADIUS_UM,
        "radius_px": radius_px,
        "mpp": mpp,
        "scene": "generator defaults" if scene is None else _params(scene),
        "slides": n_slides,
        "slide_size": int(slide_size) if n_slides else None,
        "device": dev,
        "threads": threads,
    }

    with _study_dir(out) as root, torch_threads(threads):
        _say(progress, f"det-variants: generating {n_train} training and {n_test} test images")
        train_dir, test_dir, manifest, test_names = _write_split(
            root,
            n_train=n_train,
            n_test=n_test,
            seed=int(seed),
            test_seed=test_seed,
            size=int(tile_size),
            scene=scene,
        )
        consensus = truth_centres(read_annotations(test_dir / "consensus.json"), min_agreement=0)
        truth = {name: consensus.get(name, np.zeros((0, 2))) for name in test_names}
        latent = _latent_centres(manifest["objects"], test_names)
        val_images = _val_images(train_dir, val_fraction=val_fraction, seed=int(seed))
        chance = _chance_f1(truth, size=int(tile_size), radius_px=radius_px, seed=int(seed))
        slide_paths = write_heldout_slides(
            root / "data" / "slides",
            n=n_slides,
            size=int(slide_size),
            seed=int(seed),
            progress=lambda m: _say(progress, f"det-variants: {m}"),
        )

        results: dict[str, dict[str, Any]] = {}
        split: dict[str, list[str]] = {}
        for name in names:
            negatives, weighted = VARIANTS[name]
            variant_ratio = ratio if negatives else 0
            _say(progress, f"det-variants: training {name}")
            cfg = {
                "task": DETECTOR,
                "model": {
                    "arch": arch,
                    "agreement_weighted": weighted,
                    "box_batch_size_per_image": int(box_batch_size_per_image),
                    "rpn_post_nms_top_n_test": 300,
                },
                "data": {
                    "labels": str(train_dir),
                    "mpp": mpp,
                    "tile_size": int(sub_tile),
                    "stride": int(stride),
                    "negative_ratio": variant_ratio,
                    "val_fraction": float(val_fraction),
                    "val_images": val_images,
                    "split_seed": int(seed),
                    "epoch_length": epoch_length,
                    "val_labels": str(train_dir / "consensus.json"),
                },
                "optim": {
                    "name": "sgd",
                    "lr": float(lr),
                    "momentum": 0.9,
                    "weight_decay": 1e-4,
                    "step_size": step,
                    "gamma": 0.1,
                },
                "train": {
                    "epochs": epochs,
                    "batch_size": int(batch_size),
                    "seed": int(seed),
                    "device": dev,
                    "num_workers": 0,
                    "log_every": 0,
                },
            }
            result, seconds = _train_run(cfg, root / "runs" / name)
            info = json.loads((result.out_dir / "info.json").read_text(encoding="utf-8"))
            split = {k: info["data"][k] for k in ("train_images", "val_images")}
            row = result.history[(result.best_epoch or len(result.history)) - 1]
            threshold = row.get("val_best_threshold", 0.5)
            if threshold is None or not np.isfinite(threshold):
                threshold = 0.5
            pred = _predict_images(result.model_dir, test_dir, test_names, device=dev)
            on_slides = None
            if slide_paths:
                _say(progress, f"det-variants: {name} over {len(slide_paths)} held-out slides")
                on_slides = slide_point_scores(
                    result.model_dir,
                    slide_paths,
                    threshold=float(threshold),
                    floor=SLIDE_FLOOR,
                    device=dev,
                )
            prune_run(result.out_dir, keep_best=keep_models)
            results[name] = _variant_scores(
                pred, truth, latent, radius_px=radius_px, threshold=float(threshold)
            )
            results[name].update(
                {
                    "negative_ratio": variant_ratio,
                    "agreement_weighted": weighted,
                    "best_epoch": result.best_epoch,
                    "epochs_run": result.epochs_run,
                    "val": {k[4:]: v for k, v in row.items() if k.startswith("val_")},
                    "n_events": info["data"].get("n_events"),
                    "epoch_length": info["data"].get("epoch_length"),
                    "train_seconds": round(seconds, 1),
                    "seconds_per_epoch": round(
                        float(np.mean([r["seconds"] for r in result.history])), 1
                    ),
                    "model": os.path.relpath(result.model_dir, root) if keep_models else None,
                    "slides": on_slides,
                }
            )
            m = results[name]
            _say(
                progress,
                f"det-variants: {name}: F1 {m['f1']:.3f} at {m['threshold']:.2f} (best "
                f"{m['best_f1']:.3f}), {m['seconds_per_epoch']:.0f} s/epoch"
                + (f"; slides F1 {on_slides['f1']:.3f}" if on_slides else ""),
            )

        table = [
            {
                "variant": name,
                **{
                    k: m[k]
                    for k in (
                        "negative_ratio",
                        "agreement_weighted",
                        "threshold",
                        "precision",
                        "recall",
                        "f1",
                        "best_f1",
                        "best_threshold",
                        "f1_at_0.5",
                    )
                },
                "latent_f1": m["latent"]["f1"],
                "latent_best_f1": m["latent"]["best_f1"],
                **slide_columns(m["slides"]),
                "train_seconds": m["train_seconds"],
                "seconds_per_epoch": m["seconds_per_epoch"],
            }
            for name, m in results.items()
        ]
        _write_csv(root / "table.csv", table)
        out_dict = {
            "study": "det_variants",
            "question": (
                "Do negative sampling (NS) and agreement-weighted loss (WL) each raise the point "
                "F1 of a Faster R-CNN trained on crowd boxes, as the third paper found?"
            ),
            "settings": settings,
            "data": {
                "n_test_truth": int(sum(len(v) for v in truth.values())),
                "n_test_latent": int(sum(len(v) for v in latent.values())),
            },
            "split": {
                "train_seed": int(seed),
                "test_seed": test_seed,
                **split,
                "test_images": test_names,
                "test_sha1": sorted(_sha1(test_dir / "images" / n) for n in test_names),
            },
            "variants": results,
            "chance_f1": chance,
            "table": table,
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        _write_json(root / "result.json", out_dict)
        return out_dict


def _val_images(train_dir: Path, *, val_fraction: float, seed: int) -> list[str] | None:
    """A seeded share of the training images, drawn among those with a consensus mitosis.

    Validation chooses each variant's score threshold, which needs true mitoses; None (the
    engine's plain split by ``val_fraction``) when no image has one.
    """
    from mitokit.io.annotations import read_annotations
    from mitokit.models.detector import truth_centres

    names = sorted(p.name for p in (train_dir / "images").glob("*.png"))
    counts = truth_centres(read_annotations(train_dir / "consensus.json"), min_agreement=0)
    candidates = [n for n in names if len(counts.get(n, ())) > 0]
    if not candidates or val_fraction <= 0:
        return None
    k = min(len(names) - 1, len(candidates), max(1, round(val_fraction * len(names))))
    return sorted(np.random.default_rng([seed, 5]).permutation(candidates)[:k].tolist())


def _predict_images(
    model_dir: Path, test_dir: Path, names: Sequence[str], *, device: str
) -> dict[str, np.ndarray]:
    """``(N, 3)`` box centres with scores of the detector on each whole test image."""
    from mitokit.data.arrays import read_rgb
    from mitokit.data.datasets import to_tensor
    from mitokit.models.detector import DETECTOR, detect
    from mitokit.models.io import load_model

    model, _ = load_model(model_dir, expect_task=DETECTOR, map_location=device, fold_bn=True)
    return {
        name: detect(model, [to_tensor(read_rgb(test_dir / "images" / name))], device=device)[0]
        for name in names
    }


def _variant_scores(
    pred: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    latent: Mapping[str, np.ndarray],
    *,
    radius_px: float,
    threshold: float,
) -> dict[str, Any]:
    from mitokit.models.detector import point_scores

    main = point_scores(pred, truth, radius_px=radius_px, threshold=threshold)
    at_half = point_scores(pred, truth, radius_px=radius_px, threshold=0.5)
    second = point_scores(pred, latent, radius_px=radius_px, threshold=threshold)
    keys = ("precision", "recall", "f1", "best_f1", "best_threshold", "tp", "fp", "fn")
    return {
        "threshold": threshold,
        **{k: main[k] for k in keys},
        "f1_at_0.5": at_half["f1"],
        "n_pred": main["n_pred"],
        "latent": {k: second[k] for k in keys},
    }


def _latent_centres(objects: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict:
    """Image -> ``(M, 2)`` centres of the generated cells with latent ``m > 0.5``."""
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for o in objects:
        if float(o["m"]) > 0.5 and str(o["image"]) in out:
            out[str(o["image"])].append((float(o["x"]), float(o["y"])))
    return {k: np.asarray(v, dtype=np.float64).reshape(-1, 2) for k, v in out.items()}


def _chance_f1(truth: Mapping[str, np.ndarray], *, size: int, radius_px: float, seed: int) -> float:
    """F1 of as many uniform random points per image as true points (mean of 20 draws)."""
    from mitokit.models.detector import point_scores

    rng = np.random.default_rng([seed, 7])
    f1s = []
    for _ in range(20):
        pred = {
            k: np.column_stack([rng.uniform(0, size, (len(v), 2)), np.ones(len(v))])
            for k, v in truth.items()
        }
        f1s.append(point_scores(pred, truth, radius_px=radius_px, threshold=0.5)["f1"])
    return float(np.mean(f1s))


__all__ = ["DET_QUICK", "RADIUS_UM", "VARIANTS", "det_variants"]
