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

Backends (``--backend torch|onnx|onnx-int8``: the engine's model, see
:mod:`mitokit.models.backend`; the random model is saved to a model folder first, so every
backend loads it as ``mitokit detect`` does):

- ``--compare-backends``: ``backends``, model-only tiles/s of the folded model in PyTorch eager
  (channels-last input), of its float ONNX graph and (``--int8``) of its int8 graph, calibrated
  on 256 tiles of another generated slide (seed 1), on the same tiles in ``--repeats`` turns;
  ``over_torch`` ratios, and each graph's agreement with PyTorch on those tiles.
- ``--sweep``: ``threads_sweep``, end to end over model-only with ONNX Runtime's intra-op
  threads 1 and one per core, times 1, 2 and 4 reader threads.
- ``read_ms_per_tile``: one thread's time to read a model tile (the plan's first
  ``--sample-tiles`` tiles in order, as the engine reads them) through each reader: ``auto``
  (tifffile where its pixels equal OpenSlide's, see :mod:`mitokit.io.slides.reader`) and
  ``slide`` (``open_slide``'s backend, OpenSlide for these TIFFs); ``reader`` is the one the
  engine used. ``--reader slide`` runs the engine on OpenSlide; ``--compare-readers`` adds
  ``readers``: end to end over model-only with each reader (``--repeats`` turns, one process
  each, the median).
- ``real_size``: a 100,000 x 80,000 px slide at 0.25 um/px with 40 % tissue, extrapolated from
  the measured end-to-end rate (``measured: false``); ``real_size_slide.py`` measures one.
- ``fold_gain`` compares folded and unfolded PyTorch, so it is given for ``--backend torch``
  only.

On a machine shared with other jobs, set ``OMP_NUM_THREADS`` to the cores really free: PyTorch's
threads spin-wait for each other and slow down many-fold when a core is taken away.

Usage::

    python benchmarks/slide_inference.py                # 20k and 40k slides (long on CPU)
    python benchmarks/slide_inference.py --size 3000    # a quick run
    python benchmarks/slide_inference.py --size 10000 --backend onnx --compare-backends --int8
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
REAL_SIZE = (100_000, 80_000)
REAL_TISSUE = 0.40


def save_random_model(folder: str) -> str:
    """A random ResNet-18 tile classifier saved as a model folder (the same weights every call)."""
    import torch

    from mitokit.engines.task import get_task
    from mitokit.models.checkpoint import save_model

    torch.manual_seed(0)
    model_cfg = {"arch": "resnet18", "input_size": None}
    model = get_task("tile_classifier").build_model(model_cfg)
    extra = {"data": {"tile_size": TILE, "mpp": MODEL_MPP}}
    save_model(model, folder, task="tile_classifier", model_cfg=model_cfg, extra=extra)
    return folder


def build_predictor(
    device: str, fold: bool = True, *, model: str, backend: str = "torch", threads=None
):
    """The model folder's predictor (batch norm folded when ``fold``) through ``backend``;
    returns it and the number of layers folded."""
    from mitokit.models.inference import fold_batchnorm
    from mitokit.models.predictors import load_predictor

    predictor = load_predictor(
        model, device=device, fold_bn=False, backend="torch", threads=threads
    )
    folded = fold_batchnorm(predictor.model) if fold else 0
    if backend != "torch":
        predictor = load_predictor(model, device=device, backend=backend, threads=threads)
    return predictor, folded


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


def _plan(path: str, engine):
    """The read geometry and tile plan the engine makes for ``path``."""
    from mitokit.data.tissue import TissueMask, mask_from_rgb
    from mitokit.engines.slide_stream import plan_tiles, read_geometry
    from mitokit.io.slides import open_slide

    with open_slide(path) as slide:
        size = slide.dimensions
        thumb = slide.get_thumbnail((1024, 1024))
        ds = (size[0] / thumb.shape[1], size[1] / thumb.shape[0])
        mask = TissueMask(mask_from_rgb(thumb, downsample=(ds[0] * ds[1]) ** 0.5), ds)
        g = read_geometry(slide, tile_size=TILE, model_mpp=MODEL_MPP, slide_mpp=slide.mpp)
        return g, plan_tiles(size, g, overlap=engine._overlap_px(g.scale * slide.mpp), mask=mask)


def _tiles_in_memory(path: str, engine, n: int):
    """The first ``n`` tiles of the engine's plan for ``path``, read into one uint8 array."""
    import numpy as np

    from mitokit.engines.slide_stream import _read_tile
    from mitokit.io.slides import open_slide

    g, plan = _plan(path, engine)
    origins = plan.origins[:n]
    with open_slide(path) as slide:
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


def _read_cost(path: str, engine, n: int) -> dict:
    """Milliseconds one thread takes to read a model tile through each reader (the plan's first
    ``n`` tiles in plan order, each reader's own handle, opened before the clock starts)."""
    import numpy as np

    from mitokit.engines.slide_inputs import plan_opener
    from mitokit.engines.slide_stream import _read_tile

    g, plan = _plan(path, engine)
    out = {}
    for reader in ("auto", "slide"):
        opener, backend = plan_opener(path, None, plan, reader)
        with opener() as slide:
            start = time.perf_counter()
            for o in plan.origins[:n]:
                _read_tile(slide, np.asarray(o), g)
            out[backend] = round((time.perf_counter() - start) / min(n, len(plan)) * 1e3, 3)
    return out


def _grid_tiles(engine, size) -> int:
    """Tiles of the engine's overlapping grid over a whole slide of ``size`` at the model's mpp."""
    from mitokit.data.tiling import tile_grid

    stride = TILE - engine._overlap_px(MODEL_MPP)
    return len(tile_grid(size, tile=TILE, stride=stride, include_partial="shift"))


def _compare_backends(args: argparse.Namespace, device: str, tiles) -> dict:
    """Model-only tiles/s of the folded model in PyTorch eager (channels-last input, as the
    engine hands it) and of its ONNX graphs (float; int8 where the folder has one), on the
    same tiles in one process, in turns (A B C A B C) so that a change of machine load hits
    each alike; with each backend's agreement with PyTorch on these tiles."""
    import numpy as np
    import torch

    from mitokit.engines.slide import SlidePredictor

    names = ["torch", "onnx"] + (["onnx-int8"] if args.int8 else [])
    engines, scores = {}, {}
    for name in names:
        predictor, _ = build_predictor(device, model=args.model, backend=name, threads=args.threads)
        engines[name] = SlidePredictor(predictor, batch_size=args.batch_size, progress=False)
    runs: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for name, engine in engines.items():
            _model_only(engine, tiles[: args.batch_size], args.batch_size)  # warm up
            batches = [
                engine.model_input(torch.from_numpy(tiles[i : i + args.batch_size]))
                for i in range(0, len(tiles), args.batch_size)
            ]
            scores[name] = np.array(
                [p.tile_score for b in batches for p in engine.predictor.predict(b)]
            )
        for _ in range(args.repeats):
            for name, engine in engines.items():
                runs[name].append(_model_only(engine, tiles, args.batch_size))
    best = {name: float(np.median(r)) for name, r in runs.items()}
    out: dict = {"tiles": len(tiles), "repeats": args.repeats}
    for name in names:
        entry = {
            "model_only_tiles_per_s": round(best[name], 2),
            "runs": [round(r, 2) for r in runs[name]],
        }
        if name != "torch":
            diff = np.abs(scores[name] - scores["torch"])
            calls = (scores[name] >= 0.5) != (scores["torch"] >= 0.5)
            entry.update(
                {
                    "over_torch": round(best[name] / best["torch"], 3),
                    "max_abs_score_diff": float(f"{diff.max():.3g}"),
                    "tiles_called_differently": int(calls.sum()),
                }
            )
        out[name] = entry
    return out


def child(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process."""
    import torch

    from mitokit.engines.slide import SlidePredictor

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor, folded = build_predictor(
        device, fold=not args.no_fold, model=args.model, backend=args.backend, threads=args.threads
    )
    engine = SlidePredictor(
        predictor,
        batch_size=args.batch_size,
        workers=args.workers,
        reader=args.reader,
        progress=False,
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
        plain, _ = build_predictor(device, fold=False, model=args.model)
        with torch.no_grad():
            plain.predict(warm)
            model_plain = _model_only(engine, tiles, args.batch_size, reps, predictor=plain)
        if args.compare_backends:
            out["backends"] = _compare_backends(args, device, tiles)
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
                "fold_gain": round(model_b / model_plain, 3) if args.backend == "torch" else None,
                "naive_1thread_tiles_per_s": round(naive_one, 2),
                "naive_same_threads_tiles_per_s": round(naive_same, 2),
                "speedup_vs_naive": round(e2e_tps / naive_one, 2),
                "naive_1thread_folded_tiles_per_s": round(naive_one_folded, 2),
                "speedup_vs_naive_folded": round(e2e_tps / naive_one_folded, 2),
                "speedup_vs_naive_same_threads": round(e2e_tps / naive_same, 2),
                "torch_threads": threads,
                "backend": args.backend,
                "workers": engine.workers,
                "reader": result.settings["reading"]["reader"],
                "read_ms_per_tile": _read_cost(args.slide, engine, args.sample_tiles),
                "tissue_fraction": round(float(result.tissue.fraction), 3),
                "grid_tiles": _grid_tiles(engine, result.size),
                "real_size_grid_tiles": _grid_tiles(engine, REAL_SIZE),
            }
        )
    elif args.mode == "e2e":
        g, origins, tiles = _tiles_in_memory(args.slide, engine, args.sample_tiles)
        with torch.no_grad():
            model_a = _model_only(engine, tiles, args.batch_size)
            start = time.perf_counter()
            result = engine.predict_slide(args.slide)
            e2e_tps = len(result.tile_scores) / (time.perf_counter() - start)
            model_b = _model_only(engine, tiles, args.batch_size)
        model_tps = (model_a + model_b) / 2
        out.update(
            {
                "tiles": len(result.tile_scores),
                "e2e_tiles_per_s": round(e2e_tps, 2),
                "model_only_tiles_per_s": round(model_tps, 2),
                "model_only_runs": [round(model_a, 2), round(model_b, 2)],
                "e2e_over_model": round(e2e_tps / model_tps, 3),
                "workers": engine.workers,
                "reader": result.settings["reading"]["reader"],
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
    cmd += ["--model", args.model, "--backend", args.backend, "--repeats", str(args.repeats)]
    cmd += ["--reader", args.reader]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.int8:
        cmd.append("--int8")
    if args.compare_backends and mode == "full":
        cmd.append("--compare-backends")
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
    p.add_argument("--model", default=None, help="model folder (default: a random ResNet-18)")
    p.add_argument("--backend", default="torch", help="engine backend: torch, onnx, onnx-int8")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--compare-backends", action="store_true", help="model-only torch vs onnx")
    p.add_argument("--int8", action="store_true", help="also int8 (calibrated on another slide)")
    p.add_argument("--repeats", type=int, default=3, help="turns of backends/readers")
    p.add_argument(
        "--sweep", action="store_true", help="e2e over model-only for ONNX threads x readers"
    )
    p.add_argument("--reader", default="auto", help="engine's reader: auto or slide")
    p.add_argument(
        "--compare-readers", action="store_true", help="e2e over model-only with each reader"
    )
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
        trained = args.model is not None
        args.model = args.model or save_random_model(os.path.join(tmp, "model"))
        paths = {}
        gen_s = {}
        for side in (args.size, 2 * args.size):
            path = os.path.join(folder, f"synthetic_{side}.tif")
            if not os.path.exists(path):
                start = time.perf_counter()
                write_synthetic_slide(path, size=(side, side), seed=0)
                gen_s[side] = round(time.perf_counter() - start, 1)
            paths[side] = path
        if args.int8 or args.backend == "onnx-int8":
            _calibrate(args, folder, trained)
        full = _run_child(args, paths[args.size], "full")
        small = _run_child(args, paths[args.size], "memory")
        big = _run_child(args, paths[2 * args.size], "memory")
        sweep = _sweep(args, paths[args.size]) if args.sweep else None
        readers = _compare_readers(args, paths[args.size]) if args.compare_readers else None
    result = {
        "size": args.size,
        "tile": TILE,
        "model": args.model if trained else "tile_classifier resnet18 (random init)",
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
        "real_size": _real_size(full, big),
    }
    if sweep is not None:
        result["threads_sweep"] = sweep
    if readers is not None:
        result["readers"] = readers
    if "cuda_max_allocated_mib" in big:
        result["memory"]["cuda_ratio_4x_area"] = round(
            big["cuda_max_allocated_mib"] / small["cuda_max_allocated_mib"], 3
        )
    print(json.dumps(result))


def _calibrate(args: argparse.Namespace, folder: str, trained: bool) -> None:
    """int8 graph of the model, calibrated on tiles of another generated slide (seed 1)."""
    from mitokit.data.synthetic.generate import write_synthetic_slide
    from mitokit.models.backend import INT8_GRAPH, quantize_model

    if trained and os.path.exists(os.path.join(args.model, INT8_GRAPH)):
        return  # a trained model's own calibration (mitokit export --int8) is kept
    path = os.path.join(folder, "calibration_4000.tif")
    if not os.path.exists(path):
        write_synthetic_slide(path, size=(4000, 4000), seed=1)
    quantize_model(args.model, [path], tiles=256, seed=0)


def _sweep(args: argparse.Namespace, slide: str) -> list[dict]:
    """End to end over model-only with the engine's backend for ONNX threads x reader threads."""
    cores = os.cpu_count() or 1
    rows = []
    for threads in sorted({1, cores}):
        for workers in sorted({1, 2, 4}):
            sub = argparse.Namespace(**{**vars(args), "threads": threads, "workers": workers})
            out = _run_child(sub, slide, "e2e")
            rows.append({"threads": threads, **{k: out[k] for k in out if k != "device"}})
    return rows


def _compare_readers(args: argparse.Namespace, slide: str) -> dict:
    """End to end over model-only with each reader, ``--repeats`` turns of one process per
    reader (A B A B ...); the median ratio and every turn's."""
    import statistics

    runs: dict[str, list[dict]] = {"auto": [], "slide": []}
    for _ in range(args.repeats):
        for reader, rows in runs.items():
            sub = argparse.Namespace(**{**vars(args), "reader": reader})
            out = _run_child(sub, slide, "e2e")
            rows.append({k: out[k] for k in out if k != "device"})
    return {
        reader: {
            "reader": rows[0]["reader"],
            "e2e_over_model": round(statistics.median(r["e2e_over_model"] for r in rows), 3),
            "e2e_tiles_per_s": round(statistics.median(r["e2e_tiles_per_s"] for r in rows), 2),
            "turns": rows,
        }
        for reader, rows in runs.items()
    }


def _real_size(full: dict, big: dict) -> dict:
    """The cost of a 100,000 x 80,000 px slide at 0.25 um/px with 40 % tissue, extrapolated.

    Tiles read: the grid's tiles times the fraction a slide with 40 % tissue would touch (the
    measured slide's ratio of tiles read to tissue area carried over); time: those tiles at the
    measured end-to-end rate; memory: the engine's memory does not grow with the slide (the
    4x-area ratio), so it is the larger measured peak.
    """
    read_per_tissue = (full["tiles"] / full["grid_tiles"]) / max(full["tissue_fraction"], 1e-6)
    tiles = round(full["real_size_grid_tiles"] * min(1.0, REAL_TISSUE * read_per_tissue))
    seconds = tiles / full["e2e_tiles_per_s"]
    return {
        "size": list(REAL_SIZE),
        "tissue_fraction": REAL_TISSUE,
        "measured": False,
        "tiles_estimated": tiles,
        "minutes_estimated": round(seconds / 60, 1),
        "peak_rss_mib": big["peak_rss_mib"],
    }


if __name__ == "__main__":
    main()
