"""The localisation stage's figures and report section (:mod:`mitokit.demo.localisation`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mitokit.demo.localisation import DETECTOR_KEY, LOCALISER_KEY, LocalisationSettings
from mitokit.report import HtmlReport

if TYPE_CHECKING:
    from mitokit.demo.localisation import _Model, _Outcome


def crop_box(truth: np.ndarray, res: Any, *, side: int) -> tuple[int, int, int, int]:
    """A ``side``-pixel square inside the detector's hotspot holding the most true mitoses.

    Candidates are centred on each true mitosis inside the hotspot; ties go to the one holding
    more detections. Without a true mitosis there, the
    square is centred on the hotspot.
    """
    w, h = res.size
    sw, sh = min(side, w), min(side, h)
    hx1, hy1, hx2, hy2 = res.hotspot.box
    cands = truth[_inside(truth, res.hotspot.box)]
    if not len(cands):
        cands = np.array([[(hx1 + hx2) / 2, (hy1 + hy2) / 2]])

    def box(c: np.ndarray) -> tuple[int, int, int, int]:
        x0 = int(np.clip(round(c[0] - sw / 2), 0, w - sw))
        y0 = int(np.clip(round(c[1] - sh / 2), 0, h - sh))
        return x0, y0, x0 + sw, y0 + sh

    boxes = [box(c) for c in cands]
    return max(boxes, key=lambda b: (_inside(truth, b).sum(), _inside(res.points, b).sum()))


def _inside(points: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Whether each point (``x, y`` first) lies in ``[x1, x2) x [y1, y2)``."""
    x1, y1, x2, y2 = box
    x, y = points[:, 0], points[:, 1]
    return (x >= x1) & (x < x2) & (y >= y1) & (y < y2)


def overlay(
    m: _Model,
    res: Any,
    slide: Path,
    crop: tuple[int, int, int, int],
    truth: np.ndarray,
    path: Path,
) -> dict[str, int]:
    """Predictions at the operating threshold (``res``) vs the consensus mitoses on a crop."""
    from mitokit.experiments.detection_study import RADIUS_UM
    from mitokit.io import open_slide
    from mitokit.io.annotations import Annotation
    from mitokit.report.overlay import plot_point_overlay

    x1, y1, x2, y2 = crop
    with open_slide(slide) as s:
        image = s.read_region((x1, y1), 0, (x2 - x1, y2 - y1))

    def local(points: np.ndarray) -> np.ndarray:
        shift = np.zeros(points.shape[1])
        shift[:2] = (x1, y1)
        return points[_inside(points, crop)] - shift

    pred = [
        Annotation(f"p{i}", "crop", point=(float(x), float(y)), score=float(sc))
        for i, (x, y, sc) in enumerate(local(res.points).tolist())
    ]
    true = [
        Annotation(f"t{i}", "crop", point=(float(x), float(y)))
        for i, (x, y) in enumerate(local(truth).tolist())
    ]
    return plot_point_overlay(
        image,
        path,
        pred=pred,
        truth=true,
        radius_px=RADIUS_UM / res.mpp,
        title=f"{m.name} at {m.threshold:.2f}",
        max_side=900,
    )


def write_report(report: HtmlReport, o: _Outcome) -> None:
    """The stage's report section: what was trained, scores, counts, figures and notes."""
    report.section("Detector, weak localiser and slide inference")
    report.paragraph(_intro(o.results[DETECTOR_KEY], o.passes[DETECTOR_KEY], o.st))
    _scores_table(report, o)
    _counts_table(report, o)
    _figures(report, o)
    _notes(report, o)


def _intro(det: Mapping[str, Any], res: Any, st: LocalisationSettings) -> str:
    """What the two models are, how they were trained, and the slide they read."""
    return (
        f"Two localisation models trained through the engine on newly generated images, then run "
        f"over the whole slide above ({res.size[0]} x {res.size[1]} px, "
        f"{det['tissue_area_mm2']:.2f} mm2 of tissue) with the slide predictor of "
        "`mitokit detect`. The detector is the third paper's Det-NS-WL: a Faster R-CNN with a "
        f"ResNet-18 FPN from random weights, trained on {st.sub_tile}-px tiles of "
        f"{st.det_images} generated {st.det_image_size}-px images ({st.det_mitotic_fraction:.0%}"
        f" of tumour cells mitotic) with the crowd boxes, their agreement weighting the box "
        f"classification loss, one negative tile per positive draw, {st.det_epochs} epochs of "
        f"{st.det_epoch_length} tiles; the last epoch is kept, at the threshold of its best F1 on "
        f"the {st.val_fraction:.0%} validation images, rather than the epoch of lowest "
        f"validation loss, which this early can be one that has hardly learnt "
        f"({_trend(det['validation'])}). The weak localiser (second paper; ResNet-18 "
        f"to layer3, a 1 x 1 map, max aggregation) saw only whether each of {st.wss_tiles} "
        f"generated {st.wss_tile_size}-px tiles holds a mitosis, {st.wss_epochs} epochs; its map "
        "threshold is the validation ROC point and each connected component above it is one "
        "detection."
    )


