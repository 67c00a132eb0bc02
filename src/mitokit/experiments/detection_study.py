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

Training images (seed ``seed``) and held-out test images (seed ``seed +``
:data:`~mitokit.experiments.harness.HELDOUT_SEED_OFFSET`) are generated with every label kind
under ``out/data/train`` and ``out/data/test``. Each variant is a Faster R-CNN (``arch``
ResNet-FPN, random initial weights) trained through the engine on ``sub_tile``-pixel sub-tiles at
``stride`` with the crowd boxes and their agreement as labels (``crowd.json``); ``val_fraction``
of the training images validate (split by image, the same for every variant, drawn among the
images with at least one consensus mitosis, so that a threshold can be chosen): the engine keeps
the epoch of lowest validation loss, and the score threshold of that epoch's best validation F1
(against the training set's consensus mitoses) is the variant's operating point. With
``epoch_length`` fixed every variant sees the same number of tiles; None gives the task's default
(events x (1 + ratio)).

Test: every variant detects on the whole test images (the detector keeps the tile size, so a
larger image is the same computation as its tiles, without seams); box centres are matched
one-to-one within 7.5 um (30 px at 0.25 um/px) to the test set's consensus mitoses
(``consensus.json``), and, as a second truth, to the cells whose latent mitosis score ``m > 0.5``.
``chance_f1`` is the F1 of as many uniformly random points as there are true mitoses per image
(seeded), the score of a blind guess.

Speed (ResNet-18 Faster R-CNN, 250 px sub-tiles, one PyTorch thread on a shared two-core
machine): an epoch of the defaults (48 training tiles, 18 validation tiles) took 70-90 s and the
whole default study about 21 minutes; :data:`DET_QUICK` (``--quick``, a smoke run whose F1 is
not a result: two epochs of 24 tiles) took 2.5-5.5 minutes. ``scale`` multiplies the data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from mitokit.errors import MitokitError
from mitokit.experiments.harness import (
    Arm,
    Study,
    arguments,
    arm_engine,
    params,
    positive_int,
    sgd,
    table_rows,
)
from mitokit.experiments.heldout_slides import slide_columns
from mitokit.experiments.point_eval import (
    chance_f1,
    detector_scores,
    latent_centres,
    predict_detector,
    val_images,
    val_threshold,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mitokit.experiments.harness import RunSettings, Say, TileSplit, Trained


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

#: Columns of ``table.csv`` after the variant's name.
TABLE_COLUMNS = (
    "negative_ratio",
    "agreement_weighted",
    "threshold",
    "precision",
    "recall",
    "f1",
    "best_f1",
    "best_threshold",
    "f1_at_0.5",
    lambda m: {"latent_f1": m["latent"]["f1"], "latent_best_f1": m["latent"]["best_f1"]},
    lambda m: slide_columns(m["slides"]),
    "train_seconds",
    "seconds_per_epoch",
)


def det_variants(
    out: str | os.PathLike,
    *,
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
    progress: Say = None,
    **run: Unpack[RunSettings],
) -> dict[str, Any]:
    """Det, Det-NS, Det-WL and Det-NS-WL on synthetic crowd-labelled tiles, scored on held-out
    tiles by point precision, recall and F1 at 7.5 um.

    The design: the module's description.

    Args:
        out: Folder for data, runs, ``result.json`` and ``table.csv``; created, and must be
            empty if it exists.
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
        progress: Called with progress messages.
        **run: The :class:`~mitokit.experiments.harness.RunSettings` (``seed``, ``scale``,
            ``device``, ``threads``, ``keep_models``).

    Returns:
        ``{"study", "question", "settings", "data", "split", "variants", "chance_f1",
        "table", "seconds"}``; ``variants[name]`` holds the columns of :data:`TABLE_COLUMNS`
        (``threshold``: chosen on validation; ``best_f1`` over every threshold: an oracle;
        ``latent``: against the latent truth; ``slides``: at the validation threshold, slide
        pass from :data:`SLIDE_FLOOR`), the kept epoch's validation figures and its training.

    Raises:
        MitokitError: Bad settings, or a non-empty ``out``.
    """
    a = _checked(arguments(locals(), train="n_train_tiles", test="n_test_tiles", minimum=(2, 1)))
    with Study.of("det-variants", out, a, progress) as study:
        split = study.tile_split(
            n_train=a.n_train, n_test=a.n_test, size=a.size, scene=a.scene, noun="images"
        )
        ev = _Evaluation(study, split, a)
        val = val_images(split.train_dir, val_fraction=val_fraction, seed=int(a.seed))
        ev.slides = study.heldout_slides(a.n_slides, slide_size)
        results = study.run_arms(_arms(a, split.train_dir, val), ev)
        result = _summary(ev, results)
        return study.finish(result, {"table.csv": result["table"]})


def _checked(a: SimpleNamespace) -> SimpleNamespace:
    """Validate this study's own arguments; add the derived settings (``names``, ``scene`` ...)."""
    from mitokit.data.synthetic.scene import SceneParams

    a.names = list(dict.fromkeys(a.variants))
    unknown = [v for v in a.names if v not in VARIANTS]
    if not a.names or unknown:
        raise MitokitError(
            f"variants must be among {', '.join(VARIANTS)}, got {list(a.variants)!r}"
        )
    a.step = 0 if a.lr_step is None else positive_int(a.lr_step, "lr_step")
    a.ratio = positive_int(a.negative_ratio, "negative_ratio")
    if a.epoch_length is not None:
        a.epoch_length = positive_int(a.epoch_length, "epoch_length")
    if a.tile_size < a.sub_tile:
        raise MitokitError(f"tile_size {a.tile_size} is smaller than the sub-tile {a.sub_tile}")
    a.size = int(a.tile_size)
    frac = a.mitotic_fraction
    a.scene = None if frac is None else SceneParams(mitotic_fraction=frac)
    a.mpp = a.scene.mpp if a.scene is not None else SceneParams().mpp
    a.radius_px = RADIUS_UM / a.mpp
    return a


def _settings(a: SimpleNamespace) -> dict[str, Any]:
    """The detection study's own settings, as its result records them (:meth:`Study.settings`
    adds the seeds, the data counts, the device and the threads)."""
    return {
        "tile_size": a.size,
        "sub_tile": int(a.sub_tile),
        "stride": int(a.stride),
        "variants": a.names,
        "negative_ratio": a.ratio,
        "val_fraction": float(a.val_fraction),
        "epochs": a.epochs,
        "epoch_length": a.epoch_length if a.epoch_length is not None else "events x (1 + ratio)",
        "arch": a.arch,
        "model": "Faster R-CNN ResNet-FPN, random init, trainable batch norm, tiles not resized",
        "batch_size": int(a.batch_size),
        "optimizer": f"sgd lr {a.lr:g}, momentum 0.9, weight decay 1e-4"
        + (f", lr x0.1 every {a.step} epochs" if a.step else ""),
        "box_batch_size_per_image": int(a.box_batch_size_per_image),
        "augment": "HED jitter, flips, 90-degree rotations",
        "labels": "crowd boxes with agreement (crowd.json)",
        "validation": "best epoch by val loss; threshold of its best val F1 vs consensus",
        "truth": "test consensus mitoses (consensus.json); latent m > 0.5 as second truth",
        "radius_um": RADIUS_UM,
        "radius_px": a.radius_px,
        "mpp": a.mpp,
        "scene": "generator defaults" if a.scene is None else params(a.scene),
        "slides": a.n_slides,
        "slide_size": int(a.slide_size) if a.n_slides else None,
    }


def _arms(a: SimpleNamespace, train_dir: Path, val_images: list[str] | None) -> list[Arm]:
    """One Faster R-CNN per variant: only the negative ratio and the loss weighting differ."""
    from mitokit.models.detector import DETECTOR

    arms = []
    for name in a.names:
        negatives, weighted = VARIANTS[name]
        ratio = a.ratio if negatives else 0
        cfg = {
            "task": DETECTOR,
            "model": {
                "arch": a.arch,
                "agreement_weighted": weighted,
                "box_batch_size_per_image": int(a.box_batch_size_per_image),
                "rpn_post_nms_top_n_test": 300,
            },
            "data": {
                "labels": str(train_dir),
                "mpp": a.mpp,
                "tile_size": int(a.sub_tile),
                "stride": int(a.stride),
                "negative_ratio": ratio,
                "val_fraction": float(a.val_fraction),
                "val_images": val_images,
                "split_seed": int(a.seed),
                "epoch_length": a.epoch_length,
                "val_labels": str(train_dir / "consensus.json"),
            },
            **arm_engine(a, sgd(a.lr, step_size=a.step, gamma=0.1)),
        }
        arms.append(Arm(name, cfg, f"training {name}", {"ratio": ratio, "weighted": weighted}))
    return arms


class _Evaluation:
    """Scores each trained variant on the whole test images (and the held-out slides)."""

    def __init__(self, study: Study, split: TileSplit, a: SimpleNamespace) -> None:
        from mitokit.io.annotations import read_annotations
        from mitokit.models.detector import truth_centres

        self.study, self.split, self.a = study, split, a
        consensus = truth_centres(
            read_annotations(split.test_dir / "consensus.json"), min_agreement=0
        )
        self.truth = {n: consensus.get(n, np.zeros((0, 2))) for n in split.test_names}
        self.latent = latent_centres(split.manifest["objects"], split.test_names)
        self.slides: list[Path] = []
        self.split_images: dict[str, list[str]] = {}

    def __call__(self, arm: Arm, trained: Trained) -> dict[str, Any]:
        result, info, dev = trained.result, trained.info(), self.a.dev
        self.split_images = {k: info["data"][k] for k in ("train_images", "val_images")}
        row = result.history[(result.best_epoch or len(result.history)) - 1]
        threshold = val_threshold(row)
        pred = predict_detector(result.model_dir, self.split, device=dev)
        on_slides = self.study.score_slides(
            arm.name, trained, self.slides, threshold=threshold, floor=SLIDE_FLOOR, device=dev
        )
        m = detector_scores(
            pred, self.truth, self.latent, radius_px=self.a.radius_px, threshold=threshold
        )
        m.update(
            {
                "negative_ratio": arm.facts["ratio"],
                "agreement_weighted": arm.facts["weighted"],
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "val": {k[4:]: v for k, v in row.items() if k.startswith("val_")},
                "n_events": info["data"].get("n_events"),
                "epoch_length": info["data"].get("epoch_length"),
                "train_seconds": round(trained.seconds, 1),
                "seconds_per_epoch": round(
                    float(np.mean([r["seconds"] for r in result.history])), 1
                ),
                "model": trained.model,
                "slides": on_slides,
            }
        )
        self.study.say(
            f"{arm.name}: F1 {m['f1']:.3f} at {m['threshold']:.2f} (best "
            f"{m['best_f1']:.3f}), {m['seconds_per_epoch']:.0f} s/epoch"
            + (f"; slides F1 {on_slides['f1']:.3f}" if on_slides else "")
        )
        return m


def _summary(ev: _Evaluation, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The study's result (without ``seconds``)."""
    a, study, split = ev.a, ev.study, ev.split
    return study.result(
        "det_variants",
        "Do negative sampling (NS) and agreement-weighted loss (WL) each raise the point "
        "F1 of a Faster R-CNN trained on crowd boxes, as the third paper found?",
        _settings(a),
        data={
            "n_test_truth": int(sum(len(v) for v in ev.truth.values())),
            "n_test_latent": int(sum(len(v) for v in ev.latent.values())),
        },
        split=study.split(
            **ev.split_images,
            test_images=split.test_names,
            test_sha1=split.sha1s(split.test_dir, split.test_names),
        ),
        variants=results,
        chance_f1=chance_f1(ev.truth, size=a.size, radius_px=a.radius_px, seed=int(a.seed)),
        table=table_rows(results, "variant", TABLE_COLUMNS),
    )


__all__ = ["DET_QUICK", "RADIUS_UM", "VARIANTS", "det_variants"]
