"""Demo stage: a detector and a weak localiser trained on generated tiles, then run over the
demo's whole slide and scored against the slide's known truth.

:func:`stage_localisation`:

1. generates training tiles with every label kind (as the detection and weak-localisation
   studies do, :mod:`mitokit.experiments.detection_study`, :mod:`mitokit.experiments.wss_study`);
2. trains, through the engine, a Det-NS-WL Faster R-CNN (task ``detector``: ResNet-18 FPN, random
   initial weights, one negative tile per positive draw, box classification loss weighted by the
   crowd agreement of ``crowd.json``) and a weak localiser (task ``weak_localiser``, max
   aggregation) that sees image-level labels only;
3. runs both over the slide of the earlier stage with :class:`~mitokit.engines.slide.SlidePredictor`
   and writes each model's ``detections.csv``, ``detections.geojson``, ``tiles.csv``,
   ``heatmap.png`` (with the 10-HPF hotspot) and ``summary.json`` under
   ``localisation/slides/<model>/``, as ``mitokit detect`` would;
4. matches the detections one-to-one within 7.5 um to the slide's consensus mitoses
   (``slide/consensus.json``) and, as a second truth, to the cells with latent ``m > 0.5``, at the
   model's operating threshold and at the best threshold (an oracle), and reports both.

The detector of the last epoch is kept (trained this briefly from random weights, its validation
loss may rise while its validation F1 climbs, so the engine's lowest-loss ``best/`` can be an
epoch that has hardly learnt); its operating threshold is the one of that epoch's best
validation F1 (as in :func:`~mitokit.experiments.detection_study.det_variants`). The slide is
read once, keeping every box scoring at least the model's ``box_score_thresh``
(:data:`DETECTOR_FLOOR`), so that the best-threshold F1 covers the whole score range; the files
are written at the operating threshold. The weak localiser's points are the components of its
map at its own threshold (the validation ROC point), so its slide pass uses that threshold and
its best F1 is taken over the component scores at or above it.

How much is trained is :data:`FULL_SETTINGS` or :data:`QUICK_SETTINGS` (``--quick``); tests pass a
smaller :class:`LocalisationSettings`. Measured on an idle two-core CPU: the full stage in 120 s
(detector training 58 s, its slide pass over 507 tiles 44 s), the quick one in 50 s.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mitokit.report import HtmlReport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mitokit.demo.core import StageArgs

#: Score floor of the detector's slide pass: its ``box_score_thresh``.
DETECTOR_FLOOR = 0.05

#: Display name and output folder of each model.
DETECTOR_NAME, DETECTOR_KEY = "Det-NS-WL detector", "detector"
LOCALISER_NAME, LOCALISER_KEY = "weak localiser (max)", "weak_localiser"


@dataclass(frozen=True)
class LocalisationSettings:
    """How much the stage generates and trains.

    Attributes:
        det_images: Generated training images of the detector (validation included).
        det_epochs: Detector epochs.
        det_epoch_length: Sub-tiles drawn per detector epoch.
        wss_tiles: Generated training tiles of the weak localiser (validation included).
        wss_epochs: Weak-localiser epochs.
        det_image_size: Side of the detector's training images in pixels.
        det_mitotic_fraction: Share of mitotic tumour cells in the detector's training images.
        sub_tile: Detector tile side (training and slide) in pixels.
        stride: Stride of the detector's training tiles.
        det_batch_size: Detector tiles per step.
        det_lr: Detector SGD learning rate.
        box_batch: Proposals sampled per tile for the box head's loss.
        proposals: Proposals the box head scores per tile at inference (fewer is faster).
        wss_tile_size: Side of the weak localiser's training tiles in pixels.
        wss_mitotic_fraction: Share of mitotic tumour cells in its training tiles.
        wss_batch_size: Weak-localiser tiles per step.
        wss_lr: Weak-localiser Adam learning rate.
        val_fraction: Share of the training images that validate (model and threshold choice).
        slide_batch_size: Tiles per model call on the slide.
        crop: Side in pixels of the slide crop of the overlay figures.
    """

    det_images: int
    det_epochs: int
    det_epoch_length: int
    wss_tiles: int
    wss_epochs: int
    det_image_size: int = 500
    det_mitotic_fraction: float = 0.05
    sub_tile: int = 250
    stride: int = 125
    det_batch_size: int = 4
    det_lr: float = 0.01
    box_batch: int = 128
    proposals: int = 100
    wss_tile_size: int = 128
    wss_mitotic_fraction: float = 0.08
    wss_batch_size: int = 16
    wss_lr: float = 1e-3
    val_fraction: float = 0.25
    slide_batch_size: int = 8
    crop: int = 1024


#: Settings of the full demo.
FULL_SETTINGS = LocalisationSettings(
    det_images=8, det_epochs=4, det_epoch_length=32, wss_tiles=96, wss_epochs=8
)
#: Settings of ``mitokit demo --quick``.
QUICK_SETTINGS = LocalisationSettings(
    det_images=4, det_epochs=3, det_epoch_length=24, wss_tiles=48, wss_epochs=4
)


def settings_for(quick: bool) -> LocalisationSettings:
    """:data:`QUICK_SETTINGS` or :data:`FULL_SETTINGS`."""
    return QUICK_SETTINGS if quick else FULL_SETTINGS


@dataclass(frozen=True)
class _Model:
    """A trained model and how its slide pass is run."""

    name: str
    key: str
    model_dir: Path
    threshold: float  # operating threshold
    floor: float  # threshold of the slide pass (<= threshold)
    seconds: float
    validation: list[dict[str, Any]]  # per epoch
    kept_epoch: int | None
    density: bool  # its slide heat map is the density of its points (no heat maps of its own)


@dataclass(frozen=True)
class _Outcome:
    """What the stage's report shows: the models, their slide passes, scores and figures."""

    out: Path  # the demo folder
    st: LocalisationSettings
    models: list[_Model]
    results: dict[str, dict[str, Any]]  # per model key: _scores
    passes: dict[str, Any]  # per model key: the slide result at the operating threshold
    overlays: dict[str, dict[str, int]]  # per model key: TP, FP, FN on the crop
    truth: np.ndarray  # the slide's consensus mitoses
    latent: np.ndarray  # its cells with latent m > 0.5
    ceiling: dict[str, float]

    @property
    def folder(self) -> Path:
        """The stage's folder."""
        return self.out / "localisation"


