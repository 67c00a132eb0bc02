"""Whole-slide inference throughput and memory of the slide engine; prints one JSON object.

The model is a randomly initialised ``tile_classifier`` ResNet-18 (250-pixel tiles at 0.25 um/px,
so real compute per tile) run by :class:`mitokit.engines.slide.SlidePredictor` over a generated
slide (:func:`mitokit.data.synthetic.generate.write_synthetic_slide`, 20,000 x 20,000 by
default). Each measurement runs in a fresh subprocess, so peak memory is its own.

- ``e2e_over_model``: end-to-end tiles/s of ``predict_slide`` (tissue mask, threaded reading,
  inference, merging, hotspot) divided by model-only tiles/s on the same slide's tiles already in
  memory (same batch size, measured in the same process before and after). Target >= 0.8 on CPU,
  >= 0.9 on GPU.
- ``speedup_vs_naive``: end-to-end tiles/s over a naive loop in one thread (read a tile, run the
  model as trained on it, next; PyTorch limited to one thread). Target >= 2 on CPU.
  ``speedup_vs_naive_same_threads`` compares with the same loop with PyTorch's usual threads.
  The engine's model has its batch norm folded into its convolutions (as ``load_predictor``
  does; ``bn_folded`` layers); the naive loop runs the same weights unfolded, and
  ``fold_gain`` is the folded model's model-only throughput over the unfolded one's on the same
  tiles (``--no-fold`` runs the engine unfolded too). ``speedup_vs_naive_folded``: over the
  one-thread loop running the folded model (the streaming and batching alone).
- ``rss_ratio_4x_area``: peak resident memory on a slide of twice the side (4x the area) over
  that on the first slide, each in its own process running only ``predict_slide``. Target
  <= 1.2. ``rss_growth_mib`` is the peak above the resident memory after loading and warming
  up the model (a more sensitive view). On CUDA also ``cuda_max_allocated_mib`` of both.

On a machine shared with other jobs, set ``OMP_NUM_THREADS`` to the cores really free: PyTorch's
threads spin-wait for each other and slow down many-fold when a core is taken away.

Usage::

    python benchmarks/slide_inference.py                # 20k and 40k slides (long on CPU)
    python benchmarks/slide_inference.py --size 3000    # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TILE = 250
MODEL_MPP = 0.25


def build_predictor(device: str, fold: bool = True):
    """A random ResNet-18 tile classifier behind the Predictor contract (the same weights every
    call), its batch norm folded when ``fold``; returns it and the number of layers folded."""
    import torch

    from mitokit.engines.task import get_task
    from mitokit.models.inference import fold_batchnorm
    from mitokit.models.predictors import TileScorePredictor

    torch.manual_seed(0)
    model_cfg = {"arch": "resnet18", "input_size": None}
    model = get_task("tile_classifier").build_model(model_cfg).eval()
    folded = fold_batchnorm(model) if fold else 0
    cfg = {
        "task": "tile_classifier",
        "model": model_cfg,
        "extra": {"data": {"tile_size": TILE, "mpp": MODEL_MPP}},
    }
    return TileScorePredictor(model, cfg, torch.device(device)), folded


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mib() -> float:
    """Peak resident memory of this process so far, MiB.

    Linux's ``VmHWM`` (the high-water mark of this process image); ``ru_maxrss`` would carry
    the parent's peak over the fork and exec (a parent that has just generated a 40k slide
    would hide the child's own peak).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tiles_in_memory(path: str, engine, n: int):
    """The first ``n`` tiles of the engine's plan for ``path``, read into one uint8 array."""
    import numpy as np

    from mitokit.data.tissue import TissueMask, mask_from_rgb
    from mitokit.engines.slide_stream import _read_tile, plan_tiles, read_geometry
    from mitokit.io.slides import open_slide

    with open_slide(path) as slide:
        size = slide.dimensions
        thumb = slide.get_thumbnail((1024, 1024))
        ds = (size[0] / thumb.shape[1], size[1] / thumb.shape[0])
        mask = TissueMask(mask_from_rgb(thumb, downsample=(ds[0] * ds[1]) ** 0.5), ds)
        g = read_geometry(slide, tile_size=TILE, model_mpp=MODEL_MPP, slide_mpp=slide.mpp)
        plan = plan_tiles(size, g, overlap=engine._overlap_px(g.scale * slide.mpp), mask=mask)
        origins = plan.origins[:n]
        tiles = np.stack([_read_tile(slide, o, g) for o in origins])
    return g, origins, tiles


def _model_only(engine, tiles, batch_size: int, repeats: int = 1, predictor=None) -> float:
    """Tiles/s of ``predictor.predict`` (default the engine's) alone on float batches already
    on the device (in the layout the engine hands over)."""
    import torch

    predictor = predictor or engine.predictor
    dev = predictor.device
    batches = [
        engine.model_input(torch.from_numpy(tiles[i : i + batch_size]))
        for i in range(0, len(tiles), batch_size)
    ]
    _sync(dev)
    start = time.perf_counter()
    for _ in range(repeats):
        for b in batches:
            predictor.predict(b)
    _sync(dev)
    return repeats * len(tiles) / (time.perf_counter() - start)


def _naive(path: str, predictor, g, origins) -> float:
    """Tiles/s of read-one-tile-then-infer in one thread (plain NCHW float input)."""
    import numpy as np
    import torch

    from mitokit.engines.slide_stream import _read_tile
    from mitokit.io.slides import open_slide

    dev = predictor.device
    with open_slide(path) as slide:
        start = time.perf_counter()
        for o in origins:
            tile = _read_tile(slide, np.asarray(o), g)
            x = torch.from_numpy(np.ascontiguousarray(tile)).to(dev)
            x = x.permute(2, 0, 1)[None].float().div(255)
            with torch.no_grad():
                predictor.predict(x)
        _sync(dev)
        return len(origins) / (time.perf_counter() - start)


