"""What the ONNX backends cost in accuracy, on trained models; prints one JSON object.

For each backend (``torch``, ``onnx``, ``onnx-int8``) the same trained model is scored:

- ``--patch-model``: a patch classifier (e.g. ``mitokit train configs/amibr-atypical.yaml``) on
  the 826 held-out AMi-Br rows (every row not in the published training split): AUC and
  balanced accuracy at 0.5 (:func:`mitokit.metrics.patches.evaluate_patch_file`). Its int8 graph
  is calibrated on ``--tiles`` patches of the training split (seeded choice).
- ``--slide-model``: a model that reads slides (the weak localiser, e.g. the demo's
  ``localisation/models/weak_localiser``) on held-out generated slides
  (:func:`mitokit.experiments.heldout_slides.write_heldout_slides`): point F1 at its own
  threshold and best F1 against the consensus, within 7.5 um
  (:func:`~mitokit.experiments.heldout_slides.slide_point_scores`). Its int8 graph is calibrated
  on ``--calibration`` (the images it was trained on).

``delta_*`` are the int8 (and float ONNX) figures minus PyTorch's. Writing int8 graphs changes
the model folders (``model.int8.onnx``): run it on copies you do not mind.

Usage::

    python benchmarks/backend_accuracy.py --patch-model runs/amibr-atypical-soft/best \\
        --slide-model demo_out/localisation/models/weak_localiser \\
        --calibration demo_out/localisation/data/wss/train
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

BACKENDS = ("torch", "onnx", "onnx-int8")
AMIBR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "amibr"


def patch_accuracy(model: str, amibr: Path, tiles: int) -> dict:
    """AUC and balanced accuracy of a patch classifier on AMi-Br's held-out rows per backend."""
    import numpy as np

    from mitokit.metrics.patches import evaluate_patch_file, select_rows
    from mitokit.models.backend import quantize_model
    from mitokit.models.classifier.data import read_patch_table

    labels, split = amibr / "AMI-BR.csv", amibr / "amibr_train_split.csv"
    table = read_patch_table(labels, images=amibr / "patches")
    train = select_rows(table, only_ids=split)
    pick = np.random.default_rng(0).choice(train, size=min(tiles, len(train)), replace=False)
    start = time.perf_counter()
    quantize_model(model, [table.paths[i] for i in sorted(pick)], tiles=len(pick))
    out: dict = {"model": model, "calibration_patches": len(pick)}
    out["int8_calibration_s"] = round(time.perf_counter() - start, 1)
    for backend in BACKENDS:
        start = time.perf_counter()
        r = evaluate_patch_file([model], labels, exclude_ids=split, backend=backend)
        out[backend] = {
            "n": r["n"],
            "auc": round(r["auc"], 4),
            "balanced_accuracy": round(r["balanced_accuracy"], 4),
            "seconds": round(time.perf_counter() - start, 1),
        }
    for backend in BACKENDS[1:]:
        for key in ("auc", "balanced_accuracy"):
            out[f"delta_{key}_{backend}"] = round(out[backend][key] - out["torch"][key], 4)
    return out


def slide_accuracy(model: str, calibration: list[str], n: int, size: int, tiles: int) -> dict:
    """Point F1 of a slide model on held-out generated slides per backend."""
    from mitokit.experiments.heldout_slides import slide_point_scores, write_heldout_slides
    from mitokit.models.backend import quantize_model

    start = time.perf_counter()
    quantize_model(model, calibration, tiles=tiles)
    out: dict = {"model": model, "int8_calibration_s": round(time.perf_counter() - start, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        slides = write_heldout_slides(tmp, n=n, size=size, seed=0)
        for backend in BACKENDS:
            r = slide_point_scores(model, slides, backend=backend, floor=0.05)
            keys = ("threshold", "f1", "best_f1", "tp", "fp", "fn", "slide_seconds")
            out[backend] = {k: r[k] for k in keys}
            out[backend]["n_truth"] = r["n_truth"]
    for backend in BACKENDS[1:]:
        for key in ("f1", "best_f1"):
            out[f"delta_{key}_{backend}"] = round(out[backend][key] - out["torch"][key], 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patch-model", default=None, help="a trained AMi-Br patch classifier")
    p.add_argument("--amibr", type=Path, default=AMIBR, help="the AMi-Br folder")
    p.add_argument("--slide-model", default=None, help="a trained weak localiser")
    p.add_argument("--calibration", nargs="*", default=[], help="slide model's training images")
    p.add_argument("--slides", type=int, default=3, help="held-out generated slides")
    p.add_argument("--slide-size", type=int, default=4000)
    p.add_argument("--tiles", type=int, default=256, help="int8 calibration tiles")
    args = p.parse_args()
    result: dict = {"cpus": os.cpu_count()}
    if args.patch_model:
        result["patches"] = patch_accuracy(args.patch_model, args.amibr, args.tiles)
    if args.slide_model:
        if not args.calibration:
            p.error("--slide-model needs --calibration (the images it was trained on)")
        result["slides"] = slide_accuracy(
            args.slide_model, args.calibration, args.slides, args.slide_size, args.tiles
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