def stage_localisation(
    out: Path,
    report: HtmlReport,
    settings: LocalisationSettings | None = None,
    **stage: Unpack[StageArgs],
) -> dict[str, Any]:
    """Train a detector and a weak localiser, run both over ``ctx["slide"]``, score and report.

    Args:
        out: The demo's folder; this stage writes ``localisation/``.
        report: The report to add a section to.
        settings: Overrides the settings chosen by ``size.quick``.
        **stage: The driver's :class:`~mitokit.demo.core.StageArgs`: ``size`` (``quick``
            chooses the settings), ``seed`` (of the data, the split and the models), ``say``,
            and ``ctx``, which must hold ``slide`` (the slide's path, with ``consensus.json``
            beside it) and ``slide_cells`` (its cells, with the latent score ``m``) and gets
            ``detector`` and ``weak_localiser`` (the model folders).

    Returns:
        What is also written to ``localisation/result.json``: settings, per-model scores,
        counts and timings.
    """
    from mitokit.demo.localisation_report import crop_box, overlay, write_report
    from mitokit.experiments.harness import write_json

    seed, say, ctx = stage["seed"], stage["say"], stage["ctx"]
    st = settings if settings is not None else settings_for(bool(stage["size"].quick))
    folder = out / "localisation"
    slide = Path(ctx["slide"])
    cells = ctx["slide_cells"]
    t0 = time.perf_counter()
    det_data, wss_data = _write_training_data(folder / "data", st, seed=seed)
    say(f"      training tiles generated in {time.perf_counter() - t0:.0f} s")
    models = [
        _train_detector(det_data, folder / "models" / DETECTOR_KEY, st, seed=seed, say=say),
        _train_localiser(wss_data, folder / "models" / LOCALISER_KEY, st, seed=seed, say=say),
    ]
    for m in models:
        ctx[m.key] = m.model_dir
    truth, latent = _slide_truth(slide, cells)

    results: dict[str, dict[str, Any]] = {}
    passes = {}
    for m in models:
        floor, op = _slide_pass(m, slide, st, folder / "slides" / m.key, say=say)
        passes[m.key] = op
        results[m.key] = _scores(m, floor, op, truth, latent)
        r = results[m.key]
        say(
            f"      {m.name}: {r['count']} detections, F1 {r['consensus']['f1']:.3f} at "
            f"{m.threshold:.2f} (best {r['consensus']['best_f1']:.3f})"
        )

    ceiling = _ceiling(cells, truth, slide.name, mpp=passes[DETECTOR_KEY].mpp)
    figures = folder / "figures"
    crop = crop_box(truth, passes[DETECTOR_KEY], side=st.crop)
    overlays = {
        m.key: overlay(m, passes[m.key], slide, crop, truth, figures / f"overlay_{m.key}.png")
        for m in models
    }
    result = {
        "settings": asdict(st),
        "slide": str(slide.relative_to(out)) if slide.is_relative_to(out) else str(slide),
        "truth": {"consensus": int(len(truth)), "latent": int(len(latent))},
        "ceiling": ceiling,
        "models": results,
        "crop": list(crop),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(folder / "result.json", result)
    outcome = _Outcome(out, st, models, results, passes, overlays, truth, latent, ceiling)
    write_report(report, outcome)
    return result


# ------------------------------------------------------------------------------ training


def _write_training_data(root: Path, st: LocalisationSettings, *, seed: int) -> tuple[Path, Path]:
    """The detector's and the weak localiser's generated training images, with every label."""
    from mitokit.data.synthetic.scene import SceneParams
    from mitokit.experiments.harness import write_tiles

    det, wss = root / "detector", root / "weak_localiser"
    for folder, n, side, fraction in (
        (det, st.det_images, st.det_image_size, st.det_mitotic_fraction),
        (wss, st.wss_tiles, st.wss_tile_size, st.wss_mitotic_fraction),
    ):
        scene = SceneParams(mitotic_fraction=fraction)
        write_tiles(folder, n=n, seed=seed, size=side, scene=scene)
    return det, wss


def _train_detector(
    data: Path, run: Path, st: LocalisationSettings, *, seed: int, say: Callable[[str], None]
) -> _Model:
    """Det-NS-WL through the engine; the last epoch, at the threshold of its best validation F1."""
    from mitokit.experiments.harness import sgd, train_run
    from mitokit.experiments.point_eval import val_images, val_threshold
    from mitokit.models.detector import DETECTOR

    cfg = {
        "task": DETECTOR,
        "model": {
            "arch": "resnet18",
            "agreement_weighted": True,
            "box_batch_size_per_image": st.box_batch,
            "box_score_thresh": DETECTOR_FLOOR,
            "rpn_post_nms_top_n_test": st.proposals,
        },
        "data": {
            "labels": str(data),  # the folder's crowd.json: boxes with agreement
            "mpp": 0.25,
            "tile_size": st.sub_tile,
            "stride": st.stride,
            "negative_ratio": 1,
            "val_fraction": st.val_fraction,
            "val_images": val_images(data, val_fraction=st.val_fraction, seed=seed),
            "split_seed": seed,
            "epoch_length": st.det_epoch_length,
            "val_labels": str(data / "consensus.json"),
        },
        **_cpu_engine(sgd(st.det_lr), st.det_epochs, st.det_batch_size, seed=seed),
    }
    say(f"      training the detector ({st.det_epochs} epochs of {st.det_epoch_length} tiles)")
    result, seconds = train_run(cfg, run)
    # The last epoch is kept, not the engine's best/ (lowest validation loss): trained this
    # briefly from random weights, the detector's validation loss can rise while its validation
    # F1 climbs, and the lowest loss is then an epoch that has hardly learnt.
    for name in ("state", "best"):
        shutil.rmtree(result.out_dir / name, ignore_errors=True)
    row = result.history[-1]
    threshold = val_threshold(row)
    say(
        f"      detector trained in {seconds:.0f} s; last epoch's validation best F1 "
        f"{row.get('val_best_f1', math.nan):.3f} at {threshold:.2f}"
    )
    return _Model(
        DETECTOR_NAME,
        DETECTOR_KEY,
        result.out_dir / "last",
        threshold=max(threshold, DETECTOR_FLOOR),
        floor=DETECTOR_FLOOR,
        seconds=seconds,
        validation=_validation(result.history, ("loss", "best_f1", "best_threshold")),
        kept_epoch=len(result.history),
        density=True,
    )


def _train_localiser(
    data: Path, run: Path, st: LocalisationSettings, *, seed: int, say: Callable[[str], None]
) -> _Model:
    """The weak localiser (max aggregation) on image-level labels; threshold: validation ROC."""
    from mitokit.experiments.harness import adam, prune_run, train_run
    from mitokit.models.predictors import load_predictor
    from mitokit.models.wss import WEAK_LOCALISER

    cfg = {
        "task": WEAK_LOCALISER,
        "model": {"aggregation": "max", "threshold": "roc"},
        "data": {
            "labels": str(data),  # image_labels.csv: does the tile hold a consensus mitosis?
            "mpp": 0.25,
            "val_fraction": st.val_fraction,
            "split_seed": seed,
        },
        **_cpu_engine(adam(st.wss_lr), st.wss_epochs, st.wss_batch_size, seed=seed),
    }
    say(f"      training the weak localiser ({st.wss_epochs} epochs of {st.wss_tiles} tiles)")
    result, seconds = train_run(cfg, run)
    prune_run(result.out_dir)
    threshold = float(load_predictor(result.model_dir, device="cpu").threshold)
    say(f"      weak localiser trained in {seconds:.0f} s; map threshold {threshold:.2f}")
    return _Model(
        LOCALISER_NAME,
        LOCALISER_KEY,
        result.model_dir,
        threshold=threshold,
        floor=threshold,
        seconds=seconds,
        validation=_validation(result.history, ("loss", "auc", "threshold", "point_f1")),
        kept_epoch=result.best_epoch,
        density=False,
    )


def _cpu_engine(optim: dict[str, Any], epochs: int, batch_size: int, *, seed: int) -> dict:
    """The ``optim`` and ``train`` sections of a model's config: the demo trains on the CPU."""
    from mitokit.experiments.harness import engine_settings

    return engine_settings(optim, epochs=epochs, batch_size=batch_size, seed=seed, device="cpu")


def _validation(history: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Per epoch, the validation figures ``keys`` of a run's log."""
    return [
        {"epoch": row["epoch"], **{k: row[f"val_{k}"] for k in keys if f"val_{k}" in row}}
        for row in history
    ]


# ------------------------------------------------------------------------- slide and scores


def _slide_truth(slide: Path, cells: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(M, 2)`` consensus mitoses of the slide and ``(K, 2)`` cells with latent m > 0.5."""
    from mitokit.experiments.heldout_slides import slide_truth

    mitotic = np.asarray(cells.m) > 0.5
    latent = np.column_stack([np.asarray(cells.x)[mitotic], np.asarray(cells.y)[mitotic]])
    return slide_truth(slide), latent.astype(np.float64).reshape(-1, 2)


def _slide_pass(
    m: _Model, slide: Path, st: LocalisationSettings, folder: Path, *, say: Callable[[str], None]
) -> tuple[Any, Any]:
    """Run the model over the slide at its floor; write the files at its operating threshold.

    Returns:
        The :class:`~mitokit.engines.slide.SlideResult` at the floor (every point kept) and the
        one at the operating threshold (the one written).
    """
    from mitokit.engines.slide import SlidePredictor, write_slide_outputs
    from mitokit.models.predictors import load_predictor

    t = time.perf_counter()
    engine = SlidePredictor(
        load_predictor(m.model_dir, device="cpu"),
        batch_size=st.slide_batch_size,
        threshold=m.floor,
        progress=False,
    )
    res = engine.predict_slide(slide)
    op = _at_threshold(res, m.threshold, density=m.density)
    write_slide_outputs(op, folder)
    say(f"      {m.name}: {len(res.tile_scores)} slide tiles in {time.perf_counter() - t:.0f} s")
    return res, op


def _at_threshold(res: Any, threshold: float, *, density: bool) -> Any:
    """A slide result keeping only the points scoring at least ``threshold``.

    The hotspot is found anew; with ``density`` (a model without heat maps of its own, whose
    map is the density of its points) the map is redrawn from the kept points with the
    smoothing :class:`~mitokit.engines.slide.SlidePredictor` uses.
    """
    from mitokit.metrics.hotspot import find_hotspot, hotspot_size_px
    from mitokit.report.heatmap import point_density

    if threshold <= res.threshold:
        return res
    points = res.points[res.points[:, 2] >= threshold]
    heat = res.heat
    if density:
        dx, dy = res.tissue.downsample
        sigma = 0.1 * hotspot_size_px(res.mpp)[1] / math.sqrt(dx * dy)
        heat = point_density(points, res.heat.shape, (dx, dy), sigma)
    hotspot = find_hotspot(points, slide_size=res.size, mpp=res.mpp, tissue=res.tissue)
    return replace(res, points=points, threshold=float(threshold), hotspot=hotspot, heat=heat)


def _ceiling(cells: Any, truth: np.ndarray, key: str, *, mpp: float) -> dict[str, float]:
    """:func:`~mitokit.experiments.heldout_slides.label_ceiling` of the demo slide."""
    from mitokit.experiments.heldout_slides import RADIUS_UM, label_ceiling

    xym = np.column_stack([np.asarray(cells.x), np.asarray(cells.y), np.asarray(cells.m)])
    return label_ceiling({key: xym}, {key: truth}, radius_px=RADIUS_UM / mpp)


def _scores(m: _Model, res: Any, op: Any, truth: np.ndarray, latent: np.ndarray) -> dict[str, Any]:
    """Point scores against both truths (``res``: every point of the slide pass), the counts
    at the operating threshold (``op``) and the timings of one model."""
    from mitokit.experiments.detection_study import RADIUS_UM
    from mitokit.metrics.detection import radius_to_px
    from mitokit.models.detector import point_scores

    radius = radius_to_px(radius_um=RADIUS_UM, mpp=res.mpp)
    key = res.name
    out: dict[str, Any] = {
        "name": m.name,
        "threshold": m.threshold,
        "slide_pass_threshold": m.floor,
        "radius_px": radius,
    }
    for label, points in (("consensus", truth), ("latent", latent)):
        s = point_scores({key: res.points}, {key: points}, radius_px=radius, threshold=m.threshold)
        out[label] = {
            k: s[k]
            for k in ("precision", "recall", "f1", "best_f1", "best_threshold", "tp", "fp", "fn")
        }
    summary = op.summary()
    out.update(
        {
            "count": int(len(op.points)),
            "count_per_mm2": summary["mitotic_count_per_mm2"],
            "hotspot_count": summary["hotspot"]["count"],
            "hotspot_covers_slide": _covers(op.hotspot.box, op.size),
            "tissue_area_mm2": summary["tissue_area_mm2"],
            "slide_tiles": int(len(res.tile_scores)),
            "slide_seconds": round(res.seconds, 1),
            "train_seconds": round(m.seconds, 1),
            "kept_epoch": m.kept_epoch,
            "validation": m.validation,
            "files": f"slides/{m.key}",
        }
    )
    return out


def _covers(box: tuple[float, float, float, float], size: tuple[int, int]) -> bool:
    x1, y1, x2, y2 = box
    return x1 <= 0 and y1 <= 0 and x2 >= size[0] and y2 >= size[1]


__all__ = [
    "DETECTOR_FLOOR",
    "FULL_SETTINGS",
    "QUICK_SETTINGS",
    "LocalisationSettings",
    "settings_for",
    "stage_localisation",
]
