"""The cost of one real-size slide, measured: time and memory of ``predict_slide``; one JSON object.

The slide is 100,000 x 80,000 px at 0.25 um/px (a 25 x 20 mm scan at 40x), written as a JPEG
pyramidal TIFF with 512-pixel tiles, as
:func:`mitokit.data.synthetic.generate.write_synthetic_slide` writes them. Rendering eight
gigapixels cell by cell would take that generator about 35 minutes on two cores (20,000 x 20,000
took 104 s), so its pixels are a generated 10,000 x 10,000 slide (seed 0) repeated, shown through an
elliptic window with glass outside, sized so that the tissue mask covers about 40 % of the slide.
The tissue fraction printed is the one the engine's own mask measured.

The model is the random ResNet-18 tile classifier of ``slide_inference.py`` (250 px at
0.25 um/px), loaded as ``mitokit detect`` loads it, through ``--backend`` (int8 calibrated on
256 tiles of another generated slide, as there). The run is a fresh process: ``peak_rss_mib`` is
its own high-water mark.

Usage::

    python benchmarks/real_size_slide.py --keep /tmp/real --backend onnx-int8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

SIZE = (100_000, 80_000)
SOURCE = 10_000
TISSUE = 0.40


def write_slide(path: str, source_path: str) -> float:
    """The real-size slide from a generated one; returns the seconds it took."""
    import numpy as np

    from mitokit.io.slides import open_slide
    from mitokit.io.tiffwrite import TileSource, write_pyramidal_tiff

    with open_slide(source_path) as source:
        pixels = source.read_region((0, 0), 0, (SOURCE, SOURCE))
        thumb = source.get_thumbnail((1024, 1024))
    from mitokit.data.tissue import mask_from_rgb

    source_tissue = float(mask_from_rgb(thumb, downsample=SOURCE / thumb.shape[1]).mean())
    w, h = SIZE
    # an ellipse covering `window` of the slide; inside it, the source's own tissue share
    window = min(0.95 * math.pi / 4, TISSUE / max(source_tissue, 1e-6))
    scale = math.sqrt(window / (math.pi / 4))
    cx, cy, ax, ay = w / 2, h / 2, scale * w / 2, scale * h / 2

    def read(x: int, y: int, bw: int, bh: int) -> np.ndarray:
        xs = (np.arange(x, x + bw) % SOURCE)[None, :]
        ys = (np.arange(y, y + bh) % SOURCE)[:, None]
        block = pixels[ys, xs]
        dy = ((np.arange(y, y + bh) + 0.5 - cy) / ay)[:, None]
        dx = ((np.arange(x, x + bw) + 0.5 - cx) / ax)[None, :]
        block[dx**2 + dy**2 > 1.0] = 255
        return block

    start = time.perf_counter()
    write_pyramidal_tiff(path, TileSource(SIZE, read), mpp=0.25, tile_size=512, quality=90)
    return time.perf_counter() - start


def child(args: argparse.Namespace) -> dict:
    """Load the model, warm it up, predict the slide; in this fresh process."""
    import torch
    from slide_inference import _rss_mib

    from mitokit.engines.slide import SlidePredictor
    from mitokit.models.predictors import load_predictor

    predictor = load_predictor(args.model, device="cpu", backend=args.backend)
    engine = SlidePredictor(predictor, batch_size=32, progress=False)
    with torch.no_grad():
        predictor.predict(engine.model_input(torch.zeros((32, 250, 250, 3), dtype=torch.uint8)))
    start = time.perf_counter()
    result = engine.predict_slide(args.slide)
    seconds = time.perf_counter() - start
    peak = _rss_mib()
    return {
        "tiles": len(result.tile_scores),
        "seconds": round(seconds, 1),
        "minutes": round(seconds / 60, 2),
        "tiles_per_s": round(len(result.tile_scores) / seconds, 2),
        "tissue_fraction": round(float(result.tissue.fraction), 3),
        "reader": result.settings["reading"]["reader"],
        "workers": engine.workers,
        "peak_rss_mib": round(peak, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", default=None, help="folder to write (and reuse) the slides in")
    p.add_argument("--backend", default="onnx-int8", help="torch, onnx or onnx-int8")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--slide", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.child:
        print(json.dumps(child(args)))
        return
    from slide_inference import save_random_model

    from mitokit.data.synthetic.generate import write_synthetic_slide
    from mitokit.models.backend import quantize_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        source = os.path.join(folder, f"synthetic_{SOURCE}.tif")
        if not os.path.exists(source):
            write_synthetic_slide(source, size=(SOURCE, SOURCE), seed=0)
        slide = os.path.join(folder, f"real_{SIZE[0]}x{SIZE[1]}.tif")
        write_s = None
        if not os.path.exists(slide):
            write_s = round(write_slide(slide, source), 1)
        model = save_random_model(os.path.join(tmp, "model"))
        if args.backend == "onnx-int8":
            calibration = os.path.join(folder, "calibration_4000.tif")
            if not os.path.exists(calibration):
                write_synthetic_slide(calibration, size=(4000, 4000), seed=1)
            quantize_model(model, [calibration], tiles=256, seed=0)
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--slide", slide]
        cmd += ["--model", model, "--backend", args.backend]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        out = json.loads(done.stdout.strip().splitlines()[-1])
    result = {
        "size": list(SIZE),
        "mpp": 0.25,
        "backend": args.backend,
        "cpus": os.cpu_count(),
        "file_gib": round(os.path.getsize(slide) / 2**30, 2) if args.keep else None,
        "write_s": write_s,
        "measured": True,
        **out,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