def child(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    from mitokit.engines.slide import SlidePredictor

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor, folded = build_predictor(device, fold=not args.no_fold)
    engine = SlidePredictor(
        predictor, batch_size=args.batch_size, workers=args.workers, progress=False
    )
    warm = engine.model_input(torch.randint(0, 256, (args.batch_size, TILE, TILE, 3)).byte())
    with torch.no_grad():
        for _ in range(2):
            predictor.predict(warm)
    _sync(predictor.device)
    if predictor.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out: dict = {"device": str(predictor.device), "rss_before_mib": round(_rss_mib(), 1)}

    if args.mode == "full":
        n = args.sample_tiles
        g, origins, tiles = _tiles_in_memory(args.slide, engine, n)
        reps = 5 if predictor.device.type == "cuda" else 1
        with torch.no_grad():
            model_a = _model_only(engine, tiles, args.batch_size, reps)
        del tiles
        start = time.perf_counter()
        result = engine.predict_slide(args.slide)
        e2e_s = time.perf_counter() - start
        n_tiles = len(result.tile_scores)
        g, origins, tiles = _tiles_in_memory(args.slide, engine, n)
        with torch.no_grad():
            model_b = _model_only(engine, tiles, args.batch_size, reps)
        plain, _ = build_predictor(device, fold=False)
        with torch.no_grad():
            plain.predict(warm)
            model_plain = _model_only(engine, tiles, args.batch_size, reps, predictor=plain)
        del tiles
        naive_n = origins[: args.naive_tiles]
        naive_same = _naive(args.slide, plain, g, naive_n)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        naive_one = _naive(args.slide, plain, g, naive_n)
        naive_one_folded = _naive(args.slide, predictor, g, naive_n)
        torch.set_num_threads(threads)
        model_tps = (model_a + model_b) / 2
        e2e_tps = n_tiles / e2e_s
        out.update(
            {
                "tiles": n_tiles,
                "e2e_s": round(e2e_s, 2),
                "e2e_tiles_per_s": round(e2e_tps, 2),
                "model_only_tiles_per_s": round(model_tps, 2),
                "model_only_runs": [round(model_a, 2), round(model_b, 2)],
                "e2e_over_model": round(e2e_tps / model_tps, 3),
                "bn_folded": folded,
                "model_only_unfolded_tiles_per_s": round(model_plain, 2),
                "fold_gain": round(model_b / model_plain, 3),
                "naive_1thread_tiles_per_s": round(naive_one, 2),
                "naive_same_threads_tiles_per_s": round(naive_same, 2),
                "speedup_vs_naive": round(e2e_tps / naive_one, 2),
                "naive_1thread_folded_tiles_per_s": round(naive_one_folded, 2),
                "speedup_vs_naive_folded": round(e2e_tps / naive_one_folded, 2),
                "speedup_vs_naive_same_threads": round(e2e_tps / naive_same, 2),
                "torch_threads": threads,
            }
        )
    else:
        start = time.perf_counter()
        result = engine.predict_slide(args.slide)
        out["tiles"] = len(result.tile_scores)
        out["e2e_s"] = round(time.perf_counter() - start, 2)
    out["peak_rss_mib"] = round(_rss_mib(), 1)
    out["rss_growth_mib"] = round(out["peak_rss_mib"] - out["rss_before_mib"], 1)
    if predictor.device.type == "cuda":
        out["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _run_child(args: argparse.Namespace, slide: str, mode: str) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        mode,
        "--slide",
        slide,
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--sample-tiles",
        str(args.sample_tiles),
        "--naive-tiles",
        str(args.naive_tiles),
    ]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.no_fold:
        cmd.append("--no-fold")
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=20_000, help="side of the first slide (px)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="reader threads")
    p.add_argument("--device", default="auto")
    p.add_argument("--sample-tiles", type=int, default=256, help="tiles for model-only timing")
    p.add_argument("--naive-tiles", type=int, default=96, help="tiles for the naive loop")
    p.add_argument("--keep", default=None, help="folder to write (and reuse) the slides in")
    p.add_argument("--no-fold", action="store_true", help="run the engine's model unfolded")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--slide", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(argparse.Namespace(mode=args.child, **vars(args)))))
        return

    from mitokit.data.synthetic.generate import write_synthetic_slide

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        paths = {}
        gen_s = {}
        for side in (args.size, 2 * args.size):
            path = os.path.join(folder, f"synthetic_{side}.tif")
            if not os.path.exists(path):
                start = time.perf_counter()
                write_synthetic_slide(path, size=(side, side), seed=0)
                gen_s[side] = round(time.perf_counter() - start, 1)
            paths[side] = path
        full = _run_child(args, paths[args.size], "full")
        small = _run_child(args, paths[args.size], "memory")
        big = _run_child(args, paths[2 * args.size], "memory")
    result = {
        "size": args.size,
        "tile": TILE,
        "model": "tile_classifier resnet18 (random init)",
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "generate_s": gen_s,
        **full,
        "memory": {
            "small": {k: small[k] for k in small if k != "device"},
            "big_4x_area": {k: big[k] for k in big if k != "device"},
            "rss_ratio_4x_area": round(big["peak_rss_mib"] / small["peak_rss_mib"], 3),
        },
    }
    if "cuda_max_allocated_mib" in big:
        result["memory"]["cuda_ratio_4x_area"] = round(
            big["cuda_max_allocated_mib"] / small["cuda_max_allocated_mib"], 3
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