def _scores_table(report: HtmlReport, o: _Outcome) -> None:
    """Precision, recall and F1 of each model against both truths, and the labels' ceiling."""
    ceiling, n_truth, n_latent = o.ceiling, len(o.truth), len(o.latent)
    radius = o.results[DETECTOR_KEY]["radius_px"]
    rows = []
    for m in o.models:
        r = o.results[m.key]
        c, lat = r["consensus"], r["latent"]
        rows.append(
            [
                m.name,
                m.threshold,
                c["precision"],
                c["recall"],
                c["f1"],
                c["best_f1"],
                lat["f1"],
                lat["best_f1"],
            ]
        )
    rows.append(
        [
            "observer knowing every cell's m (ceiling)",
            0.5,
            ceiling["precision"],
            ceiling["recall"],
            ceiling["f1"],
            "",
            "",
            "",
        ]
    )
    report.table(
        rows,
        header=[
            "model",
            "threshold",
            "precision",
            "recall",
            "F1",
            "best F1",
            "F1 (m > 0.5)",
            "best F1 (m > 0.5)",
        ],
        caption=f"Detections on the slide matched one-to-one within 7.5 um "
        f"({radius:.0f} px) to its {n_truth} consensus mitoses and, as a second "
        f"truth, to its {n_latent} cells with latent m > 0.5. Best F1: the highest over a sweep "
        "of score thresholds (every distinct score, or 101 quantiles of many, and the operating "
        "threshold), an oracle; the detector's sweep starts at 0.05, the weak localiser's at its "
        "map threshold. The last row is the labels' own limit: the consensus is three simulated "
        "raters' noisy view of each cell's latent mitosis score m, so even an observer who knows "
        "every m exactly (a point per cell, kept where m >= 0.5) does not match it perfectly.",
    )


def _counts_table(report: HtmlReport, o: _Outcome) -> None:
    """Counts at the operating threshold against the true counts, and timings."""
    counts = []
    for m in o.models:
        r = o.results[m.key]
        counts.append(
            [
                m.name,
                r["count"],
                _num(r["count_per_mm2"]),
                r["hotspot_count"],
                len(o.truth),
                len(o.latent),
                r["slide_tiles"],
                r["train_seconds"],
                r["slide_seconds"],
            ]
        )
    report.table(
        counts,
        header=[
            "model",
            "count",
            "count per mm2",
            "hotspot count",
            "true count (consensus)",
            "true count (m > 0.5)",
            "slide tiles",
            "training s",
            "slide s",
        ],
        caption="Counts at the operating threshold (summary.json of each model) and timings.",
        digits=1,
    )


def _figures(report: HtmlReport, o: _Outcome) -> None:
    """Each model's slide heat map, then its overlay on the crop."""
    for m in o.models:
        report.image(
            o.folder / "slides" / m.key / "heatmap.png",
            caption=f"{m.name}: "
            + (
                "heat maps of the weak localiser's tiles"
                if m.key == LOCALISER_KEY
                else "density of the detections"
            )
            + " on the thumbnail, detections as circles, the 10-HPF hotspot (2.37 mm2) as a "
            "rectangle.",
        )
    for m in o.models:
        c = o.overlays[m.key]
        report.image(
            o.folder / "figures" / f"overlay_{m.key}.png",
            caption=f"{m.name} on a {o.st.crop}-px crop of the slide (where the hotspot holds the "
            f"most consensus mitoses): TP {c['tp']}, FP {c['fp']}, FN {c['fn']} at the operating "
            "threshold. Green circles: consensus mitoses (7.5 um radius); yellow crosses: "
            "matched detections; red: false alarms.",
        )


def _notes(report: HtmlReport, o: _Outcome) -> None:
    """What the numbers mean, the files, and how to run the trained models on another slide."""
    from mitokit.data.synthetic.scene import SceneParams

    covers = all(o.results[m.key]["hotspot_covers_slide"] for m in o.models)

    report.paragraph(
        "Small models trained for a minute or two on a CPU from random weights, one run with "
        "one seed: the numbers show that the pipeline works end to end, not how well these "
        "methods can do. The training images hold more mitoses than the slide (where "
        f"{SceneParams().mitotic_fraction:.1%} of tumour cells are mitotic), so thresholds "
        "chosen on validation images need not suit the slide; the best-threshold F1 shows "
        "what a better-chosen threshold would give. "
        "The training images are nearly all tissue, while the slide also has tissue borders and "
        "glass that the models never saw."
        + (
            " The slide is smaller than 10 high-power fields, so the hotspot window covers all "
            "of it and its count is the slide's count."
            if covers
            else ""
        ),
        note=True,
    )
    for m in o.models:
        report.link(
            o.folder / "slides" / m.key / "summary.json",
            f"localisation/slides/{m.key}/ (detections.csv, detections.geojson for QuPath, "
            "tiles.csv, heatmap.png, summary.json)",
        )
    report.link(o.folder / "result.json", "localisation/result.json (every number of this stage)")
    where = {m.key: (m.model_dir.relative_to(o.out).as_posix(), m.threshold) for m in o.models}
    report.paragraph(
        "To run the trained detector on another slide: mitokit detect SLIDE --model "
        f"{where[DETECTOR_KEY][0]} --threshold {where[DETECTOR_KEY][1]:.2f} --out FOLDER (the "
        f"weak localiser: --model {where[LOCALISER_KEY][0]}, which carries its own threshold)."
    )


def _trend(validation: list[dict[str, Any]]) -> str:
    """``validation loss a -> b -> c, best F1 x -> y -> z`` over the epochs."""

    def series(key: str) -> str:
        return " -> ".join(f"{row.get(key, math.nan):.2f}" for row in validation)

    return f"validation loss {series('loss')}, best F1 {series('best_f1')} over the epochs"


def _num(value: float | None) -> float:
    return float("nan") if value is None else float(value)


__all__ = ["crop_box", "overlay", "write_report"]
